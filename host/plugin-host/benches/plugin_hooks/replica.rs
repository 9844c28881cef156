//! A copy of the host's per-call machinery, for taking one hook call apart.
//!
//! The public API only offers the whole call (fresh store + instance + call + teardown). To see
//! where those microseconds go, this module rebuilds the same pieces from wasmtime directly:
//! the engine settings of `runtime.rs::engine_config`, the store of `LoadedPlugin::start` (memory
//! limiter, epoch deadline and callback) and the `CallState` of `state.rs` (WASI context with a
//! captured stderr, resource table, config), linked against WIT 0.2.0 as the current default
//! plugins are. Those are crate-private, so they are mirrored here rather than reached. Keep it
//! in step with those files.
//!
//! The knobs ([`Allocator`], [`Wasi`]) are the candidate changes of BENCHMARKS.md, so each one
//! can be measured instead of guessed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasSelf, InstancePre, Linker, ResourceTable};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store,
    UpdateDeadline,
};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

mod authorization {
    wasmtime::component::bindgen!({ world: "authorization-policy", path: "../../wit/v0.2.0" });
}
mod mapping {
    wasmtime::component::bindgen!({
        world: "api-mapping",
        path: "../../wit/v0.2.0",
        with: {
            "camara:gateway/types": super::authorization::camara::gateway::types,
            "camara:gateway/log": super::authorization::camara::gateway::log,
            "camara:gateway/config": super::authorization::camara::gateway::config,
        },
    });
}
mod routing {
    wasmtime::component::bindgen!({
        world: "notification-routing",
        path: "../../wit/v0.2.0",
        with: {
            "camara:gateway/types": super::authorization::camara::gateway::types,
            "camara:gateway/log": super::authorization::camara::gateway::log,
            "camara:gateway/config": super::authorization::camara::gateway::config,
        },
    });
}
use authorization::camara::gateway::{config, log, types};

// `RuntimeConfig::default()` and `PluginLimits::default()`.
const MAX_CONCURRENT_CALLS: u32 = 256;
const MAX_MEMORY_BYTES: usize = 64 << 20;
const MEMORY_LIMIT: usize = 16 << 20;
/// The host's is 100 ms. A benchmark niced under a parallel build can be descheduled for longer
/// than that in the middle of a call, which would abort the run; checking costs the same either way.
const DEADLINE: Duration = Duration::from_secs(10);
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// How instances get their memories, tables and stacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocator {
    /// mmap per instance: what the host falls back to when the pool reservation is refused.
    OnDemand,
    /// The host's pool, as configured in `runtime.rs`.
    Pooling,
    /// The same pool, but a freed slot is reset with memset (for the pages that `pagemap_scan`
    /// finds dirty) instead of `madvise(DONTNEED)`, so the next call takes no page faults.
    PoolingKeepResident,
}

/// When a call's WASI context is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wasi {
    /// At store creation, as `CallState::new` does.
    Eager,
    /// On the guest's first WASI call. The default plugins make none on their normal path
    /// (only a panic writes to stderr), so the context is then never built.
    Lazy,
}

/// WASI contexts built on a guest's demand under [`Wasi::Lazy`]: stays 0 if the plugins' normal
/// path makes no WASI call, which is what makes deferring the context worth anything.
pub static LAZY_WASI_BUILT: AtomicUsize = AtomicUsize::new(0);

/// One engine of the host's kind, with its epoch ticker.
pub struct Replica {
    pub engine: Engine,
    pub pooling: bool,
    stop: Arc<AtomicBool>,
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Replica {
    pub fn new(allocator: Allocator) -> Replica {
        let mut c = Config::new();
        c.epoch_interruption(true);
        let mut pooling = allocator != Allocator::OnDemand;
        if pooling {
            let n = MAX_CONCURRENT_CALLS;
            let mut pool = PoolingAllocationConfig::default();
            pool.total_component_instances(n)
                .total_core_instances(n * 8)
                .total_memories(n)
                .total_tables(n * 4)
                .total_stacks(n)
                .max_memory_size(MAX_MEMORY_BYTES);
            if allocator == Allocator::PoolingKeepResident {
                // Covers a default plugin's whole memory (1 MiB shadow stack, then data and heap);
                // pagemap_scan limits the reset to the pages the call actually dirtied.
                pool.linear_memory_keep_resident(2 << 20).table_keep_resident(64 << 10).pagemap_scan(Enabled::Auto);
            }
            c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
            c.memory_reservation(MAX_MEMORY_BYTES as u64);
        }
        let engine = match Engine::new(&c) {
            Ok(e) => e,
            Err(e) if pooling => {
                eprintln!("replica: pooling allocator unavailable ({e:#}); on-demand instead");
                pooling = false;
                let mut c = Config::new();
                c.epoch_interruption(true);
                Engine::new(&c).expect("on-demand engine")
            }
            Err(e) => panic!("engine: {e:#}"),
        };
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (engine, stop) = (engine.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            });
        }
        Replica { engine, pooling, stop }
    }

    fn linker(&self) -> Linker<State> {
        let mut linker = Linker::new(&self.engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).expect("wasi imports");
        linker
    }

    /// The names of what a component imports, to show what its instantiation has to wire up.
    pub fn imports(&self, wasm: &[u8]) -> Vec<String> {
        let component = Component::new(&self.engine, wasm).expect("component");
        component.component_type().imports(&self.engine).map(|(name, _)| name.to_string()).collect()
    }

    /// `wasm` linked as the host links a 0.2.0 component of its world, pre-instantiated.
    fn pre(&self, wasm: &[u8], add: fn(&mut Linker<State>) -> wasmtime::Result<()>) -> InstancePre<State> {
        let mut linker = self.linker();
        add(&mut linker).expect("plugin imports");
        let component = Component::new(&self.engine, wasm).expect("component");
        linker.instantiate_pre(&component).expect("instantiate_pre")
    }

    pub fn authorization(&self, wasm: &[u8]) -> InstancePre<State> {
        self.pre(wasm, |l| authorization::AuthorizationPolicy::add_to_linker::<_, HasSelf<State>>(l, |s| s))
    }

    pub fn mapping(&self, wasm: &[u8]) -> InstancePre<State> {
        self.pre(wasm, |l| mapping::ApiMapping::add_to_linker::<_, HasSelf<State>>(l, |s| s))
    }

    pub fn routing(&self, wasm: &[u8]) -> InstancePre<State> {
        self.pre(wasm, |l| routing::NotificationRouting::add_to_linker::<_, HasSelf<State>>(l, |s| s))
    }

    /// A store set up as `LoadedPlugin::start` sets up each call's.
    pub fn store(&self, wasi: Wasi) -> Store<State> {
        let mut store = Store::new(&self.engine, State::new(wasi));
        store.limiter(|s| &mut s.limiter);
        arm_deadline(&mut store);
        store
    }
}

/// The host's deadline: yield on every epoch tick, trap once the deadline has passed.
fn arm_deadline(store: &mut Store<State>) {
    let started = Instant::now();
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if started.elapsed() >= DEADLINE {
            Err(wasmtime::Error::msg("deadline exceeded"))
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
}

/// `state.rs::CallState`, with the WASI context optionally deferred.
pub struct State {
    config: Arc<[(String, String)]>,
    limiter: Limiter,
    stderr: MemoryOutputPipe,
    wasi: Option<WasiCtx>,
    table: ResourceTable,
}

impl State {
    fn new(wasi: Wasi) -> State {
        let stderr = MemoryOutputPipe::new(4096);
        let mut state = State {
            config: Arc::from(Vec::new()),
            limiter: Limiter { memory_limit: MEMORY_LIMIT },
            stderr,
            wasi: None,
            table: ResourceTable::new(),
        };
        if wasi == Wasi::Eager {
            state.wasi = Some(state.build_wasi());
        }
        state
    }

    fn build_wasi(&self) -> WasiCtx {
        WasiCtxBuilder::new().stderr(self.stderr.clone()).build()
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        if self.wasi.is_none() {
            LAZY_WASI_BUILT.fetch_add(1, Ordering::Relaxed);
            self.wasi = Some(self.build_wasi());
        }
        WasiCtxView { ctx: self.wasi.as_mut().expect("just built"), table: &mut self.table }
    }
}

struct Limiter {
    memory_limit: usize,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            return Err(wasmtime::Error::msg("memory limit exceeded"));
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

impl types::Host for State {}

impl log::Host for State {
    fn log(&mut self, _level: log::Level, _message: String) {}
}

impl config::Host for State {
    fn get(&mut self, key: String) -> Option<String> {
        self.config.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone())
    }

    fn entries(&mut self) -> Vec<types::Pair> {
        self.config.iter().map(|(name, value)| types::Pair { name: name.clone(), value: value.clone() }).collect()
    }
}

impl mapping::camara::gateway::sip_message::Host for State {
    fn header(&mut self, _name: String) -> Option<String> {
        None
    }

    fn header_values(&mut self, _name: String) -> Vec<String> {
        Vec::new()
    }
}
