//! The `authorization-policy` world of 0.1.0.

wasmtime::component::bindgen!({
    world: "authorization-policy",
    path: "../../wit/v0.1.0",
    exports: { default: async },
});

use exports::camara::gateway::policy as wit;

use crate::hooks::authorization as hook;

super::super::plugin_world!(
    AuthorizationWorld,
    crate::PluginKind::Authorization,
    "camara:gateway/policy@0.1.0",
    AuthorizationPolicy,
    AuthorizationPolicyPre,
    camara::gateway::types::Pair
);

impl super::super::Authorize for AuthorizationWorld {
    async fn authorize(
        instance: &Self::Instance,
        store: &mut wasmtime::Store<crate::state::CallState>,
        request: &hook::AuthorizationRequest,
    ) -> wasmtime::Result<hook::Decision> {
        let (op, claims, fields) = (&request.operation, &request.claims, &request.request);
        let request = wit::AuthorizationRequest {
            operation: wit::Operation {
                api: op.api.as_str().into(),
                operation_id: op.operation_id.clone(),
                method: op.method.as_str().into(),
                path_ids: super::pairs(&op.path_ids),
            },
            claims: wit::TokenClaims {
                issuer: claims.issuer.clone(),
                subject: claims.subject.clone(),
                audience: claims.audience.clone(),
                scopes: claims.scopes.clone(),
                expires_at: claims.expires_at,
                issued_at: claims.issued_at,
                client_id: claims.client_id.clone(),
                all_claims_json: serde_json::Value::Object(claims.all_claims.clone()).to_string(),
            },
            request: wit::RequestFields {
                device_id: fields.device_id.clone(),
                registration_id: fields.registration_id.clone(),
                addresses: fields.addresses.clone(),
                event_types: fields.event_types.clone(),
            },
        };
        let decision = instance.camara_gateway_policy().call_authorize(store, &request).await?;
        Ok(match decision {
            wit::Decision::Allow(s) => {
                hook::Decision::Allow(hook::Subscriber { phone_number: s.phone_number, subject: s.subject })
            }
            wit::Decision::Deny(e) => hook::Decision::Deny(super::camara_error(e)),
        })
    }
}
