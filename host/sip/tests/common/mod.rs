//! What the sipp-driven tests share: finding sipp, free ports, running a scenario, a user agent
//! on loopback.

#![allow(dead_code)] // each test binary uses its own part

pub mod pki;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use camara_sip::{CallEvent, EndCause, SipConfig, TimerConfig, TlsConfig, Transport, UaEvent, UserAgent};
use tokio::process::{Child, Command};
use tokio::sync::mpsc::UnboundedReceiver;

/// Upper bound for anything to happen; only a guard against hanging.
pub const STEP: Duration = Duration::from_secs(15);

/// The next event of any call, within [`STEP`].
pub async fn next_event(events: &mut UnboundedReceiver<UaEvent>) -> UaEvent {
    tokio::time::timeout(STEP, events.recv()).await.expect("no call event in time").expect("event channel closed")
}

/// The next event must be `expected`, for `call_id`.
pub async fn expect(events: &mut UnboundedReceiver<UaEvent>, call_id: &str, expected: CallEvent) {
    let event = next_event(events).await;
    assert_eq!(event.call_id, call_id);
    assert_eq!(event.event.without_headers(), expected);
}

/// How a request from the peer without a Reason or SDP is reported.
pub fn request(method: &str) -> CallEvent {
    CallEvent::Request { method: method.into(), reason: None, sdp: None, headers: vec![] }
}

pub fn sipp_available() -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join("sipp").is_file()));
    if !found {
        println!("sipp not found on PATH; skipping");
    }
    found
}

/// Whether a real peer a test needs is installed. In CI (`CI` set) a missing peer is a failure,
/// not a skip: CI runs tests/install-peers.sh first.
pub fn peer_installed(what: &str, installed: bool) -> bool {
    if !installed {
        assert!(std::env::var_os("CI").is_none(), "{what} is missing: run tests/install-peers.sh");
        println!("{what} is not installed (tests/install-peers.sh): skipped");
    }
    installed
}

pub fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp").join(name)
}

/// A port that is free now; sipp binds it right after.
pub fn free_port(transport: Transport) -> u16 {
    match transport {
        Transport::Udp => std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(),
        Transport::Tcp | Transport::Tls => {
            std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
        }
    }
}

pub fn port_taken(transport: Transport, port: u16) -> bool {
    match transport {
        Transport::Udp => std::net::UdpSocket::bind(("127.0.0.1", port)).is_err(),
        Transport::Tcp | Transport::Tls => std::net::TcpListener::bind(("127.0.0.1", port)).is_err(),
    }
}

pub struct Sipp {
    child: Child,
    pub addr: SocketAddr,
    error_file: PathBuf,
}

impl Sipp {
    /// sipp answering, on a free port, once it holds the port.
    pub async fn start(scenario_file: &str, transport: Transport) -> Sipp {
        let sipp = Sipp::spawn(scenario_file, transport, None);
        let port = sipp.addr.port();
        // Readiness, not an assertion: wait until sipp holds its port.
        let ready = tokio::time::timeout(STEP, async {
            while !port_taken(transport, port) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(ready.is_ok(), "sipp did not bind port {port}");
        sipp
    }

    /// sipp as the caller, sending one call to `target`.
    pub fn call(scenario_file: &str, transport: Transport, target: SocketAddr) -> Sipp {
        Sipp::spawn(scenario_file, transport, Some(target))
    }

    fn spawn(scenario_file: &str, transport: Transport, target: Option<SocketAddr>) -> Sipp {
        let port = free_port(transport);
        let error_file = std::env::temp_dir().join(format!("camara-sip-{}-{port}-errors.log", std::process::id()));
        let mut command = Command::new("sipp");
        if let Some(target) = target {
            command.arg(target.to_string());
        }
        let child = command
            .arg("-sf")
            .arg(scenario(scenario_file))
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .args(["-t", if transport == Transport::Udp { "u1" } else { "t1" }])
            .args(["-m", "1", "-timeout", "20s", "-timeout_error", "-nostdin"])
            .arg("-trace_err")
            .arg("-error_file")
            .arg(&error_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn sipp");
        Sipp { child, addr: SocketAddr::from(([127, 0, 0, 1], port)), error_file }
    }

    pub async fn assert_success(self) {
        let (success, report) = self.finish().await;
        assert!(success, "sipp failed: {report}");
    }

    /// Waits for sipp to exit: whether its scenario passed, and its exit status, stderr and error log.
    pub async fn finish(self) -> (bool, String) {
        let output = tokio::time::timeout(Duration::from_secs(30), self.child.wait_with_output())
            .await
            .expect("sipp did not exit")
            .expect("wait for sipp");
        let errors = std::fs::read_to_string(&self.error_file).unwrap_or_default();
        let _ = std::fs::remove_file(&self.error_file);
        let report = format!("({})\n{}\n{errors}", output.status, String::from_utf8_lossy(&output.stderr));
        (output.status.success(), report)
    }
}

pub async fn start_ua() -> (UserAgent, UnboundedReceiver<UaEvent>) {
    start_ua_with(TimerConfig::default()).await
}

pub async fn start_ua_with(timers: TimerConfig) -> (UserAgent, UnboundedReceiver<UaEvent>) {
    // RUST_LOG=camara_sip=debug shows the SIP side when a run fails.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    UserAgent::start(SipConfig {
        udp_listen: Some("127.0.0.1:0".parse().unwrap()),
        tcp_listen: Some("127.0.0.1:0".parse().unwrap()),
        tls_listen: None,
        tls: None,
        advertised_host: None,
        user_agent: "camara-sip-test".into(),
        timers,
    })
    .await
    .expect("start user agent")
}

/// A user agent listening on TLS only, so nothing can silently fall back to UDP or TCP.
pub struct TlsUa {
    pub ua: UserAgent,
    pub events: UnboundedReceiver<UaEvent>,
    pub addr: SocketAddr,
}

pub async fn start_tls_ua(tls: TlsConfig, timers: TimerConfig) -> TlsUa {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let (ua, events) = UserAgent::start(SipConfig {
        udp_listen: None,
        tcp_listen: None,
        tls_listen: Some("127.0.0.1:0".parse().unwrap()),
        tls: Some(tls),
        advertised_host: None,
        user_agent: "camara-sip-tls-test".into(),
        timers,
    })
    .await
    .expect("start user agent");
    let addr = ua.local_addr(Transport::Tls).expect("TLS listener");
    TlsUa { ua, events, addr }
}

/// The callee's side of `uac_100rel.xml` once the call is in: reliable 183 (with `sdp`) and 180,
/// each PRACKed, the 200 ACKed, then the caller's BYE ends the call.
pub async fn answer_with_prack_until_bye(
    ua: &UserAgent,
    events: &mut UnboundedReceiver<UaEvent>,
    call_id: &str,
    sdp: &str,
) {
    ua.provisional(call_id, 183, Some(sdp.into()), true).await.expect("183");
    expect(events, call_id, request("PRACK")).await;
    ua.provisional(call_id, 180, None, true).await.expect("180");
    expect(events, call_id, request("PRACK")).await;
    ua.accept(call_id, Some(sdp.into())).await.expect("accept");
    expect(events, call_id, request("ACK")).await;
    expect(events, call_id, request("BYE")).await;
    expect(events, call_id, CallEvent::Terminated { cause: EndCause::Remote }).await;
}
