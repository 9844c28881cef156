//! Call set-ups through the whole API with media (issue 11): `POST /sessions` with a real WebRTC
//! offer -> the gateway anchors the media (a WebRTC leg gathering ICE, an RTP leg) and sends the
//! INVITE to sipp (`-sn uas`, 200 OK) -> after a hold, `DELETE` -> BYE. Open loop: calls start at
//! a fixed rate whatever the answers, so a slow gateway shows as latency and failures, not as a
//! lower offered rate.
//!
//! ```sh
//! cargo bench -p camara-gateway-tests --bench api_calls                 # 100 calls/s for 20 s
//! API_BENCH_RATE=50,100,200 API_BENCH_SECONDS=20 cargo bench -p camara-gateway-tests --bench api_calls
//! ```
//!
//! Settings (environment): `API_BENCH_RATE` (calls/s, or a comma list for a step; default 100),
//! `API_BENCH_SECONDS` (per rate, default 20), `API_BENCH_HOLD_MS` (POST answered -> DELETE,
//! default 1000), `RUST_LOG` (default `warn`).
//!
//! `API_BENCH_STALLS=1` measures what a stalled call does to the others: the gateway runs the
//! `looping-mapping` test plugin (which maps like the default, and sleeps 5 s in
//! `map-outgoing-call` for one receiver, a wait outside the guest as a slow lookup would be), and
//! each rate runs twice on the same gateway: without stalled calls, then with one stalled call
//! started per second beside the load. The table gives the normal calls' latencies of both runs,
//! so the ratio is read in one run.
//!
//! The latency is the client's: `POST /sessions` sent -> its `201` received. The gateway answers
//! once the INVITE is handed to the SIP stack, so this is the API request to the INVITE on the
//! wire, plus the HTTP round trip on loopback. The gateway keeps its state in redb (an `fsync`
//! per write) as in production. sipp and this client run on the same cores as the gateway.

use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use camara_gateway::config::SipTransportName;
use camara_gateway_tests::*;
use serde_json::json;

struct Outcome {
    post: Option<Duration>,
    deleted: bool,
}

/// `looping-mapping`'s receiver whose mapping sleeps for the plugin's `stall-ms`.
const STALLING_RECEIVER: &str = "tel:+19995550101";
const STALL: Duration = Duration::from_secs(5);

fn settings() -> (Vec<u32>, u64, Duration) {
    let rates = std::env::var("API_BENCH_RATE")
        .unwrap_or_else(|_| "100".into())
        .split(',')
        .map(|r| r.trim().parse().expect("API_BENCH_RATE: calls per second"))
        .collect();
    let seconds = std::env::var("API_BENCH_SECONDS").ok().map_or(20, |s| s.parse().expect("API_BENCH_SECONDS"));
    let hold = std::env::var("API_BENCH_HOLD_MS").ok().map_or(1000, |s| s.parse().expect("API_BENCH_HOLD_MS"));
    (rates, seconds, Duration::from_millis(hold))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Process CPU time (user + system) so far, from `/proc/self/stat`.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks: u64 = fields.get(11..13).map_or(0, |f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
    Duration::from_millis(ticks * 10)
}

/// One stalled call started per second until `stop`; returns how many were answered (their
/// status does not matter: the point is the others' latency while they wait).
async fn stall_calls(
    api: Api,
    token: String,
    registration_id: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> usize {
    let mut calls = Vec::new();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let (api, token, registration_id) = (api.clone(), token.clone(), registration_id.clone());
        calls.push(tokio::spawn(async move {
            let body = json!({
                "originatorAddress": format!("tel:{ALICE}"),
                "receiverAddress": STALLING_RECEIVER,
                "offer": {"sdp": WEBRTC_OFFER}
            });
            let headers = [("registrationId", registration_id.as_str())];
            let reply = api
                .try_request("POST", "/webrtc-call-handling/v0.3/sessions", Some(&token), &headers, Some(body))
                .await;
            if let Some(id) = reply.as_ref().filter(|r| r.status == 201).and_then(|r| r.body["mediaSessionId"].as_str())
            {
                let path = format!("/webrtc-call-handling/v0.3/sessions/{id}");
                let _ = api.try_request("DELETE", &path, Some(&token), &[], None).await;
            }
            reply
        }));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let mut answered = 0;
    for call in calls {
        answered += usize::from(matches!(call.await, Ok(Some(_))));
    }
    answered
}

async fn run_rate(
    api: &Api,
    token: &str,
    registration_id: &str,
    (rate, seconds, hold): (u32, u64, Duration),
    stalls: bool,
) -> bool {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stalled = stalls
        .then(|| tokio::spawn(stall_calls(api.clone(), token.to_string(), registration_id.to_string(), stop.clone())));
    let calls = u64::from(rate) * seconds;
    let outcomes = Arc::new(Mutex::new(Vec::with_capacity(calls as usize)));
    let mut tasks = Vec::with_capacity(calls as usize);
    let started = Instant::now();
    let cpu_before = cpu_time();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for _ in 0..calls {
        tick.tick().await;
        let (api, token, registration_id, outcomes) =
            (api.clone(), token.to_string(), registration_id.to_string(), outcomes.clone());
        tasks.push(tokio::spawn(async move {
            let body = json!({
                "originatorAddress": format!("tel:{ALICE}"),
                "receiverAddress": format!("tel:{BOB}"),
                "offer": {"sdp": WEBRTC_OFFER}
            });
            let sent = Instant::now();
            let headers = [("registrationId", registration_id.as_str())];
            let reply = api
                .try_request("POST", "/webrtc-call-handling/v0.3/sessions", Some(&token), &headers, Some(body))
                .await;
            let mut outcome = Outcome { post: None, deleted: false };
            if let Some(reply) = reply.as_ref().filter(|r| r.status == 201) {
                outcome.post = Some(sent.elapsed());
                tokio::time::sleep(hold).await;
                let path =
                    format!("/webrtc-call-handling/v0.3/sessions/{}", reply.body["mediaSessionId"].as_str().unwrap());
                outcome.deleted =
                    api.try_request("DELETE", &path, Some(&token), &[], None).await.is_some_and(|r| r.status == 204);
            } else if let Some(reply) = reply {
                eprintln!("POST answered {}: {}", reply.status, reply.body);
            }
            outcomes.lock().unwrap().push(outcome);
        }));
    }
    let offered_for = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    let stalled = match stalled {
        Some(task) => format!("{} (5 s each)", task.await.unwrap_or(0)),
        None => "none".into(),
    };
    let cpu = cpu_time() - cpu_before;
    let wall = started.elapsed();
    let outcomes = outcomes.lock().unwrap();
    let mut posts: Vec<Duration> = outcomes.iter().filter_map(|o| o.post).collect();
    posts.sort();
    let failed = outcomes.len() - posts.len();
    let undeleted = outcomes.iter().filter(|o| o.post.is_some() && !o.deleted).count();
    println!(
        "| {rate} | {stalled} | {calls} | {} | {failed} | {undeleted} | {:.1} | {:.2} ms | {:.2} ms | {:.2} ms | {:.0} % |",
        posts.len(),
        posts.len() as f64 / offered_for.as_secs_f64(),
        percentile(&posts, 0.50).as_secs_f64() * 1e3,
        percentile(&posts, 0.99).as_secs_f64() * 1e3,
        posts.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        cpu.as_secs_f64() / wall.as_secs_f64() * 100.0,
    );
    failed == 0 && undeleted == 0
}

#[tokio::main]
async fn main() -> ExitCode {
    init_logs();
    let (rates, seconds, hold) = settings();
    let stalls = std::env::var("API_BENCH_STALLS").is_ok_and(|v| v == "1");
    let sip_port = free_port();
    // The network: sipp's built-in UAS answers every INVITE with 200 and every BYE with 200.
    let _sipp = tokio::process::Command::new("sipp")
        .args(["-sn", "uas", "-i", "127.0.0.1", "-p", &sip_port.to_string(), "-nostdin"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("sipp (apt-get install sip-tester)");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dir = TempDir::new("api-bench");
    let mut config = gateway_config(Some(([127, 0, 0, 1], sip_port).into()), SipTransportName::Udp);
    config.storage.path = Some(dir.0.join("state.redb"));
    config.api.rate_limit_per_second = 1_000_000;
    config.api.rate_limit_burst = 1_000_000;
    // One client stands for many here: no cap on its requests in progress either.
    config.api.max_requests_in_progress_per_client = 0;
    if stalls {
        config.plugins.api_mapping.wasm = Some(plugin_component("plugins/testing/looping-mapping"));
        config.plugins.api_mapping.config.insert("stall-ms".into(), STALL.as_millis().to_string());
        config.plugins.api_mapping.deadline_ms = Some(STALL.as_millis() as u64 + 1000);
    }
    let gateway = camara_gateway::start(config).await.expect("gateway starts");
    let api = Api::new(gateway.http_addr);
    let token = tokens::for_subscriber(ALICE);
    let registration = api.register(&token).await;
    assert_eq!(registration.status, 201, "{:?}", registration.body);
    let registration_id = registration.body["registrationId"].as_str().unwrap().to_string();

    println!(
        "| offered calls/s | stalled calls | calls | answered 201 | failed | not ended | set-ups/s | POST p50 | POST p99 | POST max | process CPU |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut ok = true;
    for rate in rates {
        for with_stalls in [false, true].into_iter().filter(|s| !s || stalls) {
            ok &= run_rate(&api, &token, &registration_id, (rate, seconds, hold), with_stalls).await;
            // Let the ended calls' transactions settle (and stalled calls end) before the next run.
            tokio::time::sleep(Duration::from_secs(2) + if with_stalls { STALL } else { Duration::ZERO }).await;
        }
    }
    gateway.stop().await;
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
