//! The gateway's three plugins: the embedded defaults, or the operator's components.

use std::time::Duration;

use camara_plugin_bundle::BundledPlugin;
use camara_plugin_host::{
    AuthorizationPlugin, MappingPlugin, PluginError, PluginKind, PluginLimits, PluginRuntime, PluginSpec,
    RoutingPlugin, RuntimeConfig, WasmSource,
};

use crate::config::{PluginSlot, PluginsConfig};

pub struct Plugins {
    pub authorization: AuthorizationPlugin,
    pub mapping: MappingPlugin,
    pub routing: RoutingPlugin,
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
    pub async fn load(config: &PluginsConfig) -> Result<Self, PluginError> {
        let settings = &config.runtime;
        let runtime = PluginRuntime::new(&RuntimeConfig {
            pooling: settings.pooling,
            max_concurrent_calls: settings.max_concurrent_calls,
            keep_resident_bytes: settings.keep_resident_kib << 10,
            ..RuntimeConfig::default()
        })?;
        let pool = settings.max_concurrent_calls;
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
            AuthorizationPlugin::load(&runtime, spec(&config.authorization, camara_plugin_bundle::AUTHORIZATION, pool))
                .await?;
        let mapping =
            MappingPlugin::load(&runtime, spec(&config.api_mapping, camara_plugin_bundle::API_MAPPING, pool)).await?;
        let routing = RoutingPlugin::load(
            &runtime,
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
        Ok(Plugins { authorization, mapping, routing })
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
