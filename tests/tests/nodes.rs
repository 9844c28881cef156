//! Three gateway nodes as processes on one real `redis-server`, behind Kamailio's `dispatcher`
//! (Debian's packages): every node serves every API request, a request on a call goes to the
//! node that holds it, and when a node is killed (`kill -9`) a survivor delivers its queued
//! events and ends its call with BYE and `Terminated`, while the calls of the other nodes stay
//! up, and new calls work both ways (an incoming one reaches a live node through the
//! dispatcher, which finds the callee's registration in Redis). Rate limits are per node.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use camara_gateway::config::SipTransportName;
use camara_gateway_tests::*;
use serde_json::{Value, json};

/// How long a node may be silent before the others take over.
const LEASE_MS: u64 = 1500;

const SESSIONS: &str = "/webrtc-call-handling/v0.3/sessions";

struct Node {
    api: Api,
    process: tokio::process::Child,
}

/// Node `id` on `redis`, whose SIP next hop is the dispatcher at `dispatcher`: its configuration
/// file, its API and its SIP port.
fn node(dir: &TempDir, id: &str, redis: &RedisServer, dispatcher: SocketAddr) -> (PathBuf, Api, u16) {
    let (http_port, sip_port) = (free_port(), free_port());
    let sip_extra = format!("next_hop = \"{dispatcher}\"\nnext_hop_transport = \"udp\"");
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
    let config = write_process_config(&node_dir, http_port, sip_port, &sip_extra, &extra);
    // Quick retries, so that the test does not wait for the production schedule.
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "allow_http_loopback_sinks = true",
        "allow_http_loopback_sinks = true\nretry_first_delay_ms = 200\nretry_max_delay_ms = 1000",
    );
    let kept = dir.0.join(format!("{id}.toml"));
    std::fs::write(&kept, text).unwrap();
    (kept, Api::new(format!("127.0.0.1:{http_port}").parse().unwrap()), sip_port)
}

/// Kamailio on `port` dispatching to the nodes on `node_ports`, relaying their calls to `uas`.
async fn dispatcher(port: u16, node_ports: &[u16], uas: SocketAddr) -> Kamailio {
    let list = TempDir::new("dispatcher");
    let list_file = list.0.join("dispatcher.list");
    let destinations: String = node_ports.iter().map(|p| format!("1 sip:127.0.0.1:{p} 0 0\n")).collect();
    std::fs::write(&list_file, destinations).unwrap();
    let config = std::fs::read_to_string(repo_root().join("tests/kamailio/dispatcher.cfg"))
        .unwrap()
        .replace("@PORT@", &port.to_string())
        .replace("@LIST@", &list_file.display().to_string())
        .replace("@UAS_ADDR@", &uas.to_string());
    let kamailio = Kamailio::start(port, &config).await;
    // Kamailio read the list at start.
    drop(list);
    kamailio
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
    if !peer_installed("sipp", sipp_available())
        || !peer_installed("kamailio (tests/install-peers.sh)", kamailio_binary().is_some())
        || !peer_installed("the aiortc peer", WebRtcPeer::available())
    {
        return;
    }
    let Some(redis) = RedisServer::start().await else { return };
    // The network: answers every call and waits for its BYE.
    let uas = Sipp::uas_with(
        "tests/kamailio/uas_answer_until_bye.xml",
        SipTransportName::Udp,
        free_port(),
        &["-m", "3", "-timeout", "120s"],
    )
    .await;
    let dir = TempDir::new("nodes");
    let dispatcher_port = free_port();
    let dispatcher_addr = SocketAddr::from(([127, 0, 0, 1], dispatcher_port));
    let (config_a, api_a, sip_a) = node(&dir, "a", &redis, dispatcher_addr);
    let (config_b, api_b, sip_b) = node(&dir, "b", &redis, dispatcher_addr);
    let (config_c, api_c, sip_c) = node(&dir, "c", &redis, dispatcher_addr);
    let kamailio = dispatcher(dispatcher_port, &[sip_a, sip_b, sip_c], uas.addr).await;
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

    // A call on a, one on c, both connected through the dispatcher (read through b).
    let on_a = call(&a.api, &token, &registration_id).await;
    let on_c = call(&c.api, &token, &registration_id).await;
    wait_status(&b.api, &token, &on_a, "Connected").await;
    wait_status(&b.api, &token, &on_c, "Connected").await;

    a.process.kill().await.unwrap();
    // Until a survivor has taken the call over, a request on it cannot be served: 503, with
    // when to ask again (the lease of a dead node runs for 1.5 s, this asks at once).
    let hold = json!({"status": "Hold"});
    let refused = b.api.call("PUT", &format!("{on_a}/status"), Some(&token), &[], Some(hold)).await;
    assert_eq!(refused.status, 503, "{:?}", refused.body);
    assert_eq!(refused.body["code"], "UNAVAILABLE");
    assert_eq!(refused.headers["retry-after"], "2");
    let mut sink = Sink::start_at(sink_port, vec![]).await;
    // What a had queued (its call's status events), then its call's end, from a survivor.
    let mut events_of_a: Vec<Value> = Vec::new();
    let mut others: Vec<Value> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !events_of_a.iter().any(|e| e["data"]["status"] == "Terminated") {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let event = sink.try_next(left).await.unwrap_or_else(|| panic!("no Terminated for {on_a}: {events_of_a:?}"));
        if event.body["data"]["mediaSessionId"] == session_id(&on_a) {
            events_of_a.push(event.body);
        } else {
            others.push(event.body);
        }
    }
    assert!(
        events_of_a.iter().any(|e| e["data"]["status"] == "Connected"),
        "the Connected event a queued before it died is delivered: {events_of_a:?}"
    );
    // Delivered at least once: a duplicate keeps its CloudEvents id.
    let connected_ids: std::collections::HashSet<_> =
        events_of_a.iter().filter(|e| e["data"]["status"] == "Connected").map(|e| e["id"].clone()).collect();
    assert_eq!(connected_ids.len(), 1, "one Connected event, however often delivered: {events_of_a:?}");
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
    let (code, messages, errors) = uas.finish(Duration::from_secs(20)).await;
    assert_eq!(code, 0, "sipp: {errors}\n{messages}\n{}", kamailio.log());
    let byes = received_start_lines(&messages).iter().filter(|l| l.starts_with("BYE ")).count();
    assert_eq!(byes, 3, "a BYE for each call, the dead node's from a survivor:\n{messages}");

    // A call from the network reaches a live node through the dispatcher; the device answers
    // through b and c, whichever holds the call.
    let media_port = free_port().to_string();
    let caller =
        Sipp::uac_with("uac_media.xml", dispatcher_addr, SipTransportName::Udp, &["-rtp_echo", "-mp", &media_port])
            .await;
    let invitation = next_event(&mut sink, &mut others, SESSION_INVITATION).await;
    let session = invitation["mediaSessionId"].as_str().unwrap().to_string();
    let mut peer = WebRtcPeer::start(&["--role", "answer", "--codec", "pcmu", "--tone", "700"]);
    peer.send(json!({"cmd": "offer", "sdp": invitation["offer"]["sdp"]})).await;
    let answer = peer.expect("answer", Duration::from_secs(15)).await["sdp"].as_str().unwrap().to_string();
    let status_path = format!("{SESSIONS}/{session}/status");
    let progress = b.api.call(
        "PUT",
        &status_path,
        Some(&token),
        &[],
        Some(json!({"status": "InProgress", "answer": {"sdp": answer}})),
    );
    let progress = progress.await;
    assert_eq!(progress.status, 200, "{:?}", progress.body);
    peer.expect("connected", Duration::from_secs(15)).await;
    let connected = c.api.call("PUT", &status_path, Some(&token), &[], Some(json!({"status": "Connected"}))).await;
    assert_eq!(connected.status, 200, "{:?}", connected.body);
    peer.assert_tone_back(700.0).await;
    // sipp hangs up after its media.
    wait_status(&b.api, &token, &format!("{SESSIONS}/{session}"), "Terminated").await;
    let (code, messages, errors) = caller.finish(Duration::from_secs(20)).await;
    assert_eq!(code, 0, "sipp: {errors}\n{messages}\n{}", kamailio.log());
    peer.close().await;
    drop((b, c));
}

/// The data of the next event of `kind` at `sink`, keeping the others in `seen`.
async fn next_event(sink: &mut Sink, seen: &mut Vec<Value>, kind: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let event = sink.try_next(left).await.unwrap_or_else(|| panic!("no {kind}: {seen:?}"));
        if event.body["type"] == kind {
            return event.body["data"].clone();
        }
        seen.push(event.body);
    }
}

/// Rate limits are kept by each node (README): a client over its limit at one node is refused
/// there and still served by another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_kept_per_node() {
    init_logs();
    let Some(redis) = RedisServer::start().await else { return };
    let config = |id: &str| {
        let mut config = gateway_config(None, SipTransportName::Udp);
        config.storage.backend = Some(camara_gateway::config::StorageBackend::Redis);
        config.storage.url = Some(redis.url.clone());
        config.storage.key_prefix = "rate-limits".into();
        config.storage.node_id = id.into();
        config.api.rate_limit_per_second = 1;
        config.api.rate_limit_burst = 2;
        config
    };
    let a = camara_gateway::start(config("a")).await.expect("node a starts");
    let b = camara_gateway::start(config("b")).await.expect("node b starts");
    let (api_a, api_b) = (Api::new(a.http_addr), Api::new(b.http_addr));
    let token = tokens::for_subscriber(ALICE);
    let list = "/webrtc-events/v0.2/subscriptions";
    let statuses: Vec<u16> = {
        let mut statuses = Vec::new();
        for _ in 0..3 {
            statuses.push(api_a.call("GET", list, Some(&token), &[], None).await.status);
        }
        statuses
    };
    assert_eq!(statuses, [200, 200, 429], "the burst of 2, then the limit, at node a");
    assert_eq!(api_b.call("GET", list, Some(&token), &[], None).await.status, 200, "node b keeps its own");
    a.stop().await;
    b.stop().await;
}
