//! The `authorization-policy` world.

wasmtime::component::bindgen!({
    world: "authorization-policy",
    path: "../../wit",
    exports: { default: async },
    additional_derives: [serde::Serialize, serde::Deserialize],
});

pub use camara::gateway::types::CamaraError;
pub use exports::camara::gateway::policy::{
    AuthorizationRequest, Decision, Operation, RequestFields, Subscriber, TokenClaims,
};

use crate::PluginError;
use crate::runtime::{LoadedPlugin, PluginKind, PluginRuntime, PluginSpec};

super::plugin_world!(AuthorizationWorld, PluginKind::Authorization, AuthorizationPolicy, AuthorizationPolicyPre);

/// A loaded authorization-policy plugin.
pub struct AuthorizationPlugin(LoadedPlugin<AuthorizationWorld>);

impl AuthorizationPlugin {
    pub async fn load(runtime: &PluginRuntime, spec: PluginSpec) -> Result<Self, PluginError> {
        runtime.load(spec).await.map(Self)
    }

    pub fn name(&self) -> &str {
        self.0.name()
    }

    pub async fn authorize(&self, request: &AuthorizationRequest) -> Result<Decision, PluginError> {
        let mut call = self.0.start("authorize").await?;
        let result = call.instance.camara_gateway_policy().call_authorize(&mut call.store, request).await;
        call.finish(result)
    }
}
