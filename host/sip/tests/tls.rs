//! SIP over TLS between two of our user agents on loopback, with a CA and certificates made at
//! test time (rcgen): calls with reliable provisionals (100rel/PRACK), answered, ended by either
//! side, the connection reused for the next call; a caller that does not trust the callee's CA
//! fails its call quickly instead of hanging; garbage and failed handshakes on the TLS port are
//! dropped without harming the listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use camara_sip::{
    CallEvent, EndCause, HangupKind, NameAddr, OutgoingInvite, SipConfig, SipError, TimerConfig, TlsConfig, Transport,
    UaEvent, UserAgent,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::mpsc::error::TryRecvError;

mod common;
use common::pki::Pki;
use common::{STEP, TlsUa, expect, next_event, request, start_tls_ua};

const OFFER: &str =
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\n";
const ANSWER: &str =
    "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30002 RTP/AVP 0\r\n";

type Ua = TlsUa;

async fn tls_ua(tls: TlsConfig) -> Ua {
    start_tls_ua(tls, TimerConfig::default()).await
}

fn invite(callee: SocketAddr, next_hop: SocketAddr) -> OutgoingInvite {
    OutgoingInvite {
        call_id: None,
        request_uri: format!("sip:+818000000002@{callee};transport=tls"),
        from: NameAddr { display_name: Some("Alice".into()), uri: "sip:+818000000001@operator.test".into() },
        to: NameAddr { display_name: None, uri: "sip:+818000000002@operator.test".into() },
        p_asserted_identity: None,
        privacy: None,
        extra_headers: vec![],
        sdp: Some(OFFER.into()),
        extra_body_parts: vec![],
        next_hop,
        transport: Transport::Tls,
        credentials: None,
    }
}

async fn expect_status(
    events: &mut UnboundedReceiver<UaEvent>,
    call_id: &str,
    status: u16,
    reliable: bool,
) -> CallEvent {
    let event = next_event(events).await;
    assert_eq!(event.call_id, call_id);
    match &event.event {
        CallEvent::Response { status: s, reliable: r, .. } if *s == status && *r == reliable => event.event,
        other => panic!("expected {status} (reliable: {reliable}), got {other:?}"),
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).unwrap_or_default()
}

/// One call from `caller` to `callee` (the INVITE through `next_hop`): 100rel 180, PRACK,
/// answer, ACK, then BYE from the callee or the caller.
async fn call(caller: &mut Ua, callee: &mut Ua, next_hop: SocketAddr, bye_from_callee: bool) {
    let call_id = caller.ua.invite(invite(callee.addr, next_hop)).await.expect("invite");

    let incoming = next_event(&mut callee.events).await;
    assert_eq!(incoming.call_id, call_id);
    let CallEvent::Incoming { request_uri, headers, sdp, supports_100rel, .. } = incoming.event else {
        panic!("expected an incoming call, got {:?}", incoming.event);
    };
    // rsip writes the parameter value upper-case; URI parameters compare case-insensitively.
    assert_eq!(request_uri.to_ascii_lowercase(), format!("sip:+818000000002@{};transport=tls", callee.addr));
    assert!(header(&headers, "Via").starts_with("SIP/2.0/TLS "), "{headers:?}");
    assert!(header(&headers, "Contact").ends_with(&format!(":{};transport=tls>", caller.addr.port())), "{headers:?}");
    assert_eq!(sdp.as_deref(), Some(OFFER));
    assert!(supports_100rel);
    expect_status(&mut caller.events, &call_id, 100, false).await;

    callee.ua.provisional(&call_id, 180, None, true).await.expect("180");
    expect_status(&mut caller.events, &call_id, 180, true).await;
    expect(&mut callee.events, &call_id, request("PRACK")).await;

    callee.ua.accept(&call_id, Some(ANSWER.into())).await.expect("accept");
    let answer = expect_status(&mut caller.events, &call_id, 200, false).await;
    assert!(matches!(answer, CallEvent::Response { sdp: Some(ref s), .. } if s == ANSWER), "{answer:?}");
    expect(&mut callee.events, &call_id, request("ACK")).await;

    let (ender, other) = if bye_from_callee { (callee, caller) } else { (caller, callee) };
    assert_eq!(ender.ua.hangup(&call_id).await.expect("hangup"), HangupKind::Bye);
    expect(&mut other.events, &call_id, request("BYE")).await;
    expect(&mut other.events, &call_id, CallEvent::Terminated { cause: EndCause::Remote }).await;
    expect(&mut ender.events, &call_id, CallEvent::Terminated { cause: EndCause::Local }).await;
}

/// A plain TCP relay in front of a listener: it only forwards bytes, and counts the
/// connections made through it.
struct Forwarder {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Forwarder {
    async fn start(target: SocketAddr) -> Forwarder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Forwarder { addr, connections, task }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn tls_calls_with_prack_ended_from_either_side_reuse_the_connection() {
    let pki = Pki::new("sip");
    let mut alice = tls_ua(pki.tls_config(Some(&pki))).await;
    let mut bob = tls_ua(pki.tls_config(Some(&pki))).await;
    // The INVITEs go through the relay; what follows in the dialog goes to the Contact.
    let relay = Forwarder::start(bob.addr).await;

    call(&mut alice, &mut bob, relay.addr, false).await;
    call(&mut alice, &mut bob, relay.addr, true).await;
    assert_eq!(relay.connections.load(Ordering::SeqCst), 1, "the second INVITE reused the first connection");

    // And the other way round, on connections bob opens.
    let alice_addr = alice.addr;
    call(&mut bob, &mut alice, alice_addr, false).await;

    alice.ua.shutdown().await;
    bob.ua.shutdown().await;
}

/// The caller's call fails with `Timeout` well before Timer B (32 s): the failed handshake is
/// reported at once.
async fn untrusted_call_fails_fast(caller: &mut Ua, callee: &mut Ua) {
    let started = Instant::now();
    let call_id = caller.ua.invite(invite(callee.addr, callee.addr)).await.expect("invite");
    expect(&mut caller.events, &call_id, CallEvent::Timeout).await;
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(callee.events.try_recv().unwrap_err(), TryRecvError::Empty, "no call reached the callee");
}

/// `caller` calls `callee`, which refuses; the call ends cleanly.
async fn refused_call(caller: &mut Ua, callee: &mut Ua) {
    let call_id = caller.ua.invite(invite(callee.addr, callee.addr)).await.expect("invite");
    let incoming = next_event(&mut callee.events).await;
    assert!(matches!(incoming.event, CallEvent::Incoming { .. }), "{incoming:?}");
    callee.ua.reject(&call_id, 486, "Busy Here").await.expect("reject");
    expect_status(&mut caller.events, &call_id, 100, false).await;
    expect_status(&mut caller.events, &call_id, 486, false).await;
    expect(&mut caller.events, &call_id, CallEvent::Terminated { cause: EndCause::Rejected { status: 486 } }).await;
    expect(&mut callee.events, &call_id, CallEvent::Terminated { cause: EndCause::Local }).await;
}

#[tokio::test]
async fn a_caller_that_does_not_trust_the_ca_fails_the_call() {
    let operator = Pki::new("operator");
    let other = Pki::new("other");
    let mut bob = tls_ua(operator.tls_config(Some(&operator))).await;

    // Trusts another CA: the handshake fails on bob's certificate.
    let mut mallory = tls_ua(other.tls_config(Some(&other))).await;
    untrusted_call_fails_fast(&mut mallory, &mut bob).await;
    // Trusts nothing: no connection is even attempted.
    let mut carol = tls_ua(operator.tls_config(None)).await;
    untrusted_call_fails_fast(&mut carol, &mut bob).await;

    // The right CA but the wrong name: refused unless name checks are off.
    let mut dave = tls_ua(operator.tls_config(Some(&operator)).server_name("sbc.operator.test").unwrap()).await;
    untrusted_call_fails_fast(&mut dave, &mut bob).await;
    let mut erin = tls_ua(
        operator.tls_config(Some(&operator)).server_name("sbc.operator.test").unwrap().verify_server_name(false),
    )
    .await;
    refused_call(&mut erin, &mut bob).await;
    // ...which does not make another CA acceptable.
    let mut frank = tls_ua(other.tls_config(Some(&other)).verify_server_name(false)).await;
    untrusted_call_fails_fast(&mut frank, &mut bob).await;

    for ua in [mallory, carol, dave, erin, frank, bob] {
        ua.ua.shutdown().await;
    }
}

#[tokio::test]
async fn a_peer_that_never_completes_the_handshake_times_the_call_out() {
    let pki = Pki::new("sip");
    // Accepts TCP and then says nothing, like a dead TLS stack behind a live port.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    // T1 of 50 ms: the connect timeout (64*T1) is 3.2 s instead of 32 s.
    let timers = TimerConfig { t1: Duration::from_millis(50), ..TimerConfig::default() };
    let mut alice = start_tls_ua(pki.tls_config(Some(&pki)), timers).await;
    let started = Instant::now();
    let call_id = alice.ua.invite(invite(silent_addr, silent_addr)).await.expect("invite");
    expect(&mut alice.events, &call_id, CallEvent::Timeout).await;
    assert!(started.elapsed() >= Duration::from_secs(3), "took {:?}", started.elapsed());
    held.abort();
    alice.ua.shutdown().await;
}

/// Reads until the peer closes (EOF or reset); panics if it keeps the connection open.
async fn closed_by_peer(stream: &mut (impl AsyncReadExt + Unpin)) {
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(STEP, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the connection was not closed");
}

#[tokio::test]
async fn garbage_on_the_tls_port_is_dropped_and_the_listener_keeps_serving() {
    let pki = Pki::new("sip");
    let mut bob = tls_ua(pki.tls_config(Some(&pki))).await;

    // Plain SIP instead of a ClientHello.
    let mut plain = TcpStream::connect(bob.addr).await.unwrap();
    plain.write_all(b"OPTIONS sip:bob@127.0.0.1 SIP/2.0\r\nContent-Length: 0\r\n\r\n").await.unwrap();
    closed_by_peer(&mut plain).await;

    // A good handshake, then a stream that cannot be framed.
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for ca in rustls::pki_types::CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
        roots.add(ca.unwrap()).unwrap();
    }
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = TcpStream::connect(bob.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector.connect(name, tcp).await.expect("handshake with the listener");
    tls.write_all(b"OPTIONS sip:bob@127.0.0.1 SIP/2.0\r\nContent-Length: many\r\n\r\n").await.unwrap();
    tls.flush().await.unwrap();
    closed_by_peer(&mut tls).await;

    assert_eq!(bob.events.try_recv().unwrap_err(), TryRecvError::Empty, "nothing reached the SIP layer");
    let mut alice = tls_ua(pki.tls_config(Some(&pki))).await;
    refused_call(&mut alice, &mut bob).await;
    alice.ua.shutdown().await;
    bob.ua.shutdown().await;
}

#[tokio::test]
async fn a_tls_listener_and_a_tls_configuration_go_together() {
    let pki = Pki::new("sip");
    let config = SipConfig {
        udp_listen: Some("127.0.0.1:0".parse().unwrap()),
        tcp_listen: None,
        tls_listen: Some("127.0.0.1:0".parse().unwrap()),
        tls: None,
        advertised_host: None,
        user_agent: "camara-sip-tls-test".into(),
        timers: TimerConfig::default(),
    };
    let no_tls = UserAgent::start(config.clone()).await;
    assert!(matches!(no_tls, Err(SipError::Config(_))), "{no_tls:?}");
    let no_listener =
        UserAgent::start(SipConfig { tls_listen: None, tls: Some(pki.tls_config(None)), ..config.clone() }).await;
    assert!(matches!(no_listener, Err(SipError::Config(_))), "{no_listener:?}");

    // Without TLS configured, a TLS call is refused up front.
    let (ua, _events) = UserAgent::start(SipConfig { tls_listen: None, ..config }).await.expect("UDP only");
    let target: SocketAddr = "127.0.0.1:5061".parse().unwrap();
    let refused = ua.invite(invite(target, target)).await;
    assert!(matches!(refused, Err(SipError::TransportUnavailable(Transport::Tls))), "{refused:?}");
    ua.shutdown().await;
}

#[test]
fn bad_pem_is_a_typed_error() {
    use camara_sip::TlsConfigError;
    let pki = Pki::new("sip");
    let err = TlsConfig::new(b"not a certificate", pki.key_pem.as_bytes()).unwrap_err();
    assert!(matches!(err, TlsConfigError::NoCertificate), "{err:?}");
    let err = TlsConfig::new(pki.cert_pem.as_bytes(), pki.cert_pem.as_bytes()).unwrap_err();
    assert!(matches!(err, TlsConfigError::NoPrivateKey), "{err:?}");
    let other = Pki::new("other");
    let err = TlsConfig::new(pki.cert_pem.as_bytes(), other.key_pem.as_bytes()).unwrap_err();
    assert!(matches!(err, TlsConfigError::Rejected(_)), "{err:?}");
    let corrupt = pki.cert_pem.replace("MII", "M!I");
    let err = TlsConfig::new(corrupt.as_bytes(), pki.key_pem.as_bytes()).unwrap_err();
    assert!(matches!(err, TlsConfigError::BadCertificate(_) | TlsConfigError::Rejected(_)), "{err:?}");
    let err = pki.tls_config(None).trust_pem(b"").unwrap_err();
    assert!(matches!(err, TlsConfigError::NoCertificate), "{err:?}");
    let err = pki.tls_config(None).server_name("not a name!").unwrap_err();
    assert!(matches!(err, TlsConfigError::BadServerName(_)), "{err:?}");
}
