//! `/health` and `/ready` on a running gateway: both unauthenticated, `/ready` turning `503`
//! (naming the component) when the SIP user agent stops or a drain begins, while `/health` stays
//! `200` as long as HTTP is served.

use std::time::Duration;

use camara_gateway::config::SipTransportName;
use camara_gateway_tests::*;
use serde_json::json;

async fn get(api: &Api, path: &str) -> (u16, serde_json::Value) {
    let reply = api.call("GET", path, None, &[], None).await;
    (reply.status, reply.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_ready_answer_200_without_a_token_on_a_running_gateway() {
    init_logs();
    let gateway = camara_gateway::start(gateway_config(None, SipTransportName::Udp)).await.unwrap();
    let api = Api::new(gateway.http_addr);
    assert_eq!(get(&api, "/health").await, (200, json!({"status": "ok"})));
    assert_eq!(get(&api, "/ready").await, (200, json!({"status": "ready"})));
    let document = api.get_text("/openapi.json").await.body;
    assert!(!document.contains("/ready") && !document.contains("/health"), "not CAMARA operations");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_503_and_names_the_sip_side_once_it_stops() {
    init_logs();
    let gateway = camara_gateway::start(gateway_config(None, SipTransportName::Udp)).await.unwrap();
    let api = Api::new(gateway.http_addr);
    gateway.gateway.sip.shutdown().await;
    let (status, body) = get(&api, "/ready").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body, json!({"status": "not ready", "notReady": {"sip": "the SIP user agent has stopped"}}));
    assert_eq!(get(&api, "/health").await.0, 200, "the process still serves HTTP");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_503_while_draining_and_health_stays_200() {
    init_logs();
    let mut config = gateway_config(None, SipTransportName::Udp);
    config.shutdown.drain_seconds = 1;
    let gateway = camara_gateway::start(config).await.unwrap();
    let api = Api::new(gateway.http_addr);
    // With no call and no event due, the drain ends at once; the server keeps serving until
    // `stop`, as between a drain and the exit.
    tokio::time::timeout(Duration::from_secs(5), camara_gateway::shutdown::drain(&gateway.gateway)).await.unwrap();
    let (status, body) = get(&api, "/ready").await;
    assert_eq!(status, 503, "{body}");
    assert!(body["notReady"]["drain"].is_string(), "{body}");
    assert_eq!(get(&api, "/health").await.0, 200);
    gateway.stop().await;
}
