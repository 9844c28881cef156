//! A gateway process killed with SIGKILL at random points, 50 times, while registrations expire,
//! subscriptions are deleted and calls change status, with a sink that fails now and then: every
//! event of an acknowledged change arrives (at least once, one CloudEvents id per event), and every
//! acknowledged write is still there.
//!
//! Each run of the gateway gets the same requests, in order, for a fresh device: a registration
//! that expires after 2 s, a subscription that stays, one that the next run deletes, and a call
//! to a sipp network that answers (ended by DELETE in every other run, else by the expiry of its
//! registration or the next start), and six more registrations that expire in the same sweep,
//! each with a subscriber. Every other run is killed at a random time in that sequence or in the
//! sweeps after it, the others right after the log line of the first registration a sweep ended
//! (where the events were lost before they were committed with the change). A request without an
//! answer before the kill is not counted as acknowledged.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use camara_gateway::config::SipTransportName;
use camara_gateway_tests::*;
use serde_json::{Value, json};

const RUNS: usize = 50;
const REGISTRATION_ENDS: &str = "org.camaraproject.webrtc-events.v0.registration-ends";
const SUBSCRIPTION_ENDED: &str = "org.camaraproject.webrtc-events.v0.subscription-ended";
const SESSION_STATUS: &str = "org.camaraproject.webrtc-events.v0.session-status";
const FINAL: [&str; 3] = ["Terminated", "SessionCancelled", "Failed"];

const REGISTRATIONS: &str = "/webrtc-registration/v0.3/sessions";
const SUBSCRIPTIONS: &str = "/webrtc-events/v0.2/subscriptions";
/// Registrations per run that expire in the same sweep.
const EXPIRING_TOGETHER: usize = 6;

/// 2 s from now: the shortest the test's policy accepts is 1 s.
fn expiry_time() -> String {
    (chrono::Utc::now() + chrono::Duration::milliseconds(2000)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// What the gateway acknowledged with a 2xx.
#[derive(Default, Debug)]
struct Acknowledged {
    /// Subscriptions never deleted.
    kept_subscriptions: Vec<String>,
    /// The subscription the next run deletes.
    to_delete: Option<String>,
    deleted_subscriptions: Vec<String>,
    registrations: Vec<String>,
    sessions: Vec<String>,
}

/// A deterministic pseudo-random sequence (xorshift), so that a failing run can be replayed.
struct Random(u64);

impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The sink script: mostly accepted, with refusals (503) and errors (500) in between.
fn flaky_script(len: usize) -> Vec<u16> {
    (0..len)
        .map(|i| {
            if i % 5 == 1 {
                503
            } else if i % 7 == 3 {
                500
            } else {
                204
            }
        })
        .collect()
}

fn subscription_body(sink: &str, device: &str, types: &[&str]) -> Value {
    json!({
        "protocol": "HTTP",
        "sink": sink,
        "sinkCredential": {
            "credentialType": "ACCESSTOKEN",
            "accessToken": "sink-secret",
            "accessTokenExpiresUtc": "2099-12-31T23:59:59.999Z",
            "accessTokenType": "bearer"
        },
        "types": types,
        "config": {"subscriptionDetail": {"deviceId": device}}
    })
}

/// One run's requests, in order; each 2xx is recorded as soon as it arrives. Stops at the
/// first request the kill leaves without an answer; any other answer than the expected one
/// fails the test.
async fn requests(api: Api, token: String, sink: String, run: usize, ack: Arc<Mutex<Acknowledged>>) {
    // Devices whose registrations expire together, so that a sweep has several to end.
    for _ in 0..EXPIRING_TOGETHER {
        let device = uuid::Uuid::new_v4().to_string();
        let body = json!({"deviceId": device, "registrationExpireTime": expiry_time()});
        let Some(registration) = api.try_request("POST", REGISTRATIONS, Some(&token), &[], Some(body)).await else {
            return;
        };
        assert_eq!(registration.status, 201, "run {run}: {:?}", registration.body);
        let body = subscription_body(&sink, &device, &[REGISTRATION_ENDS]);
        let Some(subscribed) = api.try_request("POST", SUBSCRIPTIONS, Some(&token), &[], Some(body)).await else {
            return;
        };
        assert_eq!(subscribed.status, 201, "run {run}: {:?}", subscribed.body);
        let mut ack = ack.lock().unwrap();
        ack.kept_subscriptions.push(subscribed.body["id"].as_str().unwrap().to_string());
        ack.registrations.push(registration.body["registrationId"].as_str().unwrap().to_string());
    }
    let device = uuid::Uuid::new_v4().to_string();
    let subscriptions = SUBSCRIPTIONS;
    let send = |method: &'static str, path: String, body: Option<Value>| {
        let (api, token) = (&api, &token);
        async move { api.try_request(method, &path, Some(token), &[], body).await }
    };
    let answered = |reply: &Reply, expected: u16| {
        assert_eq!(reply.status, expected, "run {run}: {:?}", reply.body);
    };
    let id = |reply: &Reply, field: &str| reply.body[field].as_str().unwrap_or_default().to_string();

    let body = json!({"deviceId": device, "registrationExpireTime": expiry_time()});
    let Some(registration) = send("POST", REGISTRATIONS.into(), Some(body)).await else {
        return;
    };
    answered(&registration, 201);
    let registration_id = id(&registration, "registrationId");

    let body = subscription_body(&sink, &device, &[SESSION_STATUS, REGISTRATION_ENDS]);
    let Some(kept) = send("POST", subscriptions.into(), Some(body)).await else { return };
    answered(&kept, 201);
    ack.lock().unwrap().kept_subscriptions.push(id(&kept, "id"));
    // Its end has a subscriber now.
    ack.lock().unwrap().registrations.push(registration_id.clone());

    let body = subscription_body(&sink, &device, &[REGISTRATION_ENDS]);
    let Some(doomed) = send("POST", subscriptions.into(), Some(body)).await else { return };
    answered(&doomed, 201);
    let previous = ack.lock().unwrap().to_delete.replace(id(&doomed, "id"));
    if let Some(previous) = previous {
        let Some(deleted) = send("DELETE", format!("{subscriptions}/{previous}"), None).await else { return };
        answered(&deleted, 202);
        ack.lock().unwrap().deleted_subscriptions.push(previous);
    }

    let body = json!({
        "originatorAddress": format!("tel:{ALICE}"),
        "receiverAddress": format!("tel:{BOB}"),
        "offer": {"sdp": WEBRTC_OFFER}
    });
    let headers = [("registrationId", registration_id.as_str())];
    let Some(session) =
        api.try_request("POST", "/webrtc-call-handling/v0.3/sessions", Some(&token), &headers, Some(body)).await
    else {
        return;
    };
    answered(&session, 201);
    let session_id = id(&session, "mediaSessionId");
    ack.lock().unwrap().sessions.push(session_id.clone());
    if run.is_multiple_of(2) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let path = format!("/webrtc-call-handling/v0.3/sessions/{session_id}");
        let Some(deleted) = send("DELETE", path, None).await else { return };
        answered(&deleted, 204);
    }
}

/// The CloudEvents ids received per (type, subject).
type Received = BTreeMap<(String, String), BTreeSet<String>>;

fn record(received: &mut Received, event: &Value) {
    let data = &event["data"];
    let subject = match event["type"].as_str().unwrap_or_default() {
        REGISTRATION_ENDS => data["registrationId"].clone(),
        SUBSCRIPTION_ENDED => data["subscriptionId"].clone(),
        // Ended by DELETE (Terminated, or SessionCancelled before the answer), by the expiry of
        // its registration or by the next start.
        SESSION_STATUS if FINAL.contains(&data["status"].as_str().unwrap_or_default()) => {
            data["mediaSessionId"].clone()
        }
        _ => return,
    };
    let key = (event["type"].as_str().unwrap().to_string(), subject.as_str().unwrap_or_default().to_string());
    received.entry(key).or_default().insert(event["id"].as_str().unwrap_or_default().to_string());
}

/// The events the acknowledged changes must have caused.
fn expected(ack: &Acknowledged) -> Vec<(String, String)> {
    let of = |ty: &str, ids: &[String]| ids.iter().map(|id| (ty.to_string(), id.clone())).collect::<Vec<_>>();
    [
        of(REGISTRATION_ENDS, &ack.registrations),
        of(SUBSCRIPTION_ENDED, &ack.deleted_subscriptions),
        of(SESSION_STATUS, &ack.sessions),
    ]
    .concat()
}

/// The gateway as a process, with its log lines (info level) on a channel.
fn start_logged(config: &std::path::Path) -> (tokio::process::Child, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(gateway_binary())
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("gateway starts");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_random_points_the_gateway_loses_no_event_and_no_acknowledged_write() {
    init_logs();
    if !sipp_available() {
        eprintln!("sipp is not installed (apt-get install sip-tester): skipped");
        return;
    }
    // Answers every call and waits for its BYE, for the whole test.
    let sipp = Sipp::uas_with(
        "uas_answer_until_bye.xml",
        SipTransportName::Udp,
        free_port(),
        &["-m", "100000", "-timeout", "1800s"],
    )
    .await;
    let dir = TempDir::new("crash-loop");
    let http_port = free_port();
    let sip_extra = format!("next_hop = \"{}\"\nnext_hop_transport = \"udp\"", sipp.addr);
    let extra = r#"
[api]
rate_limit_per_second = 1000
rate_limit_burst = 1000
[registration]
min_ttl_seconds = 1
"#;
    let config = write_process_config(&dir, http_port, free_port(), &sip_extra, extra);
    // Retries soon after a refusal, so that the test does not wait for the default schedule.
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "allow_http_loopback_sinks = true",
        "allow_http_loopback_sinks = true\nretry_first_delay_ms = 100\nretry_max_delay_ms = 500",
    );
    std::fs::write(&config, text).unwrap();
    let mut sink = Sink::start(flaky_script(100_000)).await;
    let api = Api::new(format!("127.0.0.1:{http_port}").parse().unwrap());
    let token = tokens::for_subscriber(ALICE);
    let ack = Arc::new(Mutex::new(Acknowledged::default()));
    let mut received = Received::new();
    let mut random = Random(0x5eed_c0ffee);

    for run in 0..RUNS {
        let (mut gateway, mut log) = start_logged(&config);
        wait_for_http(&api).await;
        let work = tokio::spawn(requests(api.clone(), token.clone(), sink.url.clone(), run, ack.clone()));
        if run.is_multiple_of(2) {
            // Somewhere in the requests or in the sweeps after them.
            tokio::time::sleep(Duration::from_millis(random.below(3000))).await;
        } else {
            // Right after a sweep has ended a registration, while it ends the others.
            let swept = tokio::time::timeout(Duration::from_secs(6), async {
                while let Some(line) = log.recv().await {
                    if line.contains("registration expired") {
                        return;
                    }
                }
            });
            let _ = swept.await;
        }
        gateway.kill().await.unwrap();
        // A wrong answer before the kill fails the test here.
        tokio::time::timeout(Duration::from_secs(10), work).await.expect("requests end").unwrap();
        while let Some(event) = sink.try_next(Duration::ZERO).await {
            record(&mut received, &event.body);
        }
    }

    // A last start: what the killed runs left is ended and delivered.
    let (_gateway, _log) = start_logged(&config);
    wait_for_http(&api).await;
    let ack = std::mem::take(&mut *ack.lock().unwrap());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let missing = loop {
        let missing: Vec<_> = expected(&ack).into_iter().filter(|key| !received.contains_key(key)).collect();
        if missing.is_empty() || tokio::time::Instant::now() > deadline {
            break missing;
        }
        if let Some(event) = sink.try_next(Duration::from_millis(500)).await {
            record(&mut received, &event.body);
        }
    };
    assert!(missing.is_empty(), "events never delivered: {missing:?}\nacknowledged: {ack:?}");
    assert!(ack.registrations.len() >= RUNS / 3 && ack.sessions.len() >= RUNS / 4, "too few writes made it: {ack:?}");
    for key in expected(&ack) {
        assert_eq!(received[&key].len(), 1, "{key:?} was delivered as different events: {:?}", received[&key]);
    }

    // The acknowledged writes are there: kept subscriptions readable, deleted ones gone (each
    // read by id: the list is capped at the CAMARA file's `maxItems`); every acknowledged
    // session readable, and ended.
    let status_of = |path: String| {
        let (api, token) = (&api, &token);
        async move { api.call("GET", &path, Some(token), &[], None).await.status }
    };
    for kept in &ack.kept_subscriptions {
        assert_eq!(status_of(format!("{SUBSCRIPTIONS}/{kept}")).await, 200, "acknowledged subscription {kept} lost");
    }
    for deleted in &ack.deleted_subscriptions {
        assert_eq!(
            status_of(format!("{SUBSCRIPTIONS}/{deleted}")).await,
            404,
            "deleted subscription {deleted} is back"
        );
    }
    for session in &ack.sessions {
        let read =
            api.call("GET", &format!("/webrtc-call-handling/v0.3/sessions/{session}"), Some(&token), &[], None).await;
        assert_eq!(read.status, 200, "acknowledged session {session} lost: {:?}", read.body);
        let status = read.body["status"].as_str().unwrap_or_default();
        assert!(FINAL.contains(&status), "session {session} reads {status}");
    }
}
