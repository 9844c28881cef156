//! SIP call load (issue 4): sipp calls our [`UserAgent`] on loopback at a fixed rate; the user
//! agent answers every INVITE with 200 OK and SDP, sipp ACKs, holds the call, sends BYE.
//!
//! ```sh
//! cargo bench -p camara-sip --bench sip_calls
//! SIP_BENCH_RATE=300,500,800 cargo bench -p camara-sip --bench sip_calls
//! ```
//!
//! Settings (environment):
//! - `SIP_BENCH_RATE`: offered calls per second, or a comma list for a rate step (default 300);
//! - `SIP_BENCH_CALLS`: calls per rate (default: `SIP_BENCH_SECONDS` x rate);
//! - `SIP_BENCH_SECONDS`: default 60. The user agent keeps a call until 32 s (64 x T1) after its
//!   200 OK, to absorb a retransmitted INVITE (Timer L), and over UDP the BYE's transaction 32 s
//!   after the BYE (Timer J): the number of calls held only stops growing after ~33 s, and a
//!   shorter run flatters the figures;
//! - `SIP_BENCH_HOLD_MS`: how long each call stays up between ACK and BYE (sipp's `-d`, default 1000);
//! - `SIP_BENCH_TRANSPORT`: `udp` (default) or `tcp` (one connection for all calls);
//! - `SIP_BENCH_DIRECTION`: `incoming` (default: sipp calls the user agent, as above) or
//!   `outgoing` (the mirror: the user agent places the calls, paced by a timer, to `sipp -sn uas`,
//!   and times set-up, `invite` -> 200, and tear-down, `hangup` -> `Terminated`, with `Instant`);
//! - `SIP_BENCH_KEEP`: keep sipp's files (statistics, response times, errors) in the temp dir;
//! - `RUST_LOG`: the user agent's log filter (default `warn`; `camara_sip=info` shows the cost of
//!   the per-call info lines the gateway logs).
//!
//! Everything comes from sipp's own files: `-trace_stat` (successful/failed calls,
//! retransmissions) and `-trace_rtt` (every call's set-up time, INVITE sent -> 200 received, and
//! tear-down time, BYE sent -> 200 received, with the time each was measured; sipp's clock counts
//! whole milliseconds, and on the benchmark machine moved in 4 ms steps). The user agent's
//! events are counted as a cross-check. Exits non-zero when a call failed or went missing.
//! sipp runs on the same cores as the user agent, so the figures are for both together.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use camara_sip::{CallEvent, NameAddr, OutgoingInvite, SipConfig, TimerConfig, Transport, UaEvent, UserAgent};
use tokio::process::Command;
use tokio::sync::mpsc::UnboundedReceiver;

const ANSWER_SDP: &str = "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30002 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/// Response-time numbers of the scenario (`start_rtd` / `rtd`).
const RTD_SETUP: u32 = 1;
const RTD_TEARDOWN: u32 = 2;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// sipp calls the user agent (the network calling a device through the gateway).
    Incoming,
    /// The user agent calls `sipp -sn uas` (a device calling out).
    Outgoing,
}

struct Settings {
    direction: Direction,
    rates: Vec<u32>,
    calls: Option<u64>,
    seconds: u64,
    hold_ms: u64,
    transport: Transport,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Ok(value) => value.trim().parse().map_err(|_| format!("{name}={value:?} is not valid")),
        Err(_) => Ok(default),
    }
}

impl Settings {
    fn from_env() -> Result<Settings, String> {
        let rates = std::env::var("SIP_BENCH_RATE").unwrap_or_else(|_| "300".into());
        let rates = rates
            .split(',')
            .map(|r| r.trim().parse::<u32>().ok().filter(|&r| r > 0))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| format!("SIP_BENCH_RATE={rates:?}: expected e.g. 300 or 300,500,800"))?;
        let calls = std::env::var("SIP_BENCH_CALLS").ok().map(|_| env_or("SIP_BENCH_CALLS", 0u64)).transpose()?;
        let transport = match std::env::var("SIP_BENCH_TRANSPORT").as_deref() {
            Err(_) | Ok("udp") => Transport::Udp,
            Ok("tcp") => Transport::Tcp,
            Ok(other) => return Err(format!("SIP_BENCH_TRANSPORT={other:?}: udp or tcp")),
        };
        let direction = match std::env::var("SIP_BENCH_DIRECTION").as_deref() {
            Err(_) | Ok("incoming") => Direction::Incoming,
            Ok("outgoing") => Direction::Outgoing,
            Ok(other) => return Err(format!("SIP_BENCH_DIRECTION={other:?}: incoming or outgoing")),
        };
        Ok(Settings {
            direction,
            rates,
            calls,
            seconds: env_or("SIP_BENCH_SECONDS", 60)?,
            hold_ms: env_or("SIP_BENCH_HOLD_MS", 1000)?,
            transport,
        })
    }
}

/// What the user agent saw, counted by the answering task.
#[derive(Default)]
struct UaCounts {
    incoming: AtomicU64,
    accept_failed: AtomicU64,
    acks: AtomicU64,
    byes: AtomicU64,
    terminated: AtomicU64,
    timeouts: AtomicU64,
}

struct Step {
    rate: u32,
    calls: u64,
    successful: u64,
    failed: u64,
    retransmissions: u64,
    setup: Latencies,
    teardown: Latencies,
    ua_incoming: u64,
    ua_terminated: u64,
    ua_problems: u64,
    /// CPU seconds over the run: this process (the user agent) and sipp.
    ua_cpu: f64,
    sipp_cpu: f64,
    wall: Duration,
    sipp_ok: bool,
    /// Times from `Instant` (the outgoing direction) rather than sipp's millisecond clock.
    exact_times: bool,
}

/// Response times of one kind, and when they were taken.
#[derive(Default)]
struct Latencies {
    /// Milliseconds, sorted.
    ms: Vec<f64>,
    first_at_ms: f64,
    last_at_ms: f64,
}

impl Latencies {
    fn from(mut samples: Vec<(f64, f64)>) -> Latencies {
        let first_at_ms = samples.iter().map(|s| s.0).fold(f64::INFINITY, f64::min);
        let last_at_ms = samples.iter().map(|s| s.0).fold(f64::NEG_INFINITY, f64::max);
        samples.sort_by(|a, b| a.1.total_cmp(&b.1));
        Latencies { ms: samples.into_iter().map(|s| s.1).collect(), first_at_ms, last_at_ms }
    }

    /// Nearest-rank percentile.
    fn percentile(&self, p: f64) -> f64 {
        if self.ms.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.ms.len() as f64).ceil() as usize;
        self.ms[rank.clamp(1, self.ms.len()) - 1]
    }

    /// Completions per second between the first and the last one.
    fn per_second(&self) -> f64 {
        let span = (self.last_at_ms - self.first_at_ms) / 1000.0;
        if self.ms.len() < 2 || span <= 0.0 { f64::NAN } else { (self.ms.len() - 1) as f64 / span }
    }
}

fn main() -> ExitCode {
    // cargo bench passes `--bench`; there is nothing to select here.
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    if std::process::Command::new("sipp").arg("-v").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
        // Not a skip: without sipp there is no figure to report.
        eprintln!("sipp not found on PATH (Debian package sip-tester; tests/install-peers.sh installs it)");
        return ExitCode::FAILURE;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");

    let mut steps = Vec::new();
    for &rate in &settings.rates {
        let calls = settings.calls.unwrap_or(settings.seconds * u64::from(rate));
        println!("+ {rate} calls/s, {calls} calls over {:?}, each held {} ms", settings.transport, settings.hold_ms);
        let step = match settings.direction {
            Direction::Incoming => runtime.block_on(incoming_step(&settings, rate, calls)),
            Direction::Outgoing => runtime.block_on(outgoing_step(&settings, rate, calls)),
        };
        match step {
            Ok(step) => steps.push(step),
            Err(error) => {
                eprintln!("rate {rate}: {error}");
                return ExitCode::FAILURE;
            }
        }
    }

    print_table(&settings, &steps);
    let mut ok = true;
    for step in &steps {
        let missing = step.calls.saturating_sub(step.successful + step.failed);
        // Every successful call must have left both of its times, or the percentiles lie.
        let unmeasured = step.successful.saturating_sub(step.setup.ms.len().min(step.teardown.ms.len()) as u64);
        if step.failed > 0 || missing > 0 || !step.sipp_ok || step.ua_problems > 0 || unmeasured > 0 {
            eprintln!(
                "rate {}: {} failed, {} missing, sipp {}, {} user-agent problems (failed accept, timeout, missing ACK or BYE), {} calls without their times",
                step.rate,
                step.failed,
                missing,
                if step.sipp_ok { "exited 0" } else { "failed" },
                step.ua_problems,
                unmeasured
            );
            ok = false;
        }
    }
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

async fn start_ua() -> Result<(UserAgent, UnboundedReceiver<UaEvent>), String> {
    UserAgent::start(SipConfig {
        udp_listen: Some("127.0.0.1:0".parse().unwrap()),
        tcp_listen: Some("127.0.0.1:0".parse().unwrap()),
        tls_listen: None,
        tls: None,
        advertised_host: None,
        user_agent: "camara-sip-bench".into(),
        timers: TimerConfig::default(),
    })
    .await
    .map_err(|e| format!("start user agent: {e}"))
}

/// A fresh directory for sipp's files (sipp writes them into its working directory).
fn step_dir(rate: u32) -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("camara-sip-bench-{}-{rate}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// Kept when something went wrong (or SIP_BENCH_KEEP is set), for a look at sipp's files.
fn finish_dir(dir: &Path, step: &Step) {
    if step.failed == 0 && step.sipp_ok && std::env::var_os("SIP_BENCH_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(dir);
    } else {
        eprintln!("sipp's files kept in {}", dir.display());
    }
}

fn report_sipp_failure(dir: &Path, status: std::process::ExitStatus, stderr: &[u8]) {
    if !status.success() {
        let errors = std::fs::read_to_string(dir.join("errors.log")).unwrap_or_default();
        let head: String = errors.lines().take(40).collect::<Vec<_>>().join("\n");
        eprintln!("sipp exited with {status}:\n{}\n{head}", String::from_utf8_lossy(stderr));
    }
}

async fn incoming_step(settings: &Settings, rate: u32, calls: u64) -> Result<Step, String> {
    let (ua, mut events) = start_ua().await?;
    let target = ua.local_addr(settings.transport).expect("listener");

    // The answering side: every incoming INVITE is accepted with the fixed SDP.
    let counts = Arc::new(UaCounts::default());
    let answerer = {
        let (ua, counts) = (ua.clone(), counts.clone());
        tokio::spawn(async move {
            while let Some(UaEvent { call_id, event }) = events.recv().await {
                let counter = match &event {
                    CallEvent::Incoming { .. } => {
                        let (ua, task_counts) = (ua.clone(), counts.clone());
                        tokio::spawn(async move {
                            if ua.accept(&call_id, Some(ANSWER_SDP.into())).await.is_err() {
                                task_counts.accept_failed.fetch_add(1, Ordering::Relaxed);
                            }
                        });
                        &counts.incoming
                    }
                    CallEvent::Request { method, .. } if method == "ACK" => &counts.acks,
                    CallEvent::Request { method, .. } if method == "BYE" => &counts.byes,
                    CallEvent::Terminated { .. } => &counts.terminated,
                    CallEvent::Timeout => &counts.timeouts,
                    _ => continue,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    let dir = step_dir(rate)?;
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/sipp/uac_load.xml");
    // Generous: a run that stalls fails on its own instead of hanging.
    let timeout = calls / u64::from(rate) + settings.hold_ms / 1000 + 60;

    let cpu_before = (own_cpu_seconds(), children_cpu_seconds());
    let started = Instant::now();
    let output = Command::new("sipp")
        .arg(target.to_string())
        .arg("-sf")
        .arg(&scenario)
        .args(["-i", "127.0.0.1", "-p", &free_port(settings.transport).to_string()])
        .args(["-t", if settings.transport == Transport::Udp { "u1" } else { "t1" }])
        .args(["-r", &rate.to_string(), "-rp", "1000", "-m", &calls.to_string()])
        .args(["-d", &settings.hold_ms.to_string()])
        .args(["-trace_stat", "-stf", "stat.csv", "-fd", "1"])
        .args(["-trace_rtt", "-rtt_freq", "100"])
        .args(["-trace_err", "-error_file", "errors.log"])
        .args(["-timeout", &format!("{timeout}s"), "-timeout_error", "-nostdin"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("run sipp: {e}"))?;
    let wall = started.elapsed();
    let ua_cpu = own_cpu_seconds() - cpu_before.0;
    let sipp_cpu = children_cpu_seconds() - cpu_before.1;

    // The last BYE's 200 left before sipp exited; let the user agent's events catch up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    ua.shutdown().await;
    drop(ua);
    let _ = tokio::time::timeout(Duration::from_secs(5), answerer).await;

    report_sipp_failure(&dir, output.status, &output.stderr);
    let stats = read_stats(&dir.join("stat.csv"))?;
    let rtt = read_rtt(&dir)?;
    let stat = |name: &str| stats.get(name).and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0);
    let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
    let ua_incoming = load(&counts.incoming);
    let ua_problems = load(&counts.accept_failed)
        + load(&counts.timeouts)
        + ua_incoming.saturating_sub(load(&counts.acks))
        + ua_incoming.saturating_sub(load(&counts.byes));
    let mut setup = Vec::new();
    let mut teardown = Vec::new();
    for (at_ms, rt_ms, rtd) in rtt {
        match rtd {
            RTD_SETUP => setup.push((at_ms, rt_ms)),
            RTD_TEARDOWN => teardown.push((at_ms, rt_ms)),
            _ => {}
        }
    }
    let step = Step {
        rate,
        calls,
        successful: stat("SuccessfulCall(C)"),
        failed: stat("FailedCall(C)"),
        retransmissions: stat("Retransmissions(C)"),
        setup: Latencies::from(setup),
        teardown: Latencies::from(teardown),
        ua_incoming,
        ua_terminated: load(&counts.terminated),
        ua_problems,
        ua_cpu,
        sipp_cpu,
        wall,
        sipp_ok: output.status.success(),
        exact_times: false,
    };
    finish_dir(&dir, &step);
    Ok(step)
}

/// The outgoing calls' book: what the event task needs to time each call.
#[derive(Default)]
struct Book {
    placed: HashMap<String, Instant>,
    hung_up: HashMap<String, Instant>,
    /// (when: ms since the step started, how long: ms).
    setup: Vec<(f64, f64)>,
    teardown: Vec<(f64, f64)>,
    failed: u64,
    terminated: u64,
}

/// The mirror direction: the user agent places `calls` calls at `rate` to `sipp -sn uas` (which
/// answers 180, 200, and 200 to the BYE) and times them itself.
async fn outgoing_step(settings: &Settings, rate: u32, calls: u64) -> Result<Step, String> {
    let (ua, mut events) = start_ua().await?;
    let dir = step_dir(rate)?;
    let port = free_port(settings.transport);
    let timeout = calls / u64::from(rate) + settings.hold_ms / 1000 + 60;
    let cpu_before = (own_cpu_seconds(), children_cpu_seconds());
    let wall_start = Instant::now();
    let sipp = Command::new("sipp")
        .args(["-sn", "uas", "-i", "127.0.0.1", "-p", &port.to_string()])
        .args(["-t", if settings.transport == Transport::Udp { "u1" } else { "t1" }])
        .args(["-m", &calls.to_string()])
        .args(["-trace_stat", "-stf", "stat.csv", "-fd", "1"])
        .args(["-trace_err", "-error_file", "errors.log"])
        .args(["-timeout", &format!("{timeout}s"), "-timeout_error", "-nostdin"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("run sipp: {e}"))?;
    // Readiness, not a measurement: wait until sipp holds its port.
    while !port_taken(settings.transport, port) {
        if wall_start.elapsed() > Duration::from_secs(10) {
            return Err(format!("sipp did not bind port {port}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let target = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let started = Instant::now();
    let since_start = move |at: Instant| at.duration_since(started).as_secs_f64() * 1000.0;

    // Answered calls are hung up after the hold time; every event is timed on arrival.
    let book = Arc::new(std::sync::Mutex::new(Book::default()));
    let hold = Duration::from_millis(settings.hold_ms);
    let event_task = {
        let (ua, book) = (ua.clone(), book.clone());
        tokio::spawn(async move {
            while let Some(UaEvent { call_id, event }) = events.recv().await {
                let now = Instant::now();
                let answered = {
                    let mut book = book.lock().unwrap();
                    match event {
                        CallEvent::Response { status: 200..=299, .. } => match book.placed.remove(&call_id) {
                            Some(placed) => {
                                book.setup.push((since_start(now), (now - placed).as_secs_f64() * 1000.0));
                                true
                            }
                            None => false,
                        },
                        CallEvent::Response { status: 300.., .. } | CallEvent::Timeout => {
                            book.failed += 1;
                            false
                        }
                        CallEvent::Terminated { .. } => {
                            book.terminated += 1;
                            if let Some(at) = book.hung_up.remove(&call_id) {
                                book.teardown.push((since_start(now), (now - at).as_secs_f64() * 1000.0));
                            }
                            if book.terminated == calls {
                                break;
                            }
                            false
                        }
                        _ => false,
                    }
                };
                if answered {
                    let (ua, book) = (ua.clone(), book.clone());
                    tokio::spawn(async move {
                        tokio::time::sleep(hold).await;
                        book.lock().unwrap().hung_up.insert(call_id.clone(), Instant::now());
                        if ua.hangup(&call_id).await.is_err() {
                            book.lock().unwrap().failed += 1;
                        }
                    });
                }
            }
        })
    };

    // Paced by a timer; a tick missed while the user agent is busy is caught up at once.
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for i in 0..calls {
        tick.tick().await;
        let call_id = format!("bench{i}-{}@127.0.0.1", std::process::id());
        book.lock().unwrap().placed.insert(call_id.clone(), Instant::now());
        let invite = OutgoingInvite {
            call_id: Some(call_id),
            request_uri: format!("sip:+818000000002@127.0.0.1:{port}"),
            from: NameAddr { display_name: None, uri: "sip:+818000000001@operator.com".into() },
            to: NameAddr { display_name: None, uri: "sip:+818000000002@operator.com".into() },
            p_asserted_identity: None,
            privacy: None,
            extra_headers: Vec::new(),
            sdp: Some(ANSWER_SDP.into()),
            extra_body_parts: Vec::new(),
            next_hop: target,
            transport: settings.transport,
            credentials: None,
        };
        if ua.invite(invite).await.is_err() {
            book.lock().unwrap().failed += 1;
        }
    }
    // The last calls still have to be held and torn down; a stall ends here instead of hanging.
    let _ = tokio::time::timeout(hold + Duration::from_secs(40), event_task).await;
    let output = tokio::time::timeout(Duration::from_secs(30), sipp.wait_with_output())
        .await
        .map_err(|_| "sipp did not exit".to_string())?
        .map_err(|e| format!("wait for sipp: {e}"))?;
    let wall = wall_start.elapsed();
    let ua_cpu = own_cpu_seconds() - cpu_before.0;
    let sipp_cpu = children_cpu_seconds() - cpu_before.1;
    ua.shutdown().await;
    report_sipp_failure(&dir, output.status, &output.stderr);

    let stats = read_stats(&dir.join("stat.csv"))?;
    let stat = |name: &str| stats.get(name).and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0);
    let book = std::mem::take(&mut *book.lock().unwrap());
    // A call sipp gave up on (an unexpected message, a BYE it never got) may still look whole
    // from our side: a BYE that times out also ends in `Terminated`.
    let failed = book.failed.max(stat("FailedCall(C)"));
    let step = Step {
        rate,
        calls,
        // Answered, then ended after our BYE, less those sipp counts as failed.
        successful: (book.teardown.len() as u64).saturating_sub(stat("FailedCall(C)")),
        failed,
        retransmissions: stat("Retransmissions(C)"),
        setup: Latencies::from(book.setup),
        teardown: Latencies::from(book.teardown),
        ua_incoming: calls,
        ua_terminated: book.terminated,
        ua_problems: 0,
        ua_cpu,
        sipp_cpu,
        wall,
        sipp_ok: output.status.success(),
        exact_times: true,
    };
    finish_dir(&dir, &step);
    Ok(step)
}

/// The last line of sipp's `-trace_stat` file, by column name.
fn read_stats(path: &Path) -> Result<HashMap<String, String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().ok_or("empty sipp statistics file")?;
    let last = lines.next_back().ok_or("no statistics line from sipp")?;
    Ok(header.split(';').map(str::to_string).zip(last.split(';').map(str::to_string)).collect())
}

/// sipp's `-trace_rtt` file (`<scenario>_<pid>_rtt.csv`): a `Date_ms;response_time_ms;rtd_no`
/// line per measurement, times in ms since sipp started; returns (date_ms, response_time_ms, rtd).
/// sipp 3.6 runs on a millisecond clock: a response time under 1 ms reads 0.
fn read_rtt(dir: &Path) -> Result<Vec<(f64, f64, u32)>, String> {
    let path: PathBuf = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with("_rtt.csv"))
        .ok_or("sipp wrote no _rtt.csv file")?;
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut samples = Vec::new();
    let mut lines = text.lines();
    if lines.next() != Some("Date_ms;response_time_ms;rtd_no") {
        return Err(format!("{}: not the rtt format this reads", path.display()));
    }
    for line in lines {
        let fields: Vec<&str> = line.split(';').map(str::trim).collect();
        if let [at, rt, rtd] = fields[..]
            && let (Ok(at), Ok(rt), Ok(rtd)) = (at.parse(), rt.parse(), rtd.parse())
        {
            samples.push((at, rt, rtd));
        }
    }
    Ok(samples)
}

/// A port that is free now; sipp binds it right after.
fn free_port(transport: Transport) -> u16 {
    match transport {
        Transport::Udp => std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(),
        // Debian's sipp has no TLS: only UDP and TCP are benchmarked.
        Transport::Tcp | Transport::Tls => {
            std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
        }
    }
}

fn port_taken(transport: Transport, port: u16) -> bool {
    match transport {
        Transport::Udp => std::net::UdpSocket::bind(("127.0.0.1", port)).is_err(),
        Transport::Tcp | Transport::Tls => std::net::TcpListener::bind(("127.0.0.1", port)).is_err(),
    }
}

/// Fields of /proc/self/stat after the command name, in clock ticks (USER_HZ, 100 on Linux).
fn proc_stat_ticks(fields: [usize; 2]) -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    // After the name, field 3 (state) is index 0.
    let values: Vec<f64> = after_name.split_whitespace().map(|v| v.parse().unwrap_or(0.0)).collect();
    fields.iter().map(|&f| values.get(f - 3).copied().unwrap_or(0.0)).sum::<f64>() / 100.0
}

/// utime + stime of this process: the user agent and the answering task.
fn own_cpu_seconds() -> f64 {
    proc_stat_ticks([14, 15])
}

/// cutime + cstime: children waited for, i.e. sipp once it has exited.
fn children_cpu_seconds() -> f64 {
    proc_stat_ticks([16, 17])
}

/// sipp's times are whole milliseconds; ours are exact.
fn ms(value: f64, exact: bool) -> String {
    match (exact, value < 1.0) {
        (true, _) => format!("{value:.2} ms"),
        (false, true) => "< 1 ms".into(),
        (false, false) => format!("{value:.0} ms"),
    }
}

fn print_table(settings: &Settings, steps: &[Step]) {
    println!();
    let who = match settings.direction {
        Direction::Incoming => "sipp calls the user agent; times measured by sipp (1 ms clock)",
        Direction::Outgoing => "the user agent calls sipp; times measured by the user agent's caller (Instant)",
    };
    println!("{who}; transport {:?}, calls held {} ms; sipp on the same cores", settings.transport, settings.hold_ms);
    println!(
        "| offered calls/s | calls | successful | failed | retrans. | set-ups/s | tear-downs/s | set-up p50 | set-up p99 | set-up max | tear-down p99 | UA CPU | sipp CPU |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for s in steps {
        let secs = s.wall.as_secs_f64();
        println!(
            "| {} | {} | {} | {} | {} | {:.1} | {:.1} | {} | {} | {} | {} | {:.0} % | {:.0} % |",
            s.rate,
            s.calls,
            s.successful,
            s.failed,
            s.retransmissions,
            s.setup.per_second(),
            s.teardown.per_second(),
            ms(s.setup.percentile(50.0), s.exact_times),
            ms(s.setup.percentile(99.0), s.exact_times),
            ms(s.setup.percentile(100.0), s.exact_times),
            ms(s.teardown.percentile(99.0), s.exact_times),
            100.0 * s.ua_cpu / secs,
            100.0 * s.sipp_cpu / secs,
        );
    }
    let (calls, times) = match settings.direction {
        Direction::Incoming => ("received", "sipp's"),
        Direction::Outgoing => ("placed", "its own"),
    };
    for s in steps {
        println!(
            "rate {}: the user agent {calls} {} calls and saw {} end; {} set-up and {} tear-down times ({times}); run took {:.1} s",
            s.rate,
            s.ua_incoming,
            s.ua_terminated,
            s.setup.ms.len(),
            s.teardown.ms.len(),
            s.wall.as_secs_f64()
        );
    }
}
