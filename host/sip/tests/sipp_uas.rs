//! The user agent answering calls from a real SIP peer: sipp playing the
//! calling network. Skipped (with a message) when `sipp` is not installed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use camara_sip::{CallEvent, SipConfig, TimerConfig, Transport, UaEvent, UserAgent};
use tokio::process::{Child, Command};
use tokio::sync::mpsc::UnboundedReceiver;

/// Upper bound for anything to happen; only a guard against hanging.
const STEP: Duration = Duration::from_secs(15);

const ANSWER_SDP: &str = "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30002 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

fn sipp_available() -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join("sipp").is_file()));
    if !found {
        println!("sipp not found on PATH; skipping");
    }
    found
}

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp").join(name)
}

/// A port that is free now; sipp binds it right after.
fn free_port(transport: Transport) -> u16 {
    match transport {
        Transport::Udp => std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(),
        Transport::Tcp => std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(),
    }
}

struct Sipp {
    child: Child,
    error_file: PathBuf,
}

impl Sipp {
    /// sipp as the caller, sending one call to `target`.
    fn call(scenario_file: &str, transport: Transport, target: SocketAddr) -> Sipp {
        let port = free_port(transport);
        let error_file = std::env::temp_dir().join(format!("camara-sip-uas-{}-{port}-errors.log", std::process::id()));
        let child = Command::new("sipp")
            .arg(target.to_string())
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
        Sipp { child, error_file }
    }

    async fn assert_success(self) {
        let output = tokio::time::timeout(Duration::from_secs(30), self.child.wait_with_output())
            .await
            .expect("sipp did not exit")
            .expect("wait for sipp");
        let errors = std::fs::read_to_string(&self.error_file).unwrap_or_default();
        let _ = std::fs::remove_file(&self.error_file);
        assert!(
            output.status.success(),
            "sipp failed ({}):\n{}\n{errors}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

async fn start_ua() -> (UserAgent, UnboundedReceiver<UaEvent>) {
    // RUST_LOG=camara_sip=debug shows the SIP side when a run fails.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    UserAgent::start(SipConfig {
        udp_listen: Some("127.0.0.1:0".parse().unwrap()),
        tcp_listen: Some("127.0.0.1:0".parse().unwrap()),
        advertised_host: None,
        user_agent: "camara-sip-test".into(),
        timers: TimerConfig::default(),
    })
    .await
    .expect("start user agent")
}

async fn next_event(events: &mut UnboundedReceiver<UaEvent>) -> UaEvent {
    tokio::time::timeout(STEP, events.recv()).await.expect("no call event in time").expect("event channel closed")
}

/// Waits for the Incoming event of a new call; returns its Call-ID and the event.
async fn incoming(events: &mut UnboundedReceiver<UaEvent>) -> (String, CallEvent) {
    let UaEvent { call_id, event } = next_event(events).await;
    assert!(matches!(event, CallEvent::Incoming { .. }), "{event:?}");
    (call_id, event)
}

async fn expect(events: &mut UnboundedReceiver<UaEvent>, call_id: &str, expected: CallEvent) {
    let event = next_event(events).await;
    assert_eq!(event.call_id, call_id);
    assert_eq!(event.event, expected);
}

fn request(method: &str) -> CallEvent {
    CallEvent::Request { method: method.into(), reason: None, sdp: None }
}

async fn answered_call_with_prack(transport: Transport) {
    if !sipp_available() {
        return;
    }
    let (ua, mut events) = start_ua().await;
    let sipp = Sipp::call("uac_100rel.xml", transport, ua.local_addr(transport).unwrap());

    let (call_id, event) = incoming(&mut events).await;
    let CallEvent::Incoming { request_uri, from, to, p_asserted_identity, sdp, supports_100rel, .. } = event else {
        unreachable!()
    };
    assert!(request_uri.starts_with("sip:+818000000001@127.0.0.1:"), "{request_uri}");
    assert_eq!(from.display_name.as_deref(), Some("Bob"));
    assert_eq!(from.uri, "sip:+818000000002@tn.operator.com;user=phone");
    assert_eq!(to.uri, "sip:+818000000001@operator.com;user=phone");
    assert_eq!(p_asserted_identity.map(|p| p.uri).as_deref(), Some("tel:+818000000002"));
    assert!(sdp.is_some_and(|s| s.contains("m=audio")));
    assert!(supports_100rel);

    ua.provisional(&call_id, 183, Some(ANSWER_SDP.into()), true).await.expect("183");
    expect(&mut events, &call_id, request("PRACK")).await;
    ua.provisional(&call_id, 180, None, true).await.expect("180");
    expect(&mut events, &call_id, request("PRACK")).await;
    ua.accept(&call_id, Some(ANSWER_SDP.into())).await.expect("accept");
    expect(&mut events, &call_id, request("ACK")).await;
    expect(&mut events, &call_id, request("BYE")).await;
    expect(&mut events, &call_id, CallEvent::Terminated).await;
    assert!(ua.hangup(&call_id).await.is_err(), "the call is over");

    sipp.assert_success().await;
    ua.shutdown().await;
}

#[tokio::test]
async fn udp_incoming_call_with_reliable_provisionals_answered_then_remote_bye() {
    answered_call_with_prack(Transport::Udp).await;
}

#[tokio::test]
async fn tcp_incoming_call_with_reliable_provisionals_answered_then_remote_bye() {
    answered_call_with_prack(Transport::Tcp).await;
}

async fn cancelled_by_the_caller(transport: Transport) {
    if !sipp_available() {
        return;
    }
    let (ua, mut events) = start_ua().await;
    let sipp = Sipp::call("uac_cancel.xml", transport, ua.local_addr(transport).unwrap());
    let (call_id, event) = incoming(&mut events).await;
    assert!(matches!(event, CallEvent::Incoming { supports_100rel: false, .. }));
    // The caller did not offer 100rel: the 180 goes unreliably.
    ua.provisional(&call_id, 180, None, true).await.expect("180");
    expect(&mut events, &call_id, request("CANCEL")).await;
    expect(&mut events, &call_id, CallEvent::Terminated).await;
    assert!(ua.accept(&call_id, None).await.is_err(), "too late to answer");

    sipp.assert_success().await;
    ua.shutdown().await;
}

#[tokio::test]
async fn udp_incoming_call_cancelled_while_ringing() {
    cancelled_by_the_caller(Transport::Udp).await;
}

#[tokio::test]
async fn tcp_incoming_call_cancelled_while_ringing() {
    cancelled_by_the_caller(Transport::Tcp).await;
}

#[tokio::test]
async fn udp_incoming_call_rejected_busy() {
    if !sipp_available() {
        return;
    }
    let (ua, mut events) = start_ua().await;
    let sipp = Sipp::call("uac_rejected.xml", Transport::Udp, ua.local_addr(Transport::Udp).unwrap());
    let (call_id, _) = incoming(&mut events).await;
    ua.reject(&call_id, 486, "Busy Here").await.expect("reject");
    expect(&mut events, &call_id, CallEvent::Terminated).await;

    sipp.assert_success().await;
    ua.shutdown().await;
}
