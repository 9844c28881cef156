//! The gateway's own OpenAPI document, generated from the handlers and types (utoipa), served at
//! [`PATH`] with the configured base paths.

use axum::Json;
use serde_json::{Value, json};
use utoipa::OpenApi;

use super::GatewayState;
use crate::config::{ApiConfig, GatewayConfig};

pub const PATH: &str = "/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "CAMARA WebRTC gateway",
        description = "The CAMARA webrtc-registration, webrtc-call-handling and webrtc-events APIs as this gateway serves them."
    ),
    paths(
        super::registration::list,
        super::registration::create,
        super::registration::read,
        super::registration::update,
        super::registration::remove,
        super::call_handling::create,
        super::call_handling::read,
        super::call_handling::remove,
        super::call_handling::update_status,
        super::events::list,
        super::events::create,
        super::events::read,
        super::events::update,
        super::events::remove,
    ),
    components(schemas(crate::error::ErrorInfo)),
    modifiers(&OptionalBodies)
)]
struct ApiDoc;

/// The request bodies the CAMARA files do not mark `required` and the gateway serves without
/// (utoipa marks every typed body required).
struct OptionalBodies;

impl utoipa::Modify for OptionalBodies {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let update = openapi
            .paths
            .paths
            .get_mut("/webrtc-registration/v0.3/sessions/{registrationId}")
            .and_then(|item| item.put.as_mut())
            .and_then(|operation| operation.request_body.as_mut());
        if let Some(utoipa::openapi::RefOr::T(body)) = update {
            body.required = Some(utoipa::openapi::Required::False);
        }
    }
}

/// The document as this configuration serves it: the paths under the configured base paths,
/// the discovery URL of the configured issuer, the constraints that depend on the configuration.
pub fn document(config: &GatewayConfig) -> Value {
    let mut doc = serde_json::to_value(rebased(&config.api)).expect("the document serializes");
    doc["components"]["securitySchemes"]["openId"] = security_scheme(config);
    if let Some(schemas) = doc.pointer_mut("/components/schemas") {
        without_null(schemas);
    }
    // The caps of the CAMARA files on lists (utoipa cannot say them). A device has one
    // registration per subscriber, so its list never nears 10.
    for (path, max) in [
        (format!("{}/sessions", config.api.registration_base), 10),
        (format!("{}/subscriptions", config.api.events_base), super::events::MAX_LISTED_SUBSCRIPTIONS),
    ] {
        let list = format!("/paths/{}/get/responses/200/content/application~1json/schema", pointer_key(&path));
        if let Some(schema) = doc.pointer_mut(&list) {
            schema["maxItems"] = max.into();
        }
    }
    doc["components"]["schemas"]["HTTPSettings"]["properties"]["headers"]["additionalProperties"]["maxLength"] =
        crate::model::MAX_HTTP_SETTINGS_HEADER.into();
    // Never the same type twice (utoipa cannot say `uniqueItems` either).
    for schema in ["SubscriptionRequest", "Subscription"] {
        doc["components"]["schemas"][schema]["properties"]["types"]["uniqueItems"] = true.into();
    }
    if !config.api.multi_event_subscriptions {
        doc["components"]["schemas"]["Subscription"]["properties"]["types"]["maxItems"] = 1.into();
        doc["components"]["schemas"]["SubscriptionRequest"]["properties"]["types"]["description"] =
            "Several types are answered 422 MULTIEVENT_SUBSCRIPTION_NOT_SUPPORTED.".into();
    }
    doc
}

/// The schemas without the `null` utoipa allows in every optional member: the gateway refuses
/// `null` members (`api::null_member`), as no CAMARA schema is nullable.
fn without_null(schema: &mut Value) {
    match schema {
        Value::Object(members) => {
            if let Some(Value::Array(types)) = members.get_mut("type") {
                types.retain(|t| t != "null");
                if let [only] = types.as_slice() {
                    let only = only.clone();
                    members.insert("type".into(), only);
                }
            }
            let one_of_null =
                members.get("oneOf").and_then(Value::as_array).is_some_and(|v| v.len() == 2 && v[1]["type"] == "null");
            if one_of_null
                && let Some(Value::Array(mut variants)) = members.remove("oneOf")
                && let Value::Object(schema) = variants.swap_remove(0)
            {
                members.extend(schema);
            }
            members.values_mut().for_each(without_null);
        }
        Value::Array(items) => items.iter_mut().for_each(without_null),
        _ => {}
    }
}

/// A path as a JSON pointer segment (RFC 6901).
fn pointer_key(path: &str) -> String {
    path.replace('~', "~0").replace('/', "~1")
}

/// Where clients discover how to get tokens: the configured issuer's OpenID discovery document
/// (`[auth] issuer`, else the built-in provider when it is on, else the first of `[auth]
/// issuers`). With no issuer configured there is no discovery URL to give, and the scheme is
/// plain bearer.
fn security_scheme(config: &GatewayConfig) -> Value {
    let issuer = config
        .auth
        .issuer
        .as_ref()
        .or(config.oauth_server.enabled.then_some(&config.oauth_server.issuer))
        .or(config.auth.issuers.first());
    match issuer {
        Some(issuer) => json!({
            "type": "openIdConnect",
            "openIdConnectUrl": format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/')),
        }),
        None => json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}),
    }
}

fn rebased(api: &ApiConfig) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    let defaults = ApiConfig::default();
    let rebase = [
        (defaults.registration_base, &api.registration_base),
        (defaults.call_handling_base, &api.call_handling_base),
        (defaults.events_base, &api.events_base),
    ];
    let paths = std::mem::take(&mut doc.paths.paths);
    doc.paths.paths = paths
        .into_iter()
        .map(|(path, item)| {
            let path = rebase
                .iter()
                .find_map(|(from, to)| path.strip_prefix(from.as_str()).map(|rest| format!("{to}{rest}")))
                .unwrap_or(path);
            (path, item)
        })
        .collect();
    doc
}

pub(super) async fn serve(gw: GatewayState) -> Json<Value> {
    Json(document(&gw.config))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document states the patterns the gateway enforces.
    #[test]
    fn the_documented_patterns_are_the_enforced_ones() {
        let doc = document(&GatewayConfig::default());
        assert_eq!(doc["components"]["schemas"]["Address"]["pattern"], crate::validate::ADDRESS_PATTERN);
        let create = &doc["paths"]["/webrtc-call-handling/v0.3/sessions"]["post"];
        let correlator = create["parameters"].as_array().unwrap().iter().find(|p| p["name"] == "x-correlator").unwrap();
        assert_eq!(correlator["schema"]["pattern"], crate::validate::CORRELATOR_PATTERN);
        let update = &doc["paths"]["/webrtc-registration/v0.3/sessions/{registrationId}"]["put"];
        assert_eq!(update["requestBody"]["required"], false, "the body of a registration refresh is optional");
    }

    /// The discovery URL is the configured issuer's, not a path of the gateway's own.
    #[test]
    fn the_discovery_url_is_the_configured_issuers() {
        let url = |config: &GatewayConfig| document(config)["components"]["securitySchemes"]["openId"].clone();
        let mut config = GatewayConfig::default();
        config.oauth_server.enabled = false;
        config.auth.issuers = vec!["https://other.example".into()];
        config.auth.issuer = Some("https://idp.example/realms/camara/".into());
        assert_eq!(
            url(&config)["openIdConnectUrl"],
            "https://idp.example/realms/camara/.well-known/openid-configuration"
        );
        config.auth.issuer = None;
        assert_eq!(url(&config)["openIdConnectUrl"], "https://other.example/.well-known/openid-configuration");
        config.auth.issuers.clear();
        assert_eq!(url(&config)["type"], "http", "no issuer, no discovery URL to give: plain bearer");
    }
}
