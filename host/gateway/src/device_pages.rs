//! The device side's pages and demo controls served next to the API: the browser softphone
//! (plain files embedded at build time, no build step) and `POST /demo/calls`, which makes the
//! demo endpoint call a device.

use std::sync::Arc;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::app::Gateway;
use crate::error::ApiError;

const INDEX_HTML: &str = include_str!("../web/softphone/index.html");
const APP_JS: &str = include_str!("../web/softphone/app.js");
const AUDIO_JS: &str = include_str!("../web/softphone/audio.js");
const QUALITY_JS: &str = include_str!("../web/softphone/quality.js");
const TIMELINE_JS: &str = include_str!("../web/softphone/timeline.js");
const STYLE_CSS: &str = include_str!("../web/softphone/style.css");

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

/// The page only talks to its own origin (the APIs, the OAuth server, the relay's WebSocket).
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; \
    media-src 'self' blob:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn file(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
}

/// `POST /demo/calls`: the echo number calls a registered device. The body is JSON whatever
/// its content type says (a `curl -d` sends it as a form).
async fn demo_call(demo: &crate::demo::DemoEndpoint, body: &[u8]) -> Result<axum::response::Response, ApiError> {
    let call: DemoCall = serde_json::from_slice(body)
        .map_err(|_| ApiError::invalid_argument(r#"the body must be JSON such as {"to": "+818000000001"}"#))?;
    if crate::validate::address("to", &format!("tel:{}", call.to)).is_err() {
        return Err(ApiError::invalid_argument("to must be an E.164 number such as +818000000001"));
    }
    if !demo.is_registered(&call.to).await {
        return Err(ApiError::not_found(format!("No device is registered for {}", call.to)));
    }
    let call_id =
        demo.call(&call.to).await.map_err(|e| ApiError::unavailable(format!("The demo endpoint cannot call: {e}")))?;
    let answer = Json(serde_json::json!({ "callId": call_id, "from": crate::demo::ECHO_NUMBER }));
    Ok((StatusCode::ACCEPTED, answer).into_response())
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DemoCall {
    /// The E.164 number to call (a registered device).
    to: String,
}

/// Adds the softphone and the demo controls that this configuration turns on.
pub fn add(router: Router, gw: &Arc<Gateway>) -> Router {
    let mut router = router;
    if gw.config.device_side.softphone {
        router = router
            .route("/", get(|| async { Redirect::to("/softphone/") }))
            .route("/softphone", get(|| async { Redirect::permanent("/softphone/") }))
            .route("/softphone/", get(|| async { file("text/html; charset=utf-8", INDEX_HTML) }))
            .route("/softphone/app.js", get(|| async { file(JAVASCRIPT, APP_JS) }))
            .route("/softphone/audio.js", get(|| async { file(JAVASCRIPT, AUDIO_JS) }))
            .route("/softphone/quality.js", get(|| async { file(JAVASCRIPT, QUALITY_JS) }))
            .route("/softphone/timeline.js", get(|| async { file(JAVASCRIPT, TIMELINE_JS) }))
            .route("/softphone/style.css", get(|| async { file("text/css; charset=utf-8", STYLE_CSS) }));
    }
    if let Some(demo) = gw.demo.clone() {
        router = router.route(
            "/demo/calls",
            post(move |body: axum::body::Bytes| {
                let demo = demo.clone();
                async move { demo_call(&demo, &body).await }
            }),
        );
    }
    router
}
