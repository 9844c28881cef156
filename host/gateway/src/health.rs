//! `/health` (liveness) and `/ready` (readiness), for supervisors and load balancers:
//! unauthenticated, cheap, and not part of the CAMARA APIs (nor of `/openapi.json`).
//!
//! Liveness is "this process serves HTTP": a supervisor restarts the gateway when it fails.
//! Readiness is "send it traffic": the store answers a read, the plugins are loaded, the SIP
//! listeners are bound and their task runs, and no drain has begun (a draining gateway refuses
//! new calls, so a load balancer should move them elsewhere). Token keys are not checked: that
//! would put the IdP on every probe, and requests already answer 503 while keys are missing.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use camara_sip::Transport;
use serde_json::{Map, Value, json};

use crate::app::Gateway;

pub const HEALTH_PATH: &str = "/health";
pub const READY_PATH: &str = "/ready";

pub fn routes() -> Router<Arc<Gateway>> {
    Router::new()
        .route(HEALTH_PATH, get(|| async { Json(json!({"status": "ok"})) }))
        .route(READY_PATH, get(|State(gw): State<Arc<Gateway>>| async move { Readiness::of(&gw).await }))
}

/// One component's answer: `None` when ready, else why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub component: &'static str,
    pub problem: Option<String>,
}

impl Check {
    fn ready(component: &'static str) -> Self {
        Check { component, problem: None }
    }

    fn not_ready(component: &'static str, problem: impl Into<String>) -> Self {
        Check { component, problem: Some(problem.into()) }
    }
}

/// The checks of one `/ready` request; `503` naming every failed component unless all passed.
#[derive(Debug, Clone)]
pub struct Readiness {
    pub checks: Vec<Check>,
}

impl Readiness {
    pub async fn of(gw: &Gateway) -> Self {
        // Any id: a miss is an answer too. A redb read transaction, no write, no scan.
        let store = store_check(gw.store.backend().registration("readiness-probe").await.map(|_| ()));
        Readiness {
            checks: vec![
                store,
                // `start` fails when a plugin does not load, and the listener serves only after
                // it: loaded plugins are a given here, listed so that the body says what counts.
                Check::ready("plugins"),
                sip_check(gw),
                if gw.drain.is_draining() {
                    Check::not_ready("drain", "shutting down: new calls are refused")
                } else {
                    Check::ready("drain")
                },
            ],
        }
    }

    pub fn is_ready(&self) -> bool {
        self.checks.iter().all(|c| c.problem.is_none())
    }
}

/// A storage read's outcome as a check.
pub fn store_check(read: Result<(), camara_store::StoreError>) -> Check {
    match read {
        Ok(()) => Check::ready("store"),
        Err(e) => Check::not_ready("store", e.to_string()),
    }
}

fn sip_check(gw: &Gateway) -> Check {
    if !gw.sip.is_running() {
        return Check::not_ready("sip", "the SIP user agent has stopped");
    }
    let configured = [
        (Transport::Udp, gw.config.sip.udp_listen),
        (Transport::Tcp, gw.config.sip.tcp_listen),
        (Transport::Tls, gw.config.sip.tls_listen),
    ];
    let unbound: Vec<&str> = configured
        .iter()
        .filter(|(transport, wanted)| wanted.is_some() && gw.sip.local_addr(*transport).is_none())
        .map(|(transport, _)| transport.via_name())
        .collect();
    if unbound.is_empty() {
        Check::ready("sip")
    } else {
        Check::not_ready("sip", format!("not listening on {}", unbound.join(", ")))
    }
}

impl IntoResponse for Readiness {
    fn into_response(self) -> Response {
        if self.is_ready() {
            return Json(json!({"status": "ready"})).into_response();
        }
        let not_ready: Map<String, Value> =
            self.checks.into_iter().filter_map(|c| Some((c.component.to_string(), c.problem?.into()))).collect();
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "not ready", "notReady": not_ready}))).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn answer(readiness: Readiness) -> (StatusCode, Value) {
        let response = readiness.into_response();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn a_failing_store_read_makes_the_gateway_not_ready_and_is_named() {
        let failed = store_check(Err(camara_store::StoreError::Backend("the disk is gone".into())));
        let readiness = Readiness { checks: vec![failed, Check::ready("plugins"), Check::ready("sip")] };
        assert!(!readiness.is_ready());
        let (status, body) = answer(readiness).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body,
            json!({"status": "not ready", "notReady": {"store": "storage backend: the disk is gone"}}),
            "only what is not ready is named"
        );
    }

    #[tokio::test]
    async fn every_check_passing_is_ready() {
        let readiness = Readiness { checks: vec![store_check(Ok(())), Check::ready("sip")] };
        assert_eq!(answer(readiness).await, (StatusCode::OK, json!({"status": "ready"})));
    }
}
