//! The delivery schedule and the dead letters, against real HTTP sinks: a sink that is down gets
//! every event once it is back, a sink's Retry-After is honoured, and an event past the horizon
//! waits in the dead letters until an operator replays or purges it (and its subscription ends). The schedule is shortened
//! by configuration; `camara_gateway::schedule` runs the default one on simulated time.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use camara_gateway::config::SipTransportName;
use camara_gateway::notify::GatewayEvent;
use camara_gateway_tests::*;
use serde_json::{Value, json};
use tokio::sync::mpsc;

const ADMIN_TOKEN: &str = "admin-secret-for-tests";
const DEAD_LETTERS: &str = "/admin/dead-letters";

/// What the sink answers: a status and an optional Retry-After.
type Answer = (u16, Option<String>);

/// An HTTP sink whose answer the test changes as it goes; it records when each POST came.
struct ControlledSink {
    url: String,
    answer: Arc<Mutex<Answer>>,
    received: mpsc::UnboundedReceiver<(Instant, Value)>,
}

impl ControlledSink {
    async fn start(answer: Answer) -> ControlledSink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, answer)
    }

    /// A sink on `addr`, which nothing listened on so far.
    async fn start_on(addr: SocketAddr, answer: Answer) -> ControlledSink {
        Self::serve(tokio::net::TcpListener::bind(addr).await.unwrap(), answer)
    }

    fn serve(listener: tokio::net::TcpListener, answer: Answer) -> ControlledSink {
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let answer = Arc::new(Mutex::new(answer));
        let (tx, received) = mpsc::unbounded_channel();
        let current = answer.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: axum::body::Bytes| {
                let (tx, current) = (tx.clone(), current.clone());
                async move {
                    // The answer is read before the test hears of the request, so that a change
                    // it makes then applies to the next request only.
                    let (status, retry_after) = current.lock().unwrap().clone();
                    let _ = tx.send((Instant::now(), serde_json::from_slice(&body).unwrap_or(Value::Null)));
                    let mut headers = HeaderMap::new();
                    if let Some(r) = retry_after {
                        headers.insert("retry-after", r.parse().unwrap());
                    }
                    (StatusCode::from_u16(status).unwrap(), headers).into_response()
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        ControlledSink { url, answer, received }
    }

    fn answer(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    async fn next(&mut self, timeout: Duration) -> (Instant, Value) {
        tokio::time::timeout(timeout, self.received.recv()).await.expect("sink received nothing in time").unwrap()
    }

    async fn quiet_for(&mut self, wait: Duration) -> bool {
        tokio::time::timeout(wait, self.received.recv()).await.is_err()
    }
}

/// A gateway whose schedule starts at 50 ms and steps up to `max_delay_ms`, for `horizon_s`.
async fn gateway(max_delay_ms: u64, horizon_s: u64) -> camara_gateway::RunningGateway {
    gateway_with_routing(max_delay_ms, horizon_s, &[]).await
}

/// `routing`: the default routing plugin's configuration.
async fn gateway_with_routing(
    max_delay_ms: u64,
    horizon_s: u64,
    routing: &[(&str, &str)],
) -> camara_gateway::RunningGateway {
    init_logs();
    let mut config = gateway_config(None, SipTransportName::Udp);
    for (k, v) in routing {
        config.plugins.notification_routing.config.insert(k.to_string(), v.to_string());
    }
    config.notifications.retry_first_delay_ms = 50;
    config.notifications.retry_max_delay_ms = max_delay_ms;
    config.notifications.retry_horizon_seconds = horizon_s;
    config.admin.bearer_token = Some(ADMIN_TOKEN.into());
    camara_gateway::start(config).await.expect("gateway starts")
}

/// Subscribes Alice's device to `sink` and returns the stored subscription.
async fn subscribed(gw: &camara_gateway::RunningGateway, sink: &str) -> camara_gateway::store::Subscription {
    let api = Api::new(gw.http_addr);
    let alice = tokens::for_subscriber(ALICE);
    assert_eq!(api.register(&alice).await.status, 201);
    let created = api.subscribe(&alice, sink, "sink-token").await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let id = created.body["id"].as_str().unwrap();
    gw.gateway.store.backend().subscription(id).await.unwrap().unwrap()
}

/// A session-status event numbered `n`, for Alice's device.
fn status_event(n: u32) -> GatewayEvent {
    GatewayEvent {
        event_type: SESSION_STATUS,
        data: json!({"mediaSessionId": format!("session-{n}"), "status": "Connected", "sequenceNumber": n}),
        media_session_id: Some(format!("session-{n}")),
        registration_id: None,
        device_id: Some(DEVICE_ID.into()),
        phone_number: Some(ALICE.into()),
    }
}

async fn admin(api: &Api, method: &str, path: &str) -> Reply {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    api.call(method, path, None, &[("authorization", auth.as_str()), ("x-correlator", "admin-1")], None).await
}

/// Polls the dead letters until there are `count`.
async fn dead_letters(api: &Api, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let listed = admin(api, "GET", DEAD_LETTERS).await;
        assert_eq!(listed.status, 200, "{:?}", listed.body);
        let letters = listed.body.as_array().unwrap().clone();
        if letters.len() == count || Instant::now() > deadline {
            assert_eq!(letters.len(), count, "{letters:?}");
            return letters;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_is_down_receives_every_event_once_back() {
    let gw = gateway(300, 24 * 3600).await;
    // Nothing listens there yet: every attempt is refused.
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let subscription = subscribed(&gw, &format!("http://{addr}/hook")).await;
    for n in 1..=5 {
        gw.gateway.notifier.publish(status_event(n), std::slice::from_ref(&subscription)).await;
    }
    // Down for 3 s: some fifteen attempts, well past the six the routing plugin used to allow.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pending = gw.gateway.store.backend().pending_notifications(10).await.unwrap();
    assert_eq!(pending.len(), 5, "all five wait in the outbox");
    assert!(pending[0].attempt > 6, "the first was tried {} times", pending[0].attempt);

    let mut sink = ControlledSink::start_on(addr, (204, None)).await;
    for n in 1..=5 {
        let (_, event) = sink.next(Duration::from_secs(5)).await;
        assert_eq!(event["data"]["sequenceNumber"], n, "in order: {event}");
        assert_eq!(event["data"]["subscriptionId"], subscription.id.as_str());
    }
    assert!(sink.quiet_for(Duration::from_millis(800)).await, "each event arrives once");
    assert_eq!(gw.gateway.store.backend().pending_notifications(10).await.unwrap(), vec![]);
    assert!(gw.gateway.store.backend().dead_letters(10).await.unwrap().is_empty());
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_on_429_is_honoured() {
    let gw = gateway(300, 24 * 3600).await;
    let mut sink = ControlledSink::start((429, Some("5".into()))).await;
    let subscription = subscribed(&gw, &sink.url).await;
    gw.gateway.notifier.publish(status_event(1), std::slice::from_ref(&subscription)).await;
    let (first, _) = sink.next(Duration::from_secs(5)).await;
    sink.answer((204, None));
    let (second, event) = sink.next(Duration::from_secs(15)).await;
    assert!(second - first >= Duration::from_secs(5), "retried after {:?}", second - first);
    assert_eq!(event["data"]["sequenceNumber"], 1);
    assert!(sink.quiet_for(Duration::from_millis(500)).await);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_past_the_horizon_is_dead_lettered_and_delivered_by_a_replay() {
    let gw = gateway(200, 2).await;
    let api = Api::new(gw.http_addr);
    let mut sink = ControlledSink::start((503, None)).await;
    let subscription = subscribed(&gw, &sink.url).await;
    gw.gateway.notifier.publish(status_event(7), std::slice::from_ref(&subscription)).await;
    let (_, original) = sink.next(Duration::from_secs(5)).await;

    let letters = dead_letters(&api, 1).await;
    let dead = &letters[0];
    assert_eq!(dead["kind"], "notification");
    assert_eq!(dead["subscriptionId"], subscription.id.as_str());
    assert_eq!(dead["lastError"], "sink answered 503");
    assert!(dead["attempts"].as_u64().unwrap() > 3, "{dead}");
    assert_eq!(dead["payload"]["id"], original["id"]);
    assert!(!dead.to_string().contains("sink-token"), "the sink credential is not listed: {dead}");
    // The sink failed for the whole horizon: the subscription ends, and its subscription-ended
    // (NETWORK_TERMINATED) is tried on the same schedule, then dead-lettered too.
    let ended = loop {
        let (_, event) = sink.next(Duration::from_secs(5)).await;
        if event["type"] == "org.camaraproject.webrtc-events.v0.subscription-ended" {
            break event;
        }
    };
    assert_eq!(ended["data"]["subscriptionId"], subscription.id.as_str());
    assert_eq!(ended["data"]["terminationReason"], "NETWORK_TERMINATED");
    assert_eq!(gw.gateway.store.backend().subscription(&subscription.id).await.unwrap(), None, "ended");
    let letters = dead_letters(&api, 2).await;
    assert_eq!(letters[1]["payload"]["id"], ended["id"]);
    assert!(gw.gateway.store.backend().pending_notifications(10).await.unwrap().is_empty());
    while !sink.quiet_for(Duration::from_millis(500)).await {}

    // The admin API is the operator's: no token, a wrong one, or a subscriber's, is refused.
    for auth in [None, Some("Bearer wrong".to_string()), Some(format!("Bearer {}", tokens::for_subscriber(ALICE)))] {
        let mut headers = vec![("x-correlator", "admin-2")];
        if let Some(auth) = &auth {
            headers.push(("authorization", auth.as_str()));
        }
        let refused = api.call("GET", DEAD_LETTERS, None, &headers, None).await;
        assert_eq!((refused.status, refused.body["code"].as_str()), (401, Some("UNAUTHENTICATED")), "{auth:?}");
        assert_eq!(refused.body["status"], 401);
        assert_eq!(refused.headers["x-correlator"], "admin-2");
    }

    sink.answer((204, None));
    let id = dead["id"].as_u64().unwrap();
    let replayed = admin(&api, "POST", &format!("{DEAD_LETTERS}/{id}/replay")).await;
    assert_eq!(replayed.status, 202, "{:?}", replayed.body);
    assert_eq!(replayed.headers["x-correlator"], "admin-1");
    let (_, delivered) = sink.next(Duration::from_secs(5)).await;
    assert_eq!(delivered, original, "the same CloudEvent");
    dead_letters(&api, 1).await;
    assert_eq!(admin(&api, "DELETE", DEAD_LETTERS).await.body["purged"], 1);
    assert_eq!(admin(&api, "POST", &format!("{DEAD_LETTERS}/{id}/replay")).await.status, 404);

    // A 404 is not retried: straight to the dead letters, and purged from there.
    sink.answer((404, None));
    gw.gateway.notifier.publish(status_event(8), std::slice::from_ref(&subscription)).await;
    sink.next(Duration::from_secs(5)).await;
    let letters = dead_letters(&api, 1).await;
    assert_eq!(
        (letters[0]["lastError"].as_str(), letters[0]["attempts"].as_u64()),
        (Some("sink answered 404"), Some(1))
    );
    assert!(sink.quiet_for(Duration::from_millis(500)).await, "not retried");
    let id = letters[0]["id"].as_u64().unwrap();
    assert_eq!(admin(&api, "DELETE", &format!("{DEAD_LETTERS}/{id}")).await.status, 204);
    dead_letters(&api, 0).await;
    let gone = admin(&api, "DELETE", &format!("{DEAD_LETTERS}/{id}")).await;
    assert_eq!((gone.status, gone.body["code"].as_str()), (404, Some("NOT_FOUND")));
    gw.stop().await;
}

/// The routing plugin (WIT 0.2.0) is told of each failure the schedule would retry, with the
/// status and the sink's Retry-After, and may give up: the event goes to the dead letters at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routing_plugin_that_gives_up_dead_letters_the_event_at_once() {
    let gw = gateway_with_routing(300, 24 * 3600, &[("max-attempts", "3")]).await;
    let api = Api::new(gw.http_addr);
    let mut sink = ControlledSink::start((503, Some("1".into()))).await;
    let subscription = subscribed(&gw, &sink.url).await;
    gw.gateway.notifier.publish(status_event(3), std::slice::from_ref(&subscription)).await;
    let mut times = Vec::new();
    for _ in 0..3 {
        times.push(sink.next(Duration::from_secs(10)).await.0);
    }
    // Retry-After 1 s is still honoured between the attempts the plugin allows.
    assert!(times.windows(2).all(|w| w[1] - w[0] >= Duration::from_secs(1)), "{times:?}");
    let letters = dead_letters(&api, 1).await;
    assert_eq!(letters[0]["attempts"], 3, "{:?}", letters[0]);
    let error = letters[0]["lastError"].as_str().unwrap();
    assert_eq!(error, "sink answered 503; routing gave up: gave up after 3 attempts (max-attempts)");
    assert!(sink.quiet_for(Duration::from_millis(1500)).await, "not tried again");
    gw.stop().await;
}
