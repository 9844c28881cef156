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
    modifiers(&OpenIdScheme)
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
