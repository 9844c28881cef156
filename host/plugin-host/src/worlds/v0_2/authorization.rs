//! The `authorization-policy` world of 0.2.0.

wasmtime::component::bindgen!({
    world: "authorization-policy",
    path: "../../wit/v0.2.0",
    exports: { default: async },
});

use exports::camara::gateway::policy as wit;
use serde_json::Value;

use crate::hooks::authorization as hook;

super::super::plugin_world!(
    AuthorizationWorld,
    crate::PluginKind::Authorization,
    "camara:gateway/policy@0.2.0",
    AuthorizationPolicy,
    AuthorizationPolicyPre,
    camara::gateway::types::Pair
);

fn claim_value(value: &Value) -> wit::ClaimValue {
    match value {
        Value::String(s) => wit::ClaimValue::Text(s.clone()),
        Value::Number(n) if n.as_f64().is_some() => wit::ClaimValue::Number(n.as_f64().unwrap_or_default()),
        Value::Bool(b) => wit::ClaimValue::Boolean(*b),
        Value::Array(items) if items.iter().all(Value::is_string) => {
            wit::ClaimValue::Texts(items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        }
        other => wit::ClaimValue::Json(other.to_string()),
    }
}

impl super::super::Authorize for AuthorizationWorld {
    async fn authorize(
        instance: &Self::Instance,
        store: &mut wasmtime::Store<crate::state::CallState>,
        request: &hook::AuthorizationRequest,
    ) -> wasmtime::Result<hook::Decision> {
        let (op, claims, fields) = (&request.operation, &request.claims, &request.request);
        let request = wit::AuthorizationRequest {
            operation: wit::Operation {
                api: match op.api {
                    hook::Api::WebrtcRegistration => wit::Api::WebrtcRegistration,
                    hook::Api::WebrtcCallHandling => wit::Api::WebrtcCallHandling,
                    hook::Api::WebrtcEvents => wit::Api::WebrtcEvents,
                },
                operation_id: op.operation_id.clone(),
                method: match op.method {
                    hook::HttpMethod::Get => wit::HttpMethod::Get,
                    hook::HttpMethod::Post => wit::HttpMethod::Post,
                    hook::HttpMethod::Put => wit::HttpMethod::Put,
                    hook::HttpMethod::Patch => wit::HttpMethod::Patch,
                    hook::HttpMethod::Delete => wit::HttpMethod::Delete,
                },
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
                other_claims: claims
                    .all_claims
                    .iter()
                    .filter(|(name, _)| !hook::TokenClaims::TYPED.contains(&name.as_str()))
                    .map(|(name, value)| wit::Claim { name: name.clone(), value: claim_value(value) })
                    .collect(),
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
