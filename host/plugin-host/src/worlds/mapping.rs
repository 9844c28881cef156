//! The `api-mapping` world.

wasmtime::component::bindgen!({
    world: "api-mapping",
    path: "../../wit",
    exports: { default: async },
    additional_derives: [serde::Serialize, serde::Deserialize],
    with: {
        "camara:gateway/types": crate::authorization::camara::gateway::types,
        "camara:gateway/log": crate::authorization::camara::gateway::log,
        "camara:gateway/config": crate::authorization::camara::gateway::config,
    },
});

pub use crate::authorization::camara::gateway::types::{CallType, CamaraError, SessionStatus};
pub use exports::camara::gateway::mapping::{
    CallDirection, IncomingCall, IncomingInvite, InvitePlan, NameAddr, NetworkContext, OutgoingCall, RegistrationPlan,
    RegistrationRequest, SipEvent, SipRejection, SipRequest, SipResponse, StatusUpdate,
};

use crate::PluginError;
use crate::runtime::{LoadedPlugin, PluginKind, PluginRuntime, PluginSpec};

super::plugin_world!(MappingWorld, PluginKind::ApiMapping, ApiMapping, ApiMappingPre);

/// A loaded api-mapping plugin.
pub struct MappingPlugin(LoadedPlugin<MappingWorld>);

impl MappingPlugin {
    pub async fn load(runtime: &PluginRuntime, spec: PluginSpec) -> Result<Self, PluginError> {
        runtime.load(spec).await.map(Self)
    }

    pub fn name(&self) -> &str {
        self.0.name()
    }

    pub async fn map_outgoing_call(
        &self,
        call_request: &OutgoingCall,
        network: &NetworkContext,
    ) -> Result<Result<InvitePlan, CamaraError>, PluginError> {
        let mut call = self.0.start("map-outgoing-call").await?;
        let mapping = call.instance.camara_gateway_mapping();
        let result = mapping.call_map_outgoing_call(&mut call.store, call_request, network).await;
        call.finish(result)
    }

    pub async fn map_registration(
        &self,
        request: &RegistrationRequest,
        network: &NetworkContext,
    ) -> Result<Result<RegistrationPlan, CamaraError>, PluginError> {
        let mut call = self.0.start("map-registration").await?;
        let mapping = call.instance.camara_gateway_mapping();
        let result = mapping.call_map_registration(&mut call.store, request, network).await;
        call.finish(result)
    }

    pub async fn map_incoming_call(
        &self,
        invite: &IncomingInvite,
    ) -> Result<Result<IncomingCall, SipRejection>, PluginError> {
        let mut call = self.0.start("map-incoming-call").await?;
        let result = call.instance.camara_gateway_mapping().call_map_incoming_call(&mut call.store, invite).await;
        call.finish(result)
    }

    pub async fn map_sip_event(
        &self,
        event: &SipEvent,
        direction: CallDirection,
    ) -> Result<Option<StatusUpdate>, PluginError> {
        let mut call = self.0.start("map-sip-event").await?;
        let result = call.instance.camara_gateway_mapping().call_map_sip_event(&mut call.store, event, direction).await;
        call.finish(result)
    }
}
