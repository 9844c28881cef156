//! The gateway's three plugins: the embedded defaults, or the operator's components.
//!
//! They can be replaced while the gateway runs (SIGHUP, or `POST /admin/plugins/reload`): the
//! plugin section of the configuration is read again, every component is compiled,
//! pre-instantiated and validated, and only then are the three swapped in at once. A request
//! holds the set it started with to its end, so calls in progress are not disturbed; a set that
//! fails to load leaves the running one in place and says why. `[plugins.runtime]` (the
//! engine and its pool) is fixed at start.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use camara_plugin_bundle::BundledPlugin;
use camara_plugin_host::{
    AuthorizationPlugin, BreakerSettings, MappingPlugin, PluginError, PluginKind, PluginLimits, PluginRuntime,
    PluginSpec, RoutingPlugin, RuntimeConfig, WasmSource,
};

use crate::config::{PluginSlot, PluginsConfig};

pub struct Plugins {
    pub authorization: AuthorizationPlugin,
    pub mapping: MappingPlugin,
    pub routing: RoutingPlugin,
    /// Which devices an incoming call rings: the mapping plugin's `forking` configuration.
    pub forking: crate::incoming::Forking,
}

/// The plugins in use, swapped whole on a reload.
pub struct LivePlugins {
    runtime: PluginRuntime,
    current: ArcSwap<Plugins>,
}

/// Why a reload left the running plugins in place.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Plugin(#[from] PluginError),
    #[error("[plugins.api_mapping.config] {0}")]
    Forking(String),
}

impl LivePlugins {
    /// Starts the plugin engine and loads the configured plugins.
    pub async fn load(config: &PluginsConfig) -> Result<Self, ReloadError> {
        let settings = &config.runtime;
        let runtime = PluginRuntime::new(&RuntimeConfig {
            pooling: settings.pooling,
            max_concurrent_calls: settings.max_concurrent_calls,
            keep_resident_bytes: settings.keep_resident_kib << 10,
            ..RuntimeConfig::default()
        })?;
        let plugins = Plugins::load(&runtime, config).await?;
        Ok(LivePlugins { runtime, current: ArcSwap::from_pointee(plugins) })
    }

    /// The plugins to use for one request, from its start to its end.
    pub fn get(&self) -> Arc<Plugins> {
        self.current.load_full()
    }

    /// Loads `config`'s plugins and, once all three are ready, puts them in place.
    pub async fn reload(&self, config: &PluginsConfig) -> Result<(), ReloadError> {
        let plugins = Plugins::load(&self.runtime, config).await?;
        self.current.store(Arc::new(plugins));
        Ok(())
    }
}

/// A plugin's share of the pool when its slot names none: an equal part.
fn default_quota(pool: u32) -> u32 {
    (pool / PluginKind::ALL.len() as u32).max(1)
}

fn spec(slot: &PluginSlot, bundled: BundledPlugin, pool: u32) -> PluginSpec {
    let defaults = PluginLimits::default();
    let limits = PluginLimits {
        memory_bytes: slot.memory_limit_mib.map(|m| m << 20).unwrap_or(defaults.memory_bytes),
        deadline: slot.deadline_ms.map(Duration::from_millis).unwrap_or(defaults.deadline),
        max_concurrent_calls: Some(slot.max_concurrent_calls.unwrap_or(default_quota(pool))),
        max_waiting_calls: slot.max_waiting_calls,
        breaker: BreakerSettings {
            failures: slot.breaker_failures.unwrap_or(defaults.breaker.failures),
            window: slot.breaker_window_seconds.map(Duration::from_secs).unwrap_or(defaults.breaker.window),
            cool_down: slot.breaker_cool_down_seconds.map(Duration::from_secs).unwrap_or(defaults.breaker.cool_down),
        },
    };
    let (name, wasm) = match &slot.wasm {
        Some(path) => (
            path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string()),
            WasmSource::File(path.clone()),
        ),
        None => (bundled.name.to_string(), WasmSource::Static(bundled.wasm)),
    };
    PluginSpec { name, wasm, config: slot.config.clone().into_iter().collect(), limits }
}

impl Plugins {
    /// Compiles, pre-instantiates and validates the configuration of each plugin.
    async fn load(runtime: &PluginRuntime, config: &PluginsConfig) -> Result<Self, ReloadError> {
        let forking =
            crate::incoming::Forking::from_plugin_config(&config.api_mapping.config).map_err(ReloadError::Forking)?;
        let pool = config.runtime.max_concurrent_calls;
        let slots = [&config.authorization, &config.api_mapping, &config.notification_routing];
        let shares: u32 = slots.iter().map(|s| s.max_concurrent_calls.unwrap_or(default_quota(pool))).sum();
        if shares > pool {
            tracing::warn!(
                shares,
                pool,
                "the plugins' max_concurrent_calls add up to more than the pool: one may take another's instances"
            );
        }
        let authorization =
            AuthorizationPlugin::load(runtime, spec(&config.authorization, camara_plugin_bundle::AUTHORIZATION, pool))
                .await?;
        let mapping =
            MappingPlugin::load(runtime, spec(&config.api_mapping, camara_plugin_bundle::API_MAPPING, pool)).await?;
        let routing = RoutingPlugin::load(
            runtime,
            spec(&config.notification_routing, camara_plugin_bundle::NOTIFICATION_ROUTING, pool),
        )
        .await?;
        tracing::info!(
            authorization = authorization.name(),
            api_mapping = mapping.name(),
            notification_routing = routing.name(),
            pooling = runtime.is_pooling(),
            "plugins loaded"
        );
        Ok(Plugins { authorization, mapping, routing, forking })
    }
}

/// The host's session status for the mapping plugin's (the WIT enum, converted here only).
pub fn session_status(status: camara_plugin_host::mapping::SessionStatus) -> crate::store::SessionStatus {
    use crate::store::SessionStatus as Host;
    use camara_plugin_host::mapping::SessionStatus as Wit;
    match status {
        Wit::Initial => Host::Initial,
        Wit::InProgress => Host::InProgress,
        Wit::Ringing => Host::Ringing,
        Wit::Proceeding => Host::Proceeding,
        Wit::Connected => Host::Connected,
        Wit::Terminated => Host::Terminated,
        Wit::Hold => Host::Hold,
        Wit::Resume => Host::Resume,
        Wit::SessionCancelled => Host::SessionCancelled,
        Wit::Declined => Host::Declined,
        Wit::Failed => Host::Failed,
        Wit::Waiting => Host::Waiting,
        Wit::NoAnswer => Host::NoAnswer,
        Wit::NotReachable => Host::NotReachable,
        Wit::Busy => Host::Busy,
    }
}
