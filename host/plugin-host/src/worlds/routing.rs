//! The `notification-routing` world.

wasmtime::component::bindgen!({
    world: "notification-routing",
    path: "../../wit",
    exports: { default: async },
    additional_derives: [serde::Serialize, serde::Deserialize],
    with: {
        "camara:gateway/types": crate::authorization::camara::gateway::types,
        "camara:gateway/log": crate::authorization::camara::gateway::log,
        "camara:gateway/config": crate::authorization::camara::gateway::config,
    },
});

pub use exports::camara::gateway::routing::{
    Delivery, DeliveryFailure, Event, FailureKind, RetryDecision, Subscription,
};

use crate::PluginError;
use crate::runtime::{LoadedPlugin, PluginKind, PluginRuntime, PluginSpec};

super::plugin_world!(RoutingWorld, PluginKind::NotificationRouting, NotificationRouting, NotificationRoutingPre);

/// A loaded notification-routing plugin.
pub struct RoutingPlugin(LoadedPlugin<RoutingWorld>);

impl RoutingPlugin {
    pub async fn load(runtime: &PluginRuntime, spec: PluginSpec) -> Result<Self, PluginError> {
        runtime.load(spec).await.map(Self)
    }

    pub fn name(&self) -> &str {
        self.0.name()
    }

    pub async fn route(&self, event: &Event, subscriptions: &[Subscription]) -> Result<Vec<Delivery>, PluginError> {
        let mut call = self.0.start("route").await?;
        let result = call.instance.camara_gateway_routing().call_route(&mut call.store, event, subscriptions).await;
        call.finish(result)
    }

    pub async fn on_delivery_failure(&self, failure: &DeliveryFailure) -> Result<RetryDecision, PluginError> {
        let mut call = self.0.start("on-delivery-failure").await?;
        let result = call.instance.camara_gateway_routing().call_on_delivery_failure(&mut call.store, failure).await;
        call.finish(result)
    }
}
