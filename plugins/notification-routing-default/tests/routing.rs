//! The default routing, run in isolation through the plugin harness.

use camara_plugin_harness::routing::{DeliveryFailure, FailureKind, RetryDecision};
use camara_plugin_harness::{Harness, RoutingPlugin, build_component, fixtures};

const STATUS: &str = "org.camaraproject.webrtc-events.v0.session-status";
const INVITATION: &str = "org.camaraproject.webrtc-events.v0.session-invitation";

async fn routing(config: &[(&str, &str)]) -> RoutingPlugin {
    let wasm = build_component(env!("CARGO_MANIFEST_DIR")).expect("build");
    Harness::new().unwrap().routing(&wasm, config).await.expect("load")
}

#[tokio::test]
async fn events_go_to_the_subscriptions_of_their_device_and_subscriber() {
    let routing = routing(&[]).await;
    let device = "7d444840-9dc0-11d1-b245-5ffdce74fad2";
    let subs = [
        fixtures::subscription("sub-a", "https://a.example/hook", &[STATUS], device, "+818000000001"),
        fixtures::subscription("sub-b", "https://b.example/hook", &[INVITATION], device, "+818000000001"),
        fixtures::subscription(
            "sub-c",
            "https://c.example/hook",
            &[STATUS],
            "00000000-0000-4000-8000-000000000000",
            "+818000000001",
        ),
        fixtures::subscription("sub-d", "https://d.example/hook", &[STATUS], device, "+818000000099"),
    ];
    let event = fixtures::session_status_event("ms-1", device, "+818000000001");
    let deliveries = routing.route(&event, &subs).await.unwrap();
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    let d = &deliveries[0];
    assert_eq!((d.subscription_id.as_str(), d.sink.as_str()), ("sub-a", "https://a.example/hook"));
    assert_eq!(d.content_type, "application/cloudevents+json");
    assert_eq!(d.payload, None, "the host builds what is sent");
    let body: serde_json::Value = serde_json::from_str(&d.body(&event)).unwrap();
    assert_eq!(body["data"]["subscriptionId"], "sub-a");
    assert_eq!(body["data"]["mediaSessionId"], "ms-1");
    assert_eq!(body["specversion"], "1.0");
    assert_eq!(body["type"], STATUS);
}

fn failure(attempt: u32, kind: FailureKind, status_code: Option<u16>) -> DeliveryFailure {
    DeliveryFailure {
        subscription_id: "sub-a".into(),
        sink: "https://a.example".into(),
        attempt,
        kind,
        status_code,
        retry_after_ms: None,
        next_attempt_ms: Some(1000),
    }
}

#[tokio::test]
async fn retries_follow_the_host_schedule_unless_max_attempts_is_set() {
    assert!(routing(&[]).await.decides_retries(), "a 0.2.0 plugin is asked");
    let unlimited = routing(&[]).await;
    let decision = unlimited.on_delivery_failure(&failure(40, FailureKind::Timeout, None)).await.unwrap();
    assert_eq!(decision, RetryDecision::AsScheduled);
    let limited = routing(&[("max-attempts", "4")]).await;
    let decide = async |f: DeliveryFailure| limited.on_delivery_failure(&f).await.unwrap();
    assert_eq!(decide(failure(3, FailureKind::HttpStatus, Some(503))).await, RetryDecision::AsScheduled);
    assert!(matches!(decide(failure(4, FailureKind::Connection, None)).await, RetryDecision::GiveUp(_)));
    let refused = Harness::new().unwrap();
    let wasm = build_component(env!("CARGO_MANIFEST_DIR")).unwrap();
    let error = refused.routing(&wasm, &[("initial-backoff-ms", "100")]).await.err().expect("unknown key refused");
    assert!(error.to_string().contains("unknown configuration key"), "{error}");
}
