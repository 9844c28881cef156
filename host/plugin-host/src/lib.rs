//! Runs the gateway's WebAssembly plugins.
//!
//! Owns the wasmtime side of the plugin system: one [`PluginRuntime`] (one `Engine`, async, epoch
//! interruption, pooling allocator where the machine allows it), loading a component once and
//! pre-instantiating it, and a fresh `Store` per call with that plugin's memory limit and deadline.
//! A plugin that traps, overruns its deadline or its memory fails that call with a typed
//! [`PluginError`] naming the plugin; nothing else is affected. Each plugin has a quota of the
//! instance pool and a bounded wait queue in front of it, so that one plugin cannot take the
//! instances of another, and a circuit breaker that short-circuits a plugin that keeps failing.
//!
//! Every supported version of the WIT package `camara:gateway` is bound (0.1.0 and 0.2.0, one
//! module each in `worlds`): a component is linked against the newest version it exports, and
//! the gateway calls it through the same handles ([`AuthorizationPlugin`], [`MappingPlugin`],
//! [`RoutingPlugin`]) with the plain types of [`hooks`]. This crate is the only place that sees
//! WIT-generated types.
//!
//! Does not own what plugins decide, where their bytes come from (the default bundle, operator
//! files) or how a failure is shown to an API client: that is the gateway's.

mod admission;
mod breaker;
mod error;
pub mod hooks;
mod plugins;
mod runtime;
mod state;
mod worlds;

pub use breaker::BreakerSettings;
pub use error::{PluginError, PluginFailureKind};
pub use hooks::{authorization, mapping, routing};
pub use plugins::{AuthorizationPlugin, MappingPlugin, RoutingPlugin, WitVersion};
pub use runtime::{PluginKind, PluginLimits, PluginRuntime, PluginSpec, RuntimeConfig, WasmSource};

/// The names of the metrics plugin calls record (through the `metrics` facade: the embedding
/// application installs the recorder and exports them).
pub mod metrics {
    /// Plugin call latency, by plugin, kind and hook: from the instance being started to the
    /// hook's return.
    pub const CALL_DURATION: &str = "camara_plugin_call_duration_seconds";
    /// Plugin calls that failed or were not started, by plugin, kind, hook and failure.
    pub const FAILURES: &str = "camara_plugin_call_failures_total";
}
