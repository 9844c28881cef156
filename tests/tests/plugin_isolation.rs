//! A faulty plugin fails only its own request: a loop is stopped at its deadline, a trap and a
//! memory blow-up end the call, each with a CAMARA error body naming the plugin and the kind of
//! failure (never a backtrace or the guest's source paths), while other requests are served. A
//! plugin over its share of the instance pool answers 503 with Retry-After, and leaves the other
//! plugins their instances. A plugin that keeps failing is short-circuited (503 at once) for a
//! cool-down, then probed.

use std::time::{Duration, Instant};

use camara_gateway::config::SipTransportName;
use camara_gateway_tests::*;
use serde_json::json;

async fn gateway_with_faulty_policy() -> camara_gateway::RunningGateway {
    gateway_with_faulty_policy_and_pool(None, None).await
}

/// A deadline long enough for looping calls to hold a small pool while the test looks at it,
/// however slow the machine.
const HOLDING_DEADLINE_MS: u64 = 2000;

/// `pool`: the number of plugin calls that may run at once, when not the default; the plugin's
/// deadline is then [`HOLDING_DEADLINE_MS`]. `share`: the faulty plugin's share of the pool, when
/// not the default third.
async fn gateway_with_faulty_policy_and_pool(pool: Option<u32>, share: Option<u32>) -> camara_gateway::RunningGateway {
    gateway_with_faulty_policy_configured(|config| {
        if let Some(pool) = pool {
            config.plugins.runtime.max_concurrent_calls = pool;
            config.plugins.authorization.deadline_ms = Some(HOLDING_DEADLINE_MS);
        }
        config.plugins.authorization.max_concurrent_calls = share;
        // These tests are about one faulty call among healthy ones through the same plugin,
        // which a tripped breaker would refuse too (its own test is below).
        config.plugins.authorization.breaker_failures = Some(0);
    })
    .await
}

async fn gateway_with_faulty_policy_configured(
    configure: impl FnOnce(&mut camara_gateway::config::GatewayConfig),
) -> camara_gateway::RunningGateway {
    init_logs();
    let wasm = plugin_component("plugins/testing/faulty-policy");
    let mut config = gateway_config(None, SipTransportName::Udp);
    config.plugins.authorization.wasm = Some(wasm);
    config.plugins.authorization.deadline_ms = Some(300);
    config.plugins.authorization.memory_limit_mib = Some(8);
    configure(&mut config);
    camara_gateway::start(config).await.expect("gateway starts")
}

/// Starts `count` looping requests, which hold the instances they get until their deadline, and
/// returns once they do.
async fn flood(gateway: &camara_gateway::RunningGateway, count: u32) -> Vec<tokio::task::JoinHandle<Reply>> {
    let looping = token_with_fault(Some("loop"));
    let loops = (0..count)
        .map(|i| {
            let (api, token) = (Api::new(gateway.http_addr), looping.clone());
            tokio::spawn(async move {
                let correlator = format!("loop-{i}");
                let body = Some(json!({"deviceId": DEVICE_ID}));
                let path = "/webrtc-registration/v0.3/sessions";
                api.call("POST", path, Some(&token), &[("x-correlator", correlator.as_str())], body).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(HOLDING_DEADLINE_MS / 4)).await;
    loops
}

/// Panics if an error message carries what only the log may see: a wasm backtrace, a panic
/// location or a source path of the guest.
fn assert_no_internals(message: &str) {
    for leak in ["panicked at", "backtrace", ".rs:", "plugins/", "src/", "wasm function", "stderr", "\n"] {
        assert!(!message.contains(leak), "the error body leaks {leak:?}: {message}");
    }
}

fn token_with_fault(fault: Option<&str>) -> String {
    let mut claims = tokens::claims(ALICE, ALL_SCOPES);
    if let Some(fault) = fault {
        claims["test_fault"] = json!(fault);
    }
    tokens::sign(&claims)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_plugin_is_stopped_at_its_deadline_while_others_are_served() {
    let gateway = gateway_with_faulty_policy().await;
    let api = Api::new(gateway.http_addr);
    let looping = token_with_fault(Some("loop"));
    let healthy = token_with_fault(None);

    let started = Instant::now();
    let stuck = {
        let api = Api::new(gateway.http_addr);
        tokio::spawn(async move {
            let reply = api
                .call(
                    "POST",
                    "/webrtc-registration/v0.3/sessions",
                    Some(&looping),
                    &[("x-correlator", "loop-1")],
                    Some(json!({"deviceId": DEVICE_ID})),
                )
                .await;
            (reply, started.elapsed())
        })
    };
    // While the loop spins, another request goes through the same plugin and succeeds.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let ok = api.register(&healthy).await;
    let ok_at = started.elapsed();
    assert_eq!(ok.status, 201, "{:?}", ok.body);

    let (reply, stuck_at) = stuck.await.unwrap();
    assert_eq!(reply.status, 504, "{:?}", reply.body);
    assert_eq!(reply.body["status"], 504);
    assert_eq!(reply.body["code"], "TIMEOUT");
    let message = reply.body["message"].as_str().unwrap();
    assert_eq!(message, "plugin faulty_policy: deadline exceeded");
    assert_no_internals(message);
    assert_eq!(reply.headers["x-correlator"], "loop-1");
    assert!(ok_at < stuck_at, "the healthy request ({ok_at:?}) waited for the looping one ({stuck_at:?})");
    assert!(stuck_at >= Duration::from_millis(300) && stuck_at < Duration::from_secs(5), "stopped after {stuck_at:?}");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_plugin_fails_its_request_only() {
    let gateway = gateway_with_faulty_policy().await;
    let api = Api::new(gateway.http_addr);
    let reply = api.register(&token_with_fault(Some("trap"))).await;
    assert_eq!(reply.status, 500, "{:?}", reply.body);
    assert_eq!(reply.body["code"], "INTERNAL");
    let message = reply.body["message"].as_str().unwrap();
    assert_eq!(message, "plugin faulty_policy: trapped");
    assert_no_internals(message);
    assert!(!message.contains("deliberate trap"), "the guest's panic message is for the log: {message}");
    assert_eq!(api.register(&token_with_fault(None)).await.status, 201);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_keeps_failing_is_short_circuited_then_probed() {
    let gateway = gateway_with_faulty_policy_configured(|config| {
        config.plugins.authorization.breaker_failures = Some(5);
        config.plugins.authorization.breaker_window_seconds = Some(60);
        config.plugins.authorization.breaker_cool_down_seconds = Some(2);
    })
    .await;
    let api = Api::new(gateway.http_addr);
    for _ in 0..5 {
        assert_eq!(api.register(&token_with_fault(Some("trap"))).await.status, 500);
    }
    // Open: even a healthy request is refused at once, without running the plugin.
    let refused = api.register(&token_with_fault(None)).await;
    assert_eq!((refused.status, refused.body["code"].as_str()), (503, Some("UNAVAILABLE")), "{:?}", refused.body);
    let message = refused.body["message"].as_str().unwrap();
    assert_eq!(message, "plugin faulty_policy: short-circuited after repeated failures");
    let wait: u64 = refused.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    // After the cool-down a healthy call is the probe: it closes the circuit.
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let mut probed = None;
    for _ in 0..20 {
        let reply = api.register(&token_with_fault(None)).await;
        if reply.status != 503 {
            probed = Some(reply);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(probed.expect("the circuit closes after the cool-down").status, 201);
    // Closed again: the plugin decides (the device is registered already).
    assert_eq!(api.register(&token_with_fault(None)).await.status, 409);
    let metrics = api.get_text("/metrics").await.body;
    assert!(metrics.contains("failure=\"short-circuited after repeated failures\""), "counted: {metrics}");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_exceeding_its_memory_fails_its_request_only() {
    let gateway = gateway_with_faulty_policy().await;
    let api = Api::new(gateway.http_addr);
    let reply = api.register(&token_with_fault(Some("memory"))).await;
    assert_eq!(reply.status, 500, "{:?}", reply.body);
    assert_eq!(reply.body["code"], "INTERNAL");
    let message = reply.body["message"].as_str().unwrap();
    assert_eq!(message, "plugin faulty_policy: memory limit exceeded");
    assert_no_internals(message);
    assert_eq!(api.register(&token_with_fault(None)).await.status, 201);
    gateway.stop().await;
}

/// A session-status event for Alice's device.
fn status_event(session: &str) -> camara_gateway::notify::GatewayEvent {
    camara_gateway::notify::GatewayEvent {
        event_type: SESSION_STATUS,
        data: json!({"mediaSessionId": session, "status": "Connected", "sequenceNumber": 1}),
        media_session_id: Some(session.into()),
        registration_id: None,
        device_id: Some(DEVICE_ID.into()),
        phone_number: Some(ALICE.into()),
    }
}

/// A sink, and Alice's subscription to it.
async fn subscribed(gateway: &camara_gateway::RunningGateway) -> (Sink, camara_gateway::store::Subscription) {
    let api = Api::new(gateway.http_addr);
    let healthy = token_with_fault(None);
    let sink = Sink::start(vec![]).await;
    assert_eq!(api.register(&healthy).await.status, 201);
    let created = api.subscribe(&healthy, &sink.url, "sink-token").await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let id = created.body["id"].as_str().unwrap();
    (sink, gateway.gateway.store.backend().subscription(id).await.unwrap().unwrap())
}

/// A pool of 6: each plugin may run 2 calls at once, and 2 more may wait.
const POOL: u32 = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_over_its_share_answers_503_with_retry_after() {
    let gateway = gateway_with_faulty_policy_and_pool(Some(POOL), None).await;
    let api = Api::new(gateway.http_addr);
    // 2 run, 2 wait, 4 are refused at once.
    let loops = flood(&gateway, 8).await;
    let healthy = token_with_fault(None);
    let body = Some(json!({"deviceId": DEVICE_ID}));
    let refused = api
        .call("POST", "/webrtc-registration/v0.3/sessions", Some(&healthy), &[("x-correlator", "while-full")], body)
        .await;
    assert_eq!(refused.status, 503, "{:?}", refused.body);
    assert_eq!((refused.body["status"].as_u64(), refused.body["code"].as_str()), (Some(503), Some("UNAVAILABLE")));
    assert_eq!(refused.body["message"], "plugin faulty_policy: overloaded");
    assert_eq!(refused.headers["retry-after"], "1");
    assert_eq!(refused.headers["x-correlator"], "while-full");

    let mut statuses = Vec::new();
    for l in loops {
        let reply = l.await.unwrap();
        assert_no_internals(reply.body["message"].as_str().unwrap_or_default());
        statuses.push(reply.status);
    }
    // Those that got an instance ran into their deadline; the others were refused.
    assert!(statuses.iter().all(|s| *s == 504 || *s == 503), "{statuses:?}");
    assert!(statuses.contains(&504) && statuses.iter().filter(|s| **s == 503).count() >= 4, "{statuses:?}");
    // Once the loops are stopped the plugin serves again.
    assert_eq!(api.register(&healthy).await.status, 201);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooded_plugin_leaves_the_routing_plugin_its_instances() {
    let gateway = gateway_with_faulty_policy_and_pool(Some(POOL), None).await;
    let (mut sink, subscription) = subscribed(&gateway).await;
    let loops = flood(&gateway, 2 * POOL).await;
    gateway.gateway.notifier.publish(status_event("session-1"), &[subscription]).await;
    assert_eq!(
        gateway.gateway.store.backend().pending_events(10).await.unwrap(),
        vec![],
        "routed at the first attempt"
    );
    let delivered = sink.next(Duration::from_secs(10)).await;
    assert_eq!(delivered.body["data"]["mediaSessionId"], "session-1");
    for l in loops {
        l.await.unwrap();
    }
    gateway.stop().await;
}

/// With shares that add up to more than the pool (the gateway warns), a flooded plugin can take
/// every instance: an event cannot be routed then. It is in the outbox already, and routing is
/// retried like a delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_cannot_be_routed_is_retried_not_dropped() {
    const SMALL_POOL: u32 = 3;
    let gateway = gateway_with_faulty_policy_and_pool(Some(SMALL_POOL), Some(SMALL_POOL)).await;
    let (mut sink, subscription) = subscribed(&gateway).await;
    let loops = flood(&gateway, 2 * SMALL_POOL).await;
    gateway.gateway.notifier.publish(status_event("session-1"), &[subscription]).await;
    let waiting = gateway.gateway.store.backend().pending_events(10).await.unwrap();
    assert_eq!(waiting.len(), 1, "the unroutable event waits in the outbox");
    assert_eq!(waiting[0].attempt, 1);

    for l in loops {
        l.await.unwrap();
    }
    let delivered = sink.next(Duration::from_secs(10)).await;
    assert_eq!(delivered.body["data"]["mediaSessionId"], "session-1");
    assert_eq!(delivered.headers["authorization"], "Bearer sink-token");
    assert!(gateway.gateway.store.backend().pending_events(10).await.unwrap().is_empty());
    gateway.stop().await;
}
