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
    /// The headers of the SIP message behind the hook in progress (0.2.0 `sip-message`).
    pub sip_headers: Vec<crate::hooks::Pair>,
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
            sip_headers: Vec::new(),
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

/// `name` in full, for a compact header form (RFC 3261 s.7.3.3 and the registrations since).
fn full_header_name(name: &str) -> &str {
    const COMPACT: [(&str, &str); 16] = [
        ("i", "Call-ID"),
        ("m", "Contact"),
        ("e", "Content-Encoding"),
        ("l", "Content-Length"),
        ("c", "Content-Type"),
        ("f", "From"),
        ("s", "Subject"),
        ("k", "Supported"),
        ("t", "To"),
        ("v", "Via"),
        ("o", "Event"),
        ("r", "Refer-To"),
        ("b", "Referred-By"),
        ("u", "Allow-Events"),
        ("x", "Session-Expires"),
        ("y", "Identity"),
    ];
    COMPACT.iter().find(|(short, _)| short.eq_ignore_ascii_case(name)).map_or(name, |(_, full)| full)
}

impl CallState {
    fn write_log(&self, level: Level, message: &str) {
        let plugin = &*self.plugin;
        match level {
            Level::Trace => tracing::trace!(plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => tracing::error!(plugin, "{message}"),
        }
    }

    fn config_value(&self, key: &str) -> Option<String> {
        self.config.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    fn find_headers(&self, name: &str) -> impl Iterator<Item = &str> {
        let name = full_header_name(name);
        self.sip_headers
            .iter()
            .filter(move |h| full_header_name(&h.name).eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }
}

#[derive(Clone, Copy)]
enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// The imports of each WIT version, onto the one implementation above.
macro_rules! shared_imports {
    ($version:ident) => {
        mod $version {
            use super::{CallState, Level};
            use crate::worlds::$version::authorization::camara::gateway::{config, log, types};

            impl types::Host for CallState {}

            impl log::Host for CallState {
                fn log(&mut self, level: log::Level, message: String) {
                    let level = match level {
                        log::Level::Trace => Level::Trace,
                        log::Level::Debug => Level::Debug,
                        log::Level::Info => Level::Info,
                        log::Level::Warn => Level::Warn,
                        log::Level::Error => Level::Error,
                    };
                    self.write_log(level, &message)
                }
            }

            impl config::Host for CallState {
                fn get(&mut self, key: String) -> Option<String> {
                    self.config_value(&key)
                }

                fn entries(&mut self) -> Vec<types::Pair> {
                    self.config
                        .iter()
                        .map(|(name, value)| types::Pair { name: name.clone(), value: value.clone() })
                        .collect()
                }
            }
        }
    };
}

shared_imports!(v0_1);
shared_imports!(v0_2);

impl crate::worlds::v0_2::mapping::camara::gateway::sip_message::Host for CallState {
    fn header(&mut self, name: String) -> Option<String> {
        self.find_headers(&name).next().map(str::to_string)
    }

    fn header_values(&mut self, name: String) -> Vec<String> {
        self.find_headers(&name).map(str::to_string).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_found_by_any_case_and_by_compact_form() {
        let mut state = CallState::new("p".into(), Vec::new().into(), 1 << 20);
        state.sip_headers = vec![
            crate::hooks::Pair::new("Reason", "Q.850;cause=16"),
            crate::hooks::Pair::new("f", "<sip:a@b>;tag=1"),
            crate::hooks::Pair::new("reason", "SIP;cause=200"),
        ];
        let values: Vec<_> = state.find_headers("REASON").collect();
        assert_eq!(values, ["Q.850;cause=16", "SIP;cause=200"]);
        assert_eq!(state.find_headers("From").collect::<Vec<_>>(), ["<sip:a@b>;tag=1"]);
        assert_eq!(state.find_headers("Via").count(), 0);
    }
}
