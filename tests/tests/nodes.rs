//! Three gateway nodes as processes on one real `redis-server`: every node serves every API
//! request, a request on a call goes to the node that holds it, and when a node is killed
//! (`kill -9`) a survivor delivers its queued events, ends its call with BYE and `Terminated`,
//! while the calls of the other nodes stay up and new calls work.

use std::path::PathBuf;
use std::time::Duration;

use camara_gateway_tests::*;
use serde_json::Value;

/// How long a node may be silent before the others take over.
const LEASE_MS: u64 = 1500;

const SESSIONS: &str = "/webrtc-call-handling/v0.3/sessions";

struct Node {
    api: Api,
    process: tokio::process::Child,
}

/// Node `id` on `redis`, its network the sipp at `sipp`.
fn node(dir: &TempDir, id: &str, redis: &RedisServer, sipp: std::net::SocketAddr) -> (PathBuf, Api) {
    let http_port = free_port();
    let sip_extra = format!("next_hop = \"{sipp}\"\nnext_hop_transport = \"udp\"");
    let extra = format!(
        r#"backend = "redis"
url = "{url}"
key_prefix = "nodes-test"
node_id = "{id}"
node_lease_ms = {LEASE_MS}
[media]
device_failure_grace_seconds = 600
media_timeout_seconds = 600
"#,
        url = redis.url,
    );
    let node_dir = TempDir::new(&format!("node-{id}"));
    let config = write_process_config(&node_dir, http_port, free_port(), &sip_extra, &extra);
    // Quick retries, so that the test does not wait for the production schedule.
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "allow_http_loopback_sinks = true",
        "allow_http_loopback_sinks = true\nretry_first_delay_ms = 200\nretry_max_delay_ms = 1000",
    );
    let kept = dir.0.join(format!("{id}.toml"));
    std::fs::write(&kept, text).unwrap();
    (kept, Api::new(format!("127.0.0.1:{http_port}").parse().unwrap()))
}

async fn start(config: &std::path::Path, api: Api) -> Node {
    let process = start_gateway_process(config);
    wait_for_http(&api).await;
    Node { api, process }
}

/// `GET` of `path` through `api`, as the test subscriber.
async fn read(api: &Api, token: &str, path: &str) -> Reply {
    api.call("GET", path, Some(token), &[], None).await
}

/// Waits until the session at `path` reads `status` through `api`.
async fn wait_status(api: &Api, token: &str, path: &str, status: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let session = read(api, token, path).await;
        if session.body["status"] == status {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{path} never {status}: {:?}", session.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A call from the test subscriber through `api`; the session's path.
async fn call(api: &Api, token: &str, registration_id: &str) -> String {
    let session = api.call_number(token, registration_id, ALICE, &format!("tel:{BOB}")).await;
    assert_eq!(session.status, 201, "{:?}", session.body);
    format!("{SESSIONS}/{}", session.body["mediaSessionId"].as_str().unwrap())
}

fn session_id(path: &str) -> &str {
    path.rsplit('/').next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_is_taken_over_and_the_others_keep_their_calls() {
    init_logs();
    if !sipp_available() {
        eprintln!("sipp is not installed (apt-get install sip-tester): skipped");
        return;
    }
    let Some(redis) = RedisServer::start().await else { return };
    // Answers every call and waits for its BYE.
    let sipp = Sipp::uas_with(
        "uas_answer_until_bye.xml",
        SipTransportName::Udp,
        free_port(),
        &["-m", "3", "-timeout", "120s"],
    )
    .await;
    let dir = TempDir::new("nodes");
    let (config_a, api_a) = node(&dir, "a", &redis, sipp.addr);
    let (config_b, api_b) = node(&dir, "b", &redis, sipp.addr);
    let (config_c, api_c) = node(&dir, "c", &redis, sipp.addr);
    let (mut a, b, c) =
        tokio::join!(start(&config_a, api_a.clone()), start(&config_b, api_b.clone()), start(&config_c, api_c.clone()));
    let token = tokens::for_subscriber(ALICE);

    // Written through one node, read through the others.
    let registration = a.api.register(&token).await;
    assert_eq!(registration.status, 201, "{:?}", registration.body);
    let registration_id = registration.body["registrationId"].as_str().unwrap().to_string();
    let registration_path = format!("/webrtc-registration/v0.3/sessions/{registration_id}");
    for api in [&b.api, &c.api] {
        assert_eq!(read(api, &token, &registration_path).await.status, 200);
    }
    // The sink is down until node a is dead: every node's events wait in its outbox.
    let sink_port = free_port();
    let sink_url = format!("http://127.0.0.1:{sink_port}/webhooks/webrtc");
    let subscription = b.api.subscribe(&token, &sink_url, "sink-secret").await;
    assert_eq!(subscription.status, 201, "{:?}", subscription.body);
    let subscription_path = format!("/webrtc-events/v0.2/subscriptions/{}", subscription.body["id"].as_str().unwrap());
    assert_eq!(read(&c.api, &token, &subscription_path).await.status, 200);

    // A call on a, one on c, both connected (read through b).
    let on_a = call(&a.api, &token, &registration_id).await;
    let on_c = call(&c.api, &token, &registration_id).await;
    wait_status(&b.api, &token, &on_a, "Connected").await;
    wait_status(&b.api, &token, &on_c, "Connected").await;

    a.process.kill().await.unwrap();
    let mut sink = Sink::start_at(sink_port, vec![]).await;
    // What a had queued (its call's status events), then its call's end, from a survivor.
    let mut events_of_a: Vec<Value> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !events_of_a.iter().any(|e| e["data"]["status"] == "Terminated") {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let event = sink.try_next(left).await.unwrap_or_else(|| panic!("no Terminated for {on_a}: {events_of_a:?}"));
        if event.body["data"]["mediaSessionId"] == session_id(&on_a) {
            events_of_a.push(event.body);
        }
    }
    assert!(
        events_of_a.iter().any(|e| e["data"]["status"] == "Connected"),
        "the Connected event a queued before it died is delivered: {events_of_a:?}"
    );
    let ended = events_of_a.iter().find(|e| e["data"]["status"] == "Terminated").unwrap();
    assert_eq!(ended["data"]["reason"], "The gateway node holding the call stopped");
    wait_status(&c.api, &token, &on_a, "Terminated").await;

    // c's call is up; a DELETE through b reaches c, which hangs it up.
    assert_eq!(read(&b.api, &token, &on_c).await.body["status"], "Connected");
    let deleted = b.api.call("DELETE", &on_c, Some(&token), &[], None).await;
    assert_eq!(deleted.status, 204, "{:?}", deleted.body);
    wait_status(&b.api, &token, &on_c, "Terminated").await;

    // A new call through a survivor works, and the state written through a is all there.
    let after = call(&b.api, &token, &registration_id).await;
    wait_status(&c.api, &token, &after, "Connected").await;
    assert_eq!(b.api.call("DELETE", &after, Some(&token), &[], None).await.status, 204);
    assert_eq!(read(&c.api, &token, &registration_path).await.status, 200);
    assert_eq!(read(&b.api, &token, &subscription_path).await.status, 200);

    let (code, messages, errors) = sipp.finish(Duration::from_secs(20)).await;
    assert_eq!(code, 0, "sipp: {errors}\n{messages}");
    let byes = received_start_lines(&messages).iter().filter(|l| l.starts_with("BYE ")).count();
    assert_eq!(byes, 3, "a BYE for each call, the dead node's from a survivor:\n{messages}");
    drop((b, c));
}
