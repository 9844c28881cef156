//! The gateway's own OpenAPI document, generated from the handlers and types (utoipa), served at
//! [`PATH`] with the configured base paths.

use axum::Json;
use utoipa::OpenApi;
use utoipa::openapi::security::{OpenIdConnect, SecurityScheme};

use super::GatewayState;
use crate::config::ApiConfig;

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
    modifiers(&OpenIdScheme, &OptionalBodies)
)]
struct ApiDoc;

struct OpenIdScheme;

impl utoipa::Modify for OpenIdScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "openId",
            SecurityScheme::OpenIdConnect(OpenIdConnect::new("/.well-known/openid-configuration")),
        );
    }
}

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

/// The document with the paths under the configured base paths.
pub fn document(api: &ApiConfig) -> utoipa::openapi::OpenApi {
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

pub(super) async fn serve(gw: GatewayState) -> Json<utoipa::openapi::OpenApi> {
    Json(document(&gw.config.api))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document states the patterns the gateway enforces.
    #[test]
    fn the_documented_patterns_are_the_enforced_ones() {
        let doc = serde_json::to_value(document(&ApiConfig::default())).unwrap();
        assert_eq!(doc["components"]["schemas"]["Address"]["pattern"], crate::validate::ADDRESS_PATTERN);
        let create = &doc["paths"]["/webrtc-call-handling/v0.3/sessions"]["post"];
        let correlator = create["parameters"].as_array().unwrap().iter().find(|p| p["name"] == "x-correlator").unwrap();
        assert_eq!(correlator["schema"]["pattern"], crate::validate::CORRELATOR_PATTERN);
        let update = &doc["paths"]["/webrtc-registration/v0.3/sessions/{registrationId}"]["put"];
        assert_eq!(update["requestBody"]["required"], false, "the body of a registration refresh is optional");
    }
}
