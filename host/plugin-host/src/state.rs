//! What one plugin call's `Store` holds.

use std::sync::Arc;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::error::MemoryMarker;

/// The largest stderr a plugin may write in one call (its panic message, say).
const STDERR_CAPACITY: usize = 4096;

pub(crate) struct CallState {
    pub plugin: Arc<str>,
    pub config: Arc<[(String, String)]>,
    pub limiter: CallLimiter,
    pub stderr: MemoryOutputPipe,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl CallState {
    pub fn new(plugin: Arc<str>, config: Arc<[(String, String)]>, memory_limit: usize) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        // No preopened directories, no environment, no network: a plugin sees only its inputs.
        let wasi = WasiCtxBuilder::new().stderr(stderr.clone()).build();
        CallState {
            plugin,
            config,
            limiter: CallLimiter { memory_limit, memory_exceeded: false },
            stderr,
            wasi,
            table: ResourceTable::new(),
        }
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.contents()).trim().to_string()
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Caps linear memory, remembering that the cap was hit so the failure is reported as such.
pub(crate) struct CallLimiter {
    pub memory_limit: usize,
    pub memory_exceeded: bool,
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.memory_exceeded = true;
            return Err(MemoryMarker.into());
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// The `log` and `config` imports every world shares.
pub(crate) mod shared_imports {
    use super::CallState;
    use crate::worlds::authorization::camara::gateway::{config, log, types};

    impl types::Host for CallState {}

    impl log::Host for CallState {
        fn log(&mut self, level: log::Level, message: String) {
            let plugin = &*self.plugin;
            match level {
                log::Level::Trace => tracing::trace!(plugin, "{message}"),
                log::Level::Debug => tracing::debug!(plugin, "{message}"),
                log::Level::Info => tracing::info!(plugin, "{message}"),
                log::Level::Warn => tracing::warn!(plugin, "{message}"),
                log::Level::Error => tracing::error!(plugin, "{message}"),
            }
        }
    }

    impl config::Host for CallState {
        fn get(&mut self, key: String) -> Option<String> {
            self.config.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone())
        }

        fn entries(&mut self) -> Vec<types::Pair> {
            self.config.iter().map(|(name, value)| types::Pair { name: name.clone(), value: value.clone() }).collect()
        }
    }
}
