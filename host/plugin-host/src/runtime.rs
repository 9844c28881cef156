//! The engine, loading, and the per-call store.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline};

use crate::admission::Admission;
use crate::breaker::{Admitted, Breaker};
use crate::error::{DeadlineMarker, PluginError};
use crate::state::CallState;

/// The three kinds of plugin, one WIT world each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    Authorization,
    ApiMapping,
    NotificationRouting,
}

impl PluginKind {
    pub const ALL: [PluginKind; 3] =
        [PluginKind::Authorization, PluginKind::ApiMapping, PluginKind::NotificationRouting];

    /// The WIT world a component of this kind implements, in each supported version (newest
    /// first).
    pub fn worlds(self) -> [&'static str; 2] {
        match self {
            PluginKind::Authorization => {
                ["camara:gateway/authorization-policy@0.2.0", "camara:gateway/authorization-policy@0.1.0"]
            }
            PluginKind::ApiMapping => ["camara:gateway/api-mapping@0.2.0", "camara:gateway/api-mapping@0.1.0"],
            PluginKind::NotificationRouting => {
                ["camara:gateway/notification-routing@0.2.0", "camara:gateway/notification-routing@0.1.0"]
            }
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Authorization => "authorization",
            PluginKind::ApiMapping => "api-mapping",
            PluginKind::NotificationRouting => "notification-routing",
        }
    }
}

impl std::str::FromStr for PluginKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        PluginKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown plugin kind {s:?} (authorization, api-mapping, notification-routing)"))
    }
}

/// Per-call resource limits of one plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginLimits {
    /// Linear memory a call may use.
    pub memory_bytes: usize,
    /// Wall-clock time a call may run.
    pub deadline: Duration,
    /// Calls of this plugin that may run at once (its share of the pool); none: the pool's size.
    pub max_concurrent_calls: Option<u32>,
    /// Calls that may wait, each for at most one deadline, when the quota is in use; beyond
    /// them a call is refused at once as overloaded. None: as many as the quota.
    pub max_waiting_calls: Option<u32>,
    pub breaker: crate::breaker::BreakerSettings,
}

impl Default for PluginLimits {
    fn default() -> Self {
        // Policy and mapping decisions take microseconds; these leave room for slow hosts
        // while keeping a runaway plugin from holding a request for long.
        PluginLimits {
            memory_bytes: 16 << 20,
            deadline: Duration::from_millis(100),
            max_concurrent_calls: None,
            max_waiting_calls: None,
            breaker: Default::default(),
        }
    }
}

/// Where a component's bytes come from.
#[derive(Debug, Clone)]
pub enum WasmSource {
    /// Embedded in the binary (the default bundle).
    Static(&'static [u8]),
    Bytes(Arc<[u8]>),
    File(PathBuf),
}

impl WasmSource {
    fn bytes(&self) -> std::io::Result<std::borrow::Cow<'_, [u8]>> {
        Ok(match self {
            WasmSource::Static(b) => std::borrow::Cow::Borrowed(b),
            WasmSource::Bytes(b) => std::borrow::Cow::Borrowed(b),
            WasmSource::File(p) => std::borrow::Cow::Owned(std::fs::read(p)?),
        })
    }
}

/// Everything needed to load one plugin.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    /// Shown in logs and errors, e.g. `authorization-default`.
    pub name: String,
    pub wasm: WasmSource,
    /// The operator's configuration map for this plugin.
    pub config: Vec<(String, String)>,
    pub limits: PluginLimits,
}

/// Engine-wide settings.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Use the pooling instance allocator (fast instantiation); falls back to on-demand
    /// allocation when the machine refuses the reservation.
    pub pooling: bool,
    /// Plugin calls that may run at the same time (pool size).
    pub max_concurrent_calls: u32,
    /// The largest memory limit any plugin may be given.
    pub max_memory_bytes: usize,
    /// Granularity of deadlines.
    pub epoch_tick: Duration,
    /// Memory a pool slot keeps mapped between calls (reset in place, not unmapped): fewer page
    /// faults per instantiation. See BENCHMARKS.md for what it buys.
    pub keep_resident_bytes: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            pooling: true,
            max_concurrent_calls: 256,
            max_memory_bytes: 64 << 20,
            epoch_tick: Duration::from_millis(1),
            keep_resident_bytes: 2 << 20,
        }
    }
}

/// One wasmtime engine shared by every plugin, and the thread that advances its epoch.
#[derive(Clone)]
pub struct PluginRuntime {
    engine: Engine,
    /// `RuntimeConfig::max_concurrent_calls`.
    pool_size: u32,
    max_memory_bytes: usize,
    pooling: bool,
    _ticker: Arc<EpochTicker>,
}

struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl PluginRuntime {
    pub fn new(config: &RuntimeConfig) -> Result<Self, PluginError> {
        let (engine, pooling) = match config.pooling.then(|| Engine::new(&engine_config(config, true))) {
            Some(Ok(engine)) => (engine, true),
            other => {
                if let Some(Err(e)) = other {
                    tracing::warn!("pooling allocator unavailable ({e:#}); using on-demand allocation");
                }
                let engine = Engine::new(&engine_config(config, false))
                    .map_err(|e| PluginError::Load { plugin: "<engine>".into(), reason: format!("{e:#}") })?;
                (engine, false)
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (engine, stop, tick) = (engine.clone(), stop.clone(), config.epoch_tick);
            std::thread::Builder::new()
                .name("plugin-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| PluginError::Load { plugin: "<engine>".into(), reason: e.to_string() })?
        };
        Ok(PluginRuntime {
            engine,
            pool_size: config.max_concurrent_calls,
            max_memory_bytes: config.max_memory_bytes,
            pooling,
            _ticker: Arc::new(EpochTicker { stop, thread: Some(thread) }),
        })
    }

    /// Whether the pooling allocator is in use.
    pub fn is_pooling(&self) -> bool {
        self.pooling
    }

    /// Compiles `spec`'s component, off the async workers (compilation is CPU-bound).
    pub(crate) async fn compile(&self, spec: &PluginSpec) -> Result<Compiled, PluginError> {
        let load_error = |reason: String| PluginError::Load { plugin: spec.name.clone(), reason };
        if spec.limits.memory_bytes > self.max_memory_bytes {
            return Err(load_error(format!(
                "memory limit {} exceeds the runtime's maximum {}",
                spec.limits.memory_bytes, self.max_memory_bytes
            )));
        }
        let bytes = spec.wasm.bytes().map_err(|e| load_error(format!("reading {:?}: {e}", spec.wasm)))?;
        let engine = self.engine.clone();
        let bytes = bytes.into_owned();
        let component = tokio::task::spawn_blocking(move || Component::new(&engine, &bytes))
            .await
            .map_err(|e| load_error(e.to_string()))?
            .map_err(|e| load_error(format!("not a valid component: {e:#}")))?;
        let exports = component.component_type().exports(&self.engine).map(|(name, _)| name.to_string()).collect();
        Ok(Compiled { component, exports })
    }

    /// Links `compiled` as a plugin of world `W`, pre-instantiates it and runs its
    /// `validate-config`.
    pub(crate) async fn load<W: World>(
        &self,
        spec: PluginSpec,
        compiled: Compiled,
    ) -> Result<LoadedPlugin<W>, PluginError> {
        let name: Arc<str> = spec.name.as_str().into();
        let load_error = |reason: String| PluginError::Load { plugin: spec.name.clone(), reason };
        let mut linker = Linker::<CallState>::new(&self.engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| load_error(format!("{e:#}")))?;
        W::add_to_linker(&mut linker).map_err(|e| load_error(format!("{e:#}")))?;
        let pre = linker
            .instantiate_pre(&compiled.component)
            .and_then(W::pre)
            .map_err(|e| load_error(format!("does not implement {}: {e:#}", W::EXPORT)))?;
        let quota = spec.limits.max_concurrent_calls.unwrap_or(self.pool_size);
        let admission = Admission::new(quota, spec.limits.max_waiting_calls.unwrap_or(quota), spec.limits.deadline);
        let plugin = LoadedPlugin {
            name,
            kind: W::KIND,
            admission,
            runtime: self.clone(),
            pre,
            config: spec.config.clone().into(),
            breaker: Breaker::new(spec.limits.breaker),
            limits: spec.limits,
        };
        let pairs: Vec<_> = spec.config.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let mut call = plugin.start("validate-config").await?;
        let left = call.time_left();
        let verdict = within(left, W::validate_config(&call.instance, &mut call.store, pairs)).await;
        match call.finish(verdict)? {
            Ok(()) => Ok(plugin),
            Err(reason) => Err(PluginError::InvalidConfig { plugin: spec.name, reason }),
        }
    }
}

/// A compiled component and the names it exports, from which its WIT version is read.
pub(crate) struct Compiled {
    component: Component,
    exports: Vec<String>,
}

impl Compiled {
    /// Whether the component exports `interface` (e.g. `camara:gateway/policy@0.2.0`).
    pub fn exports(&self, interface: &str) -> bool {
        self.exports.iter().any(|e| e == interface)
    }

    pub fn export_names(&self) -> String {
        if self.exports.is_empty() { "nothing".into() } else { self.exports.join(", ") }
    }
}

fn engine_config(config: &RuntimeConfig, pooling: bool) -> Config {
    let mut c = Config::new();
    c.epoch_interruption(true);
    if pooling {
        let n = config.max_concurrent_calls;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(n)
            .total_core_instances(n * 8)
            .total_memories(n)
            .total_tables(n * 4)
            .total_stacks(n)
            .max_memory_size(config.max_memory_bytes)
            .linear_memory_keep_resident(config.keep_resident_bytes)
            .table_keep_resident(config.keep_resident_bytes)
            // Resets only the pages a call dirtied, where the kernel can say which (Linux 6.7+).
            .pagemap_scan(wasmtime::Enabled::Auto);
        c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        // Reserve only what a plugin may use, so that a large pool stays affordable.
        c.memory_reservation(config.max_memory_bytes as u64);
    }
    c
}

/// What each world module supplies to the generic loader.
pub(crate) trait World: Sized + 'static {
    const KIND: PluginKind;
    /// The interface a component of this world exports, with its version.
    const EXPORT: &'static str;
    type Pre: Send + Sync + 'static;
    type Instance: Send;
    fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()>;
    fn pre(pre: InstancePre<CallState>) -> wasmtime::Result<Self::Pre>;
    fn instantiate(
        pre: &Self::Pre,
        store: &mut Store<CallState>,
    ) -> impl Future<Output = wasmtime::Result<Self::Instance>> + Send;
    fn validate_config(
        instance: &Self::Instance,
        store: &mut Store<CallState>,
        config: Vec<(String, String)>,
    ) -> impl Future<Output = wasmtime::Result<Result<(), String>>> + Send;
}

/// A compiled, pre-instantiated plugin of world `W`; every call gets a fresh instance.
pub(crate) struct LoadedPlugin<W: World> {
    name: Arc<str>,
    kind: PluginKind,
    /// Keeps the engine and, with it, the epoch ticker that enforces deadlines alive.
    runtime: PluginRuntime,
    pre: W::Pre,
    config: Arc<[(String, String)]>,
    limits: PluginLimits,
    admission: Admission,
    breaker: Breaker,
}

impl<W: World> LoadedPlugin<W> {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A fresh store and instance, with this plugin's memory limit and deadline armed, once the
    /// plugin's admission lets the call run.
    /// `hook` names the export called, for the metrics.
    pub(crate) async fn start(&self, hook: &'static str) -> Result<Call<'_, W>, PluginError> {
        let admitted = self.breaker.admit(Instant::now()).map_err(|retry_after| {
            let failure = PluginError::CircuitOpen { plugin: self.name.to_string(), retry_after };
            tracing::debug!(plugin = %self.name, kind = self.kind.as_str(), "plugin call not started: {failure}");
            self.count_failure(hook, &failure);
            failure
        })?;
        // From here on the breaker hears how the call went, whatever ends it.
        let outcome = Outcome { breaker: &self.breaker, admitted, recorded: false };
        let permit = self.admission.admit().await.map_err(|refusal| {
            let failure = PluginError::Overloaded { plugin: self.name.to_string(), detail: refusal.to_string() };
            tracing::warn!(plugin = %self.name, kind = self.kind.as_str(), "plugin call not started: {failure}");
            self.count_failure(hook, &failure);
            failure
        })?;
        let state = CallState::new(self.name.clone(), self.config.clone(), self.limits.memory_bytes);
        let mut store = Store::new(&self.runtime.engine, state);
        store.limiter(|s| &mut s.limiter);
        let started = Instant::now();
        let deadline = self.limits.deadline;
        store.set_epoch_deadline(1);
        // Checked once per epoch tick: yield so a long call never holds an executor thread,
        // and trap once the deadline has passed. The yield is tokio's, which puts the call
        // behind every task already waiting: a plain self-wake lands in the worker's LIFO slot
        // and is polled again at once, so a few looping calls kept the others (HTTP requests,
        // healthy plugins' calls) from running until those missed their deadlines too.
        store.epoch_deadline_callback(move |_| {
            if started.elapsed() >= deadline {
                Err(DeadlineMarker.into())
            } else {
                Ok(UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now())))
            }
        });
        let mut outcome = outcome;
        let instance = match W::instantiate(&self.pre, &mut store).await {
            Ok(instance) => instance,
            Err(e) => {
                let failure = self.failure(&store, e);
                self.count_failure(hook, &failure);
                outcome.record(!failure.is_plugin_fault());
                return Err(failure);
            }
        };
        Ok(Call { plugin: self, hook, started, store, instance, outcome, _permit: permit })
    }

    fn count_failure(&self, hook: &'static str, failure: &PluginError) {
        metrics::counter!(
            crate::metrics::FAILURES,
            "plugin" => self.name.to_string(),
            "kind" => self.kind.as_str(),
            "hook" => hook,
            "failure" => failure.kind().as_str()
        )
        .increment(1);
    }

    /// What went wrong in a call, from wasmtime's error and what the store saw.
    fn failure(&self, store: &Store<CallState>, error: wasmtime::Error) -> PluginError {
        let plugin = self.name.to_string();
        let state = store.data();
        let failure = if error.chain().any(|e| e.is::<wasmtime::PoolConcurrencyLimitError>()) {
            PluginError::Overloaded { plugin, detail: format!("{error:#}") }
        } else if error.chain().any(|e| e.is::<DeadlineMarker>()) {
            PluginError::DeadlineExceeded { plugin, deadline: self.limits.deadline }
        } else if state.limiter.memory_exceeded {
            PluginError::MemoryLimitExceeded { plugin, limit_bytes: state.limiter.memory_limit }
        } else {
            let stderr = state.stderr_text();
            let detail = if stderr.is_empty() { format!("{error:#}") } else { format!("{error:#}; stderr: {stderr}") };
            PluginError::Trapped { plugin, detail }
        };
        if let PluginError::Overloaded { .. } = failure {
            tracing::warn!(plugin = %self.name, kind = self.kind.as_str(), "plugin call not started: {failure}");
        } else {
            tracing::error!(plugin = %self.name, kind = self.kind.as_str(), "plugin call failed: {failure}");
        }
        failure
    }
}

/// Tells the breaker how an admitted call went; a call dropped before its end (its request was
/// cancelled) counts as neither, except that a probe left unanswered is not left hanging.
struct Outcome<'p> {
    breaker: &'p Breaker,
    admitted: Admitted,
    recorded: bool,
}

impl Outcome<'_> {
    fn record(&mut self, succeeded: bool) {
        self.recorded = true;
        self.breaker.record(self.admitted, succeeded, Instant::now());
    }
}

impl Drop for Outcome<'_> {
    fn drop(&mut self) {
        if !self.recorded && self.admitted == Admitted::Probe {
            self.breaker.record(self.admitted, false, Instant::now());
        }
    }
}

/// Runs `hook` (a call into an instance) for at most `left` ([`Call::time_left`]). The epoch
/// check stops a guest that runs; this stops one that waits in a host call (a WASI sleep or
/// poll), which no epoch check sees.
pub(crate) async fn within<R>(left: Duration, hook: impl Future<Output = wasmtime::Result<R>>) -> wasmtime::Result<R> {
    tokio::time::timeout(left, hook).await.unwrap_or_else(|_| Err(DeadlineMarker.into()))
}

/// One call in progress: its store and its instance.
pub(crate) struct Call<'p, W: World> {
    plugin: &'p LoadedPlugin<W>,
    hook: &'static str,
    started: Instant,
    pub store: Store<CallState>,
    pub instance: W::Instance,
    outcome: Outcome<'p>,
    /// The call's place in its plugin's quota, given back when the call ends.
    _permit: tokio::sync::SemaphorePermit<'p>,
}

impl<W: World> Call<'_, W> {
    /// What is left of the call's deadline, for [`within`].
    pub fn time_left(&self) -> Duration {
        self.plugin.limits.deadline.saturating_sub(self.started.elapsed())
    }

    /// The outcome of the call, with wasmtime's error turned into what went wrong.
    pub fn finish<R>(mut self, result: wasmtime::Result<R>) -> Result<R, PluginError> {
        let plugin = self.plugin;
        metrics::histogram!(
            crate::metrics::CALL_DURATION,
            "plugin" => plugin.name.to_string(),
            "kind" => plugin.kind.as_str(),
            "hook" => self.hook
        )
        .record(self.started.elapsed().as_secs_f64());
        let result = result.map_err(|e| {
            let failure = plugin.failure(&self.store, e);
            plugin.count_failure(self.hook, &failure);
            failure
        });
        self.outcome.record(result.as_ref().err().is_none_or(|e| !e.is_plugin_fault()));
        result
    }
}
