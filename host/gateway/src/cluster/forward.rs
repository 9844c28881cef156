//! A request on a call another node holds is forwarded to that node: only the node with the
//! call's SIP dialog and media can hang it up, put it on hold or answer it.
//!
//! The forwarded request carries the caller's own headers (its access token among them), so the
//! node that holds the call authenticates and authorizes it as if it had come straight there;
//! [`FORWARDED_BY`] names the node that forwarded it, and a forwarded request is never forwarded
//! again (a call that moved meanwhile is answered where it lands). When the holding node is
//! dead the call is being ended by a survivor: `503` with `Retry-After`.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::app::Gateway;
use crate::error::ApiError;

/// Set on a forwarded request to the id of the node that forwarded it.
pub const FORWARDED_BY: &str = "x-camara-forwarded-by";

/// Bodies of call-handling requests are SDP in JSON: far below this.
const MAX_BODY: usize = 1024 * 1024;

/// Longer than the slowest call-handling request (an answer waits for the network's 200).
const TIMEOUT: Duration = Duration::from_secs(35);

/// Seconds a client waits before asking again about a call whose node died.
const RETRY_AFTER_SECONDS: u32 = 2;

/// Plain HTTP between the nodes, on the operator's internal network.
static CLIENT: LazyLock<Client<HttpConnector, Full<Bytes>>> =
    LazyLock::new(|| Client::builder(TokioExecutor::new()).build_http());

/// Headers that describe one hop, not the request.
const HOP_BY_HOP: [HeaderName; 4] =
    [header::HOST, header::CONNECTION, header::TRANSFER_ENCODING, header::CONTENT_LENGTH];

/// Middleware of the call-handling API: forwards `PUT` and `DELETE` on a session whose call
/// another node holds.
pub async fn calls_held_elsewhere(State(gw): State<Arc<Gateway>>, request: Request, next: Next) -> Response {
    if let Some(by) = request.headers().get(FORWARDED_BY) {
        tracing::debug!(node = ?by, "request forwarded by another node");
    }
    // One node holds every call of a store no other node shares: no read on its requests' path.
    if !gw.config.storage.is_shared() {
        return next.run(request).await;
    }
    // The request itself (its body is not `Sync`) is not held across the store's wait.
    let owner = match session_changed(&request) {
        Some(session_id) => owner_elsewhere(&gw, &session_id).await,
        None => None,
    };
    let Some(owner) = owner else {
        return next.run(request).await;
    };
    let nodes = gw.store.backend().nodes().await.unwrap_or_default();
    match nodes.into_iter().find(|n| n.id == owner).and_then(|n| n.address) {
        Some(address) => match forward(&gw, &owner, &address, request).await {
            Ok(response) => response,
            Err(e) => {
                tracing::warn!(node = owner, "request not forwarded to the node holding the call: {e}");
                unavailable()
            }
        },
        None => unavailable(),
    }
}

/// The session a `PUT` or `DELETE` changes, unless the request was forwarded here already.
fn session_changed(request: &Request) -> Option<String> {
    if !matches!(*request.method(), Method::PUT | Method::DELETE) || request.headers().contains_key(FORWARDED_BY) {
        return None;
    }
    // Nested under the call-handling base: `/sessions/{id}` or `/sessions/{id}/status`.
    let rest = request.uri().path().split_once("/sessions/")?.1;
    rest.split('/').next().filter(|id| !id.is_empty()).map(str::to_owned)
}

/// The node holding the call of session `session_id`, when it is not this one.
async fn owner_elsewhere(gw: &Gateway, session_id: &str) -> Option<String> {
    let session = gw.store.session_by_id(session_id).await.ok()??;
    if session.sip_call_id.is_none() || crate::cluster::is_here(gw, session.node.as_deref()) {
        return None;
    }
    session.node
}

async fn forward(gw: &Gateway, owner: &str, address: &str, request: Request) -> Result<Response, String> {
    let (parts, body) = request.into_parts();
    // Under the call-handling router, which sees its paths without its base.
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{}{path}", address.trim_end_matches('/'), gw.config.api.call_handling_base);
    let body = axum::body::to_bytes(body, MAX_BODY).await.map_err(|e| format!("request body: {e}"))?;
    let mut outgoing = hyper::Request::builder().method(parts.method.clone()).uri(&url);
    for (name, value) in parts.headers.iter().filter(|(name, _)| !HOP_BY_HOP.contains(name)) {
        outgoing = outgoing.header(name, value);
    }
    let outgoing =
        outgoing.header(FORWARDED_BY, gw.store.node()).body(Full::new(body)).map_err(|e| format!("{url}: {e}"))?;
    tracing::debug!(node = owner, url, method = %parts.method, "forwarding to the node holding the call");
    let answer = tokio::time::timeout(TIMEOUT, CLIENT.request(outgoing))
        .await
        .map_err(|_| format!("{url}: timed out"))?
        .map_err(|e| format!("{url}: {e}"))?;
    let (parts, body) = answer.into_parts();
    let body = tokio::time::timeout(TIMEOUT, body.collect())
        .await
        .map_err(|_| format!("{url}: response timed out"))?
        .map_err(|e| format!("{url}: response: {e}"))?
        .to_bytes();
    let mut response = Response::from_parts(parts, Body::from(body));
    for name in &HOP_BY_HOP {
        response.headers_mut().remove(name);
    }
    Ok(response)
}

fn unavailable() -> Response {
    let mut error = ApiError::unavailable("The gateway node holding this call is not reachable; the call is ending");
    error.retry_after = Some(RETRY_AFTER_SECONDS);
    debug_assert_eq!(error.status, StatusCode::SERVICE_UNAVAILABLE);
    error.into_response()
}
