//! Registration against a real SIP peer: sipp playing a registrar that
//! challenges with HTTP Digest. Skipped (with a message) when `sipp` is not
//! installed. sipp only checks that the Authorization is there and well
//! formed; the digest value is checked against the RFC 7616 vectors in the
//! unit tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use camara_sip::{
    CallEvent, RegisterRequest, RegistrationEvent, SipConfig, TimerConfig, Transport, UaEvent, UserAgent,
};
use tokio::process::{Child, Command};
use tokio::sync::mpsc::UnboundedReceiver;

/// Upper bound for anything to happen; only a guard against hanging.
const STEP: Duration = Duration::from_secs(15);

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

fn port_taken(transport: Transport, port: u16) -> bool {
    match transport {
        Transport::Udp => std::net::UdpSocket::bind(("127.0.0.1", port)).is_err(),
        Transport::Tcp => std::net::TcpListener::bind(("127.0.0.1", port)).is_err(),
    }
}

struct Sipp {
    child: Child,
    addr: SocketAddr,
    error_file: PathBuf,
}

impl Sipp {
    async fn start(scenario_file: &str, transport: Transport) -> Sipp {
        let port = free_port(transport);
        let error_file = std::env::temp_dir().join(format!("camara-sip-{}-{port}-errors.log", std::process::id()));
        let child = Command::new("sipp")
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
        // Readiness, not an assertion: wait until sipp holds its port.
        let ready = tokio::time::timeout(STEP, async {
            while !port_taken(transport, port) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(ready.is_ok(), "sipp did not bind port {port}");
        Sipp { child, addr: SocketAddr::from(([127, 0, 0, 1], port)), error_file }
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

async fn next_registration_event(events: &mut UnboundedReceiver<UaEvent>, binding: &str) -> RegistrationEvent {
    let event = tokio::time::timeout(STEP, events.recv())
        .await
        .expect("no registration event in time")
        .expect("event channel closed");
    assert_eq!(event.call_id, binding);
    match event.event {
        CallEvent::Registration(e) => e,
        other => panic!("expected a registration event, got {other:?}"),
    }
}

async fn register_with_digest_then_unregister(transport: Transport) {
    if !sipp_available() {
        return;
    }
    let (ua, mut events) = start_ua().await;
    let sipp = Sipp::start("uas_register_digest.xml", transport).await;

    let binding = ua
        .register(RegisterRequest {
            registrar: sipp.addr,
            transport,
            domain: "operator.com".into(),
            aor: "sip:+818000000001@operator.com".into(),
            contact_user: "+818000000001".into(),
            username: "+818000000001".into(),
            password: "secret".into(),
            expires: 3600,
        })
        .await
        .expect("register");
    // The Contact's expires parameter wins over the Expires header.
    assert_eq!(next_registration_event(&mut events, &binding).await, RegistrationEvent::Registered { expires: 1200 });

    ua.unregister(&binding).await.expect("unregister");
    assert_eq!(next_registration_event(&mut events, &binding).await, RegistrationEvent::Unregistered);
    assert!(ua.unregister(&binding).await.is_err(), "a removed binding cannot be unregistered again");

    sipp.assert_success().await;
    ua.shutdown().await;
}

#[tokio::test]
async fn udp_register_with_digest_then_unregister() {
    register_with_digest_then_unregister(Transport::Udp).await;
}

#[tokio::test]
async fn tcp_register_with_digest_then_unregister() {
    register_with_digest_then_unregister(Transport::Tcp).await;
}
