//! Gateway nodes sharing one Redis (issue 13): API requests per second and call set-ups per
//! second with 1, 2 and 3 nodes, and the Redis work per call set-up (`INFO commandstats`), so
//! that the cost per node can be projected. A first row with the embedded redb store on one
//! node is the baseline of the Redis rows, measured in the same run.
//!
//! ```sh
//! cargo bench -p camara-gateway-tests --bench nodes
//! NODES_BENCH_NODES=1,2,3 NODES_BENCH_SECONDS=10 NODES_BENCH_RATE=100 cargo bench -p camara-gateway-tests --bench nodes
//! ```
//!
//! Settings (environment): `NODES_BENCH_NODES` (node counts, default `1,2,3`),
//! `NODES_BENCH_SECONDS` (per phase, default 10), `NODES_BENCH_CLIENTS` (concurrent API clients
//! of the request phase, default 32), `NODES_BENCH_RATE` (offered call set-ups per second,
//! default 100), `RUST_LOG` (default `warn`).
//!
//! Two phases per row after 2 s of each unmeasured, the requests spread round robin over the
//! nodes:
//! - requests: closed loop, `NODES_BENCH_CLIENTS` clients each reading the registration
//!   (`GET /webrtc-registration/v0.3/sessions/{id}`: token check, authorization plugin, one
//!   store read) as fast as answered;
//! - call set-ups: open loop at `NODES_BENCH_RATE`, `POST /sessions` with a real WebRTC offer ->
//!   INVITE to sipp (`-sn uas`) -> 200 -> after 500 ms `DELETE` -> BYE.
//!
//! The Redis counts include what the nodes do meanwhile besides the calls (heartbeats, expiry
//! sweeps: a few scripts per node and second). The nodes run in this process (one tokio runtime,
//! `camara_gateway::start` each), as do the clients; Redis (`appendfsync always`, as production needs) and sipp are processes. Everything
//! shares the machine's cores, so the figures show what each node and Redis cost, not how
//! separate machines would scale.

use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use camara_gateway::config::{GatewayConfig, SipTransportName, StorageBackend};
use camara_gateway_tests::*;
use serde_json::json;

const HOLD: Duration = Duration::from_millis(500);
/// Run before each row's measured phases, on the same nodes.
const WARM_UP: Duration = Duration::from_secs(2);

struct Settings {
    nodes: Vec<usize>,
    phase: Duration,
    clients: usize,
    rate: u32,
}

fn settings() -> Settings {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    Settings {
        nodes: var("NODES_BENCH_NODES", "1,2,3").split(',').map(|n| n.trim().parse().expect("node count")).collect(),
        phase: Duration::from_secs(var("NODES_BENCH_SECONDS", "10").parse().expect("NODES_BENCH_SECONDS")),
        clients: var("NODES_BENCH_CLIENTS", "32").parse().expect("NODES_BENCH_CLIENTS"),
        rate: var("NODES_BENCH_RATE", "100").parse().expect("NODES_BENCH_RATE"),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `redis-cli` against the bench's server.
fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli (Debian: redis-tools)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// (scripts run, commands run inside and outside scripts) since the last `CONFIG RESETSTAT`.
fn redis_calls(port: u16) -> (u64, u64) {
    let stats = redis_cli(port, &["INFO", "commandstats"]);
    let mut scripts = 0;
    let mut all = 0;
    for line in stats.lines().filter_map(|l| l.strip_prefix("cmdstat_")) {
        let Some((name, fields)) = line.split_once(':') else { continue };
        let calls: u64 =
            fields.split(',').find_map(|f| f.strip_prefix("calls=")).and_then(|c| c.parse().ok()).unwrap_or(0);
        // `info` and `config` are this bench's own.
        if name == "info" || name == "config" {
            continue;
        }
        if name == "evalsha" || name == "eval" {
            scripts += calls;
        } else {
            all += calls;
        }
    }
    (scripts, all)
}

/// Closed loop: `clients` clients reading the registration through the nodes for `phase`.
async fn requests(apis: &[Api], token: &str, registration_id: &str, clients: usize, phase: Duration) -> String {
    let path = format!("/webrtc-registration/v0.3/sessions/{registration_id}");
    let failed = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + phase;
    let mut tasks = Vec::new();
    for client in 0..clients {
        let (api, token, path, failed) =
            (apis[client % apis.len()].clone(), token.to_string(), path.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < end {
                let sent = Instant::now();
                match api.try_request("GET", &path, Some(&token), &[], None).await {
                    Some(reply) if reply.status == 200 => latencies.push(sent.elapsed()),
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap_or_default());
    }
    latencies.sort();
    format!(
        "{:.0} | {:.2} ms | {:.2} ms | {}",
        latencies.len() as f64 / phase.as_secs_f64(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        failed.load(Ordering::Relaxed)
    )
}

/// Open loop: call set-ups at `rate` through the nodes for `phase`; the row's cells and the
/// number of calls set up.
async fn calls(apis: &[Api], token: &str, registration_id: &str, rate: u32, phase: Duration) -> (String, u64) {
    let count = (f64::from(rate) * phase.as_secs_f64()) as usize;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        tick.tick().await;
        let (api, token, registration_id) =
            (apis[i % apis.len()].clone(), token.to_string(), registration_id.to_string());
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
                .await?;
            if reply.status != 201 {
                eprintln!("POST answered {}: {}", reply.status, reply.body);
                return None;
            }
            let took = sent.elapsed();
            tokio::time::sleep(HOLD).await;
            let path = format!("/webrtc-call-handling/v0.3/sessions/{}", reply.body["mediaSessionId"].as_str()?);
            let deleted = api.try_request("DELETE", &path, Some(&token), &[], None).await?;
            (deleted.status == 204).then_some(took)
        }));
    }
    let offered_for = started.elapsed();
    let mut set_up = Vec::new();
    for task in tasks {
        if let Ok(Some(took)) = task.await {
            set_up.push(took);
        }
    }
    set_up.sort();
    let cells = format!(
        "{:.1} | {} | {:.2} ms | {:.2} ms",
        set_up.len() as f64 / offered_for.as_secs_f64(),
        count - set_up.len(),
        ms(percentile(&set_up, 0.5)),
        ms(percentile(&set_up, 0.99)),
    );
    (cells, set_up.len() as u64)
}

/// A node's configuration: on Redis at `redis` (`None`: redb in `dir`), the network at `sip_port`.
fn node_config(id: &str, redis: Option<&RedisServer>, dir: &TempDir, sip_port: u16, prefix: &str) -> GatewayConfig {
    let mut config = gateway_config(Some(([127, 0, 0, 1], sip_port).into()), SipTransportName::Udp);
    config.api.rate_limit_per_second = 1_000_000;
    config.api.rate_limit_burst = 1_000_000;
    config.api.max_requests_in_progress_per_client = 0;
    match redis {
        Some(redis) => {
            config.storage.backend = Some(StorageBackend::Redis);
            config.storage.url = Some(redis.url.clone());
            config.storage.key_prefix = prefix.into();
            config.storage.node_id = id.into();
        }
        None => config.storage.path = Some(dir.0.join(format!("{id}.redb"))),
    }
    config
}

#[tokio::main]
async fn main() -> ExitCode {
    init_logs();
    let settings = settings();
    let Some(redis) = RedisServer::start().await else { return ExitCode::FAILURE };
    let redis_port: u16 =
        redis.url.trim_end_matches('/').rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
    let sip_port = free_port();
    let _sipp = tokio::process::Command::new("sipp")
        .args(["-sn", "uas", "-i", "127.0.0.1", "-p", &sip_port.to_string(), "-nostdin"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("sipp (apt-get install sip-tester)");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dir = TempDir::new("nodes-bench");
    let token = tokens::for_subscriber(ALICE);

    println!(
        "| store | nodes | reads/s | read p50 | read p99 | reads failed | set-ups/s | set-ups failed | POST p50 | POST p99 | Redis scripts / set-up | Redis commands / set-up |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let rows = std::iter::once(None).chain(settings.nodes.iter().copied().map(Some));
    for (row, nodes) in rows.enumerate() {
        let (store, count) = match nodes {
            None => ("redb", 1),
            Some(n) => ("Redis", n),
        };
        let prefix = format!("bench-{row}");
        let redis_for = nodes.map(|_| &redis);
        let mut gateways = Vec::new();
        for i in 0..count {
            let config = node_config(&format!("n{i}"), redis_for, &dir, sip_port, &prefix);
            gateways.push(camara_gateway::start(config).await.expect("node starts"));
        }
        let apis: Vec<Api> = gateways.iter().map(|g| Api::new(g.http_addr)).collect();
        let registration = apis[0].register(&token).await;
        assert_eq!(registration.status, 201, "{:?}", registration.body);
        let registration_id = registration.body["registrationId"].as_str().unwrap().to_string();

        // Not counted: the first calls of a process build its plugin instances, connections
        // and caches.
        requests(&apis, &token, &registration_id, settings.clients, WARM_UP).await;
        calls(&apis, &token, &registration_id, settings.rate, WARM_UP).await;
        let reads = requests(&apis, &token, &registration_id, settings.clients, settings.phase).await;
        redis_cli(redis_port, &["CONFIG", "RESETSTAT"]);
        let (calls, set_up) = calls(&apis, &token, &registration_id, settings.rate, settings.phase).await;
        // Let the last BYEs and their status writes land before counting.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let per_call = match nodes {
            Some(_) if set_up > 0 => {
                let (scripts, commands) = redis_calls(redis_port);
                format!("{:.1} | {:.1}", scripts as f64 / set_up as f64, commands as f64 / set_up as f64)
            }
            _ => "- | -".into(),
        };
        println!("| {store} | {count} | {reads} | {calls} | {per_call} |");
        for gateway in gateways {
            gateway.stop().await;
        }
    }
    ExitCode::SUCCESS
}
