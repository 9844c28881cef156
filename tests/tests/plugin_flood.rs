//! One plugin with a bug cannot starve the others: 2,000 requests at a time run into an
//! api-mapping plugin that loops on one input, for seconds, while other API traffic and event
//! delivery go on through the authorization and routing plugins. No request of the other
//! traffic fails, every event arrives, and the flood's answers are CAMARA errors: 504 for a call
//! stopped at its deadline, 503 with Retry-After once the plugin's share is taken or its circuit
//! breaker is open, 429 with Retry-After beyond the requests one client may have in progress
//! (without that limit the flood's own requests fill the authorization plugin's queue, and the
//! other clients' requests are refused as overload).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use camara_gateway::config::SipTransportName;
use camara_gateway::notify::GatewayEvent;
use camara_gateway_tests::*;
use serde_json::json;

/// Requests in flight into the looping plugin at any time.
const FLOOD: usize = 2000;
/// `looping-mapping`'s trigger.
const LOOPING_RECEIVER: &str = "tel:+19995550100";
/// `looping-mapping`'s trigger for a call that sleeps for its `stall-ms`.
const STALLING_RECEIVER: &str = "tel:+19995550101";
const MALLORY: &str = "+818000000066";
const EVENTS: u64 = 50;

/// Panics if an error message carries what only the log may see.
fn assert_no_internals(message: &str) {
    for leak in ["panicked at", "backtrace", ".rs:", "plugins/", "src/", "wasm function", "\n"] {
        assert!(!message.contains(leak), "the error body leaks {leak:?}: {message}");
    }
}

/// A gateway whose API mapping is `looping-mapping`, with a 300 ms deadline.
fn looping_mapping_config() -> camara_gateway::config::GatewayConfig {
    init_logs();
    let wasm = plugin_component("plugins/testing/looping-mapping");
    let mut config = gateway_config(None, SipTransportName::Udp);
    config.plugins.api_mapping.wasm = Some(wasm);
    config.plugins.api_mapping.deadline_ms = Some(300);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_through_a_looping_plugin_leaves_other_traffic_and_events_untouched() {
    let mut config = looping_mapping_config();
    // The rate limit is per client and would refuse one client's flood before any plugin ran
    // (its own tests are elsewhere); here the flood has to reach the plugin.
    config.api.rate_limit_per_second = 1_000_000;
    config.api.rate_limit_burst = 1_000_000;
    let gateway = camara_gateway::start(config).await.expect("gateway starts");
    let api = Api::new(gateway.http_addr);
    let alice = tokens::for_subscriber(ALICE);
    let mallory = tokens::for_subscriber(MALLORY);
    assert_eq!(api.register(&alice).await.status, 201);
    let registered = api.register(&mallory).await;
    assert_eq!(registered.status, 201, "{:?}", registered.body);
    let mallory_registration = registered.body["registrationId"].as_str().unwrap().to_string();
    let alice_registration = api
        .call("GET", &format!("/webrtc-registration/v0.3/sessions?deviceId={DEVICE_ID}"), Some(&alice), &[], None)
        .await;
    assert_eq!(alice_registration.status, 200, "{:?}", alice_registration.body);
    let mut sink = Sink::start(vec![]).await;
    let created = api.subscribe(&alice, &sink.url, "sink-token").await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let subscription =
        gateway.gateway.store.backend().subscription(created.body["id"].as_str().unwrap()).await.unwrap().unwrap();
    // Subscriptions made and deleted during the flood end on their own sink.
    let mut other_sink = Sink::start(vec![]).await;

    // The flood: FLOOD tasks, each sending its next looping call once the last is answered,
    // after the Retry-After it was given, as a client library does.
    let stop = Arc::new(AtomicBool::new(false));
    let flood: Vec<_> = (0..FLOOD)
        .map(|_| {
            let (api, token, registration, stop) =
                (api.clone(), mallory.clone(), mallory_registration.clone(), stop.clone());
            tokio::spawn(async move {
                let mut replies = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let reply = api.call_number(&token, &registration, MALLORY, LOOPING_RECEIVER).await;
                    let wait = reply.headers.get("retry-after").and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
                    replies.push((reply.status, wait.is_some(), reply.body));
                    tokio::time::sleep(Duration::from_secs(wait.unwrap_or(0))).await;
                }
                replies
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let flood_started = Instant::now();

    // The other traffic: four clients' worth of reads and subscription changes, and events.
    let publisher = {
        let notifier = gateway.gateway.notifier.clone();
        let subscription = subscription.clone();
        tokio::spawn(async move {
            for n in 1..=EVENTS {
                let event = GatewayEvent {
                    event_type: SESSION_STATUS,
                    data: json!({"mediaSessionId": "session-1", "status": "Connected", "sequenceNumber": n}),
                    media_session_id: Some("session-1".into()),
                    registration_id: None,
                    device_id: Some(DEVICE_ID.into()),
                    phone_number: Some(ALICE.into()),
                };
                notifier.publish(event, std::slice::from_ref(&subscription)).await;
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        })
    };
    let normal: Vec<_> = (0..4)
        .map(|client| {
            let (api, token, sink) = (api.clone(), alice.clone(), other_sink.url.clone());
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for round in 0..10 {
                    let correlator = format!("normal-{client}-{round}");
                    let headers = [("x-correlator", correlator.as_str())];
                    let path = format!("/webrtc-registration/v0.3/sessions?deviceId={DEVICE_ID}");
                    outcomes.push(("list registrations", api.call("GET", &path, Some(&token), &headers, None).await));
                    let created = api.subscribe(&token, &sink, "other-token").await;
                    let id = created.body["id"].as_str().unwrap_or_default().to_string();
                    outcomes.push(("create subscription", created));
                    let path = format!("/webrtc-events/v0.2/subscriptions/{id}");
                    outcomes.push(("read subscription", api.call("GET", &path, Some(&token), &headers, None).await));
                    outcomes
                        .push(("delete subscription", api.call("DELETE", &path, Some(&token), &headers, None).await));
                }
                outcomes
            })
        })
        .collect();
    let mut served = 0;
    for task in normal {
        for (what, reply) in task.await.unwrap() {
            assert!(
                (200..300).contains(&reply.status),
                "{what} failed during the flood: {} {:?}",
                reply.status,
                reply.body
            );
            served += 1;
        }
    }
    publisher.await.unwrap();
    let normal_took = flood_started.elapsed();
    // Keep the flood on a little longer than the other traffic, then stop it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for task in flood {
        for (status, retry_after, body) in task.await.unwrap() {
            *statuses.entry(status).or_default() += 1;
            let message = body["message"].as_str().unwrap_or_default();
            assert_no_internals(message);
            assert_eq!(body["status"].as_u64(), Some(u64::from(status)), "a CAMARA body: {body}");
            match status {
                503 => {
                    assert_eq!(body["code"], "UNAVAILABLE", "{body}");
                    assert!(retry_after, "503 without Retry-After: {body}");
                }
                504 => assert_eq!(body["code"], "TIMEOUT", "{body}"),
                429 => {
                    assert_eq!(body["code"], "TOO_MANY_REQUESTS", "{body}");
                    assert!(retry_after, "429 without Retry-After: {body}");
                }
                other => panic!("a looping call answered {other}: {body}"),
            }
        }
    }
    let answered: usize = statuses.values().sum();
    eprintln!("flood answers {statuses:?}; {served} other requests served in {normal_took:?}");
    assert!(answered >= FLOOD, "every flood request was answered ({answered})");
    assert!(statuses.get(&504).is_some_and(|n| *n > 0), "some looping calls ran to their deadline: {statuses:?}");
    assert!(statuses.get(&503).is_some_and(|n| *n > 0), "overload was answered 503: {statuses:?}");
    assert_eq!(served, 4 * 10 * 4);

    let mut sequence = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while sequence.len() < EVENTS as usize && Instant::now() < deadline {
        if let Some(event) = sink.try_next(Duration::from_secs(5)).await {
            assert_eq!(event.body["data"]["subscriptionId"], subscription.id.as_str());
            sequence.insert(event.body["data"]["sequenceNumber"].as_u64().unwrap());
        }
    }
    assert_eq!(sequence, (1..=EVENTS).collect::<BTreeSet<_>>(), "every event arrived");
    // Each deleted subscription got its subscription-ended.
    for _ in 0..40 {
        let ended = other_sink.next(Duration::from_secs(30)).await;
        assert_eq!(ended.body["type"], "org.camaraproject.webrtc-events.v0.subscription-ended", "{:?}", ended.body);
    }
    gateway.stop().await;
}

/// A plugin that waits in a host call (here a WASI clock sleep, where no epoch check runs) is
/// stopped at its deadline like one that spins, and gives its place in the plugin's quota back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_sleeping_in_a_host_call_is_stopped_at_its_deadline() {
    let mut config = looping_mapping_config();
    // Far longer than any test waits: an unbounded sleep would hang the request.
    config.plugins.api_mapping.config.insert("stall-ms".into(), "600000".into());
    // One instance and no waiting: a call that kept its place would have the next refused.
    config.plugins.api_mapping.max_concurrent_calls = Some(1);
    config.plugins.api_mapping.max_waiting_calls = Some(0);
    let gateway = camara_gateway::start(config).await.expect("gateway starts");
    let api = Api::new(gateway.http_addr);
    let mallory = tokens::for_subscriber(MALLORY);
    let registered = api.register(&mallory).await;
    assert_eq!(registered.status, 201, "{:?}", registered.body);
    let registration = registered.body["registrationId"].as_str().unwrap().to_string();
    for _ in 0..3 {
        let reply = tokio::time::timeout(
            Duration::from_secs(60),
            api.call_number(&mallory, &registration, MALLORY, STALLING_RECEIVER),
        )
        .await
        .expect("the sleeping call was stopped, not left to sleep");
        assert_eq!(reply.status, 504, "{:?}", reply.body);
        assert_eq!(reply.body["code"], "TIMEOUT", "{:?}", reply.body);
        assert_no_internals(reply.body["message"].as_str().unwrap_or_default());
    }
    gateway.stop().await;
}
