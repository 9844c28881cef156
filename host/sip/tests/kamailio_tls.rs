//! SIP over TLS against a real proxy: Kamailio (Debian's `kamailio` with `kamailio-tls-modules`,
//! OpenSSL underneath), started here on a free loopback port with
//! `tests/kamailio_tls/kamailio.cfg` and a CA and certificate made at test time.
//!
//! Bob registers over TLS (saved in Kamailio's location table); Alice's INVITE for Bob's address
//! of record goes to Kamailio over TLS, which looks Bob up and opens a TLS connection to Bob's
//! listener (verifying Bob's certificate against the test CA), record-routing the dialog. PRACK,
//! ACK and BYE follow the route set through Kamailio; the first call is ended by Bob (his own
//! connection to Kamailio), the second by Alice (reusing hers). Fails (not skips) in CI when
//! Kamailio or its TLS module is missing.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use camara_sip::{
    CallEvent, EndCause, HangupKind, NameAddr, OutgoingInvite, RegisterRequest, RegistrationEvent, TimerConfig,
    Transport, UaEvent,
};
use tokio::sync::mpsc::UnboundedReceiver;

mod common;
use common::pki::Pki;
use common::{TlsUa, expect, free_port, next_event, peer_installed, port_taken, request, start_tls_ua};

const DOMAIN: &str = "operator.test";
const OFFER: &str =
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\n";
const ANSWER: &str =
    "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30002 RTP/AVP 0\r\n";

fn kamailio_binary() -> Option<PathBuf> {
    ["/usr/sbin/kamailio", "/usr/local/sbin/kamailio"].into_iter().map(PathBuf::from).find(|p| p.exists())
}

/// Debian installs the modules under /usr/lib/<multiarch triplet>/kamailio/modules.
fn tls_module() -> Option<PathBuf> {
    let multiarch = std::fs::read_dir("/usr/lib").into_iter().flatten().flatten().map(|e| e.path());
    multiarch
        .chain([PathBuf::from("/usr/lib"), PathBuf::from("/usr/local/lib64"), PathBuf::from("/usr/local/lib")])
        .map(|dir| dir.join("kamailio/modules/tls.so"))
        .find(|p| p.exists())
}

/// Kamailio in the foreground (`-DD -E`), stopped with SIGTERM (which ends its children too)
/// when dropped; its files live in a directory of their own.
struct Kamailio {
    addr: SocketAddr,
    child: std::process::Child,
    dir: PathBuf,
}

impl Kamailio {
    async fn start(pki: &Pki) -> Kamailio {
        let port = free_port(Transport::Tls);
        let dir = std::env::temp_dir().join(format!("camara-sip-kamailio-tls-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let here = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/kamailio_tls");
        let fill = |name: &str| {
            let template = std::fs::read_to_string(here.join(name)).unwrap();
            let text = template
                .replace("@PORT@", &port.to_string())
                .replace("@DOMAIN@", DOMAIN)
                .replace("@DIR@", dir.to_str().unwrap());
            std::fs::write(dir.join(name), text).unwrap();
        };
        fill("kamailio.cfg");
        fill("tls.cfg");
        std::fs::write(dir.join("ca.pem"), &pki.ca_pem).unwrap();
        std::fs::write(dir.join("cert.pem"), &pki.cert_pem).unwrap();
        std::fs::write(dir.join("key.pem"), &pki.key_pem).unwrap();

        let child = std::process::Command::new(kamailio_binary().expect("kamailio installed"))
            .args(["-DD", "-E", "-m", "64", "-M", "8", "-f"])
            .arg(dir.join("kamailio.cfg"))
            .arg("-Y")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("kamailio.log")).unwrap())
            .spawn()
            .expect("kamailio starts");
        let mut kamailio = Kamailio { addr: SocketAddr::from(([127, 0, 0, 1], port)), child, dir };
        // Ready once its TLS listener is bound and its workers started.
        for _ in 0..200 {
            if let Ok(Some(status)) = kamailio.child.try_wait() {
                panic!("kamailio exited ({status}):\n{}", kamailio.log());
            }
            if port_taken(Transport::Tls, port) {
                tokio::time::sleep(Duration::from_millis(300)).await;
                return kamailio;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("kamailio did not listen on {}:\n{}", kamailio.addr, kamailio.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("kamailio.log")).unwrap_or_default()
    }

    /// The lines of our `xlog` in the route script.
    fn script_lines(&self) -> Vec<String> {
        self.log().lines().filter(|l| l.contains("<script>")).map(str::to_string).collect()
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = std::process::Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
            for _ in 0..50 {
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("kamailio log:\n{}", self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn tls_ua(pki: &Pki) -> TlsUa {
    start_tls_ua(pki.tls_config(Some(pki)), TimerConfig::default()).await
}

/// The next response to the INVITE that is not 100 Trying (which Kamailio and the callee may
/// each send, or not, depending on timing).
async fn next_status(events: &mut UnboundedReceiver<UaEvent>, call_id: &str) -> (u16, bool, Option<String>) {
    loop {
        let event = next_event(events).await;
        assert_eq!(event.call_id, call_id);
        match event.event {
            CallEvent::Response { status: 100, .. } => continue,
            CallEvent::Response { status, reliable, sdp, .. } => return (status, reliable, sdp),
            other => panic!("expected a response, got {other:?}"),
        }
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
}

async fn call_through(kamailio: &Kamailio, alice: &mut TlsUa, bob: &mut TlsUa, bye_from_bob: bool) {
    let call_id = alice
        .ua
        .invite(OutgoingInvite {
            call_id: None,
            request_uri: format!("sip:bob@{DOMAIN}"),
            from: NameAddr { display_name: Some("Alice".into()), uri: format!("sip:alice@{DOMAIN}") },
            to: NameAddr { display_name: Some("Bob".into()), uri: format!("sip:bob@{DOMAIN}") },
            p_asserted_identity: None,
            privacy: None,
            extra_headers: vec![],
            sdp: Some(OFFER.into()),
            extra_body_parts: vec![],
            next_hop: kamailio.addr,
            transport: Transport::Tls,
            credentials: None,
        })
        .await
        .expect("invite");

    let incoming = next_event(&mut bob.events).await;
    assert_eq!(incoming.call_id, call_id);
    let CallEvent::Incoming { request_uri, headers, sdp, supports_100rel, .. } = incoming.event else {
        panic!("expected an incoming call, got {:?}", incoming.event);
    };
    // Kamailio rewrote the request-URI to Bob's registered Contact and sent it over TLS.
    assert_eq!(request_uri.to_ascii_lowercase(), format!("sip:bob@{};transport=tls", bob.addr));
    let vias = header(&headers, "Via");
    assert!(vias.first().is_some_and(|v| v.starts_with(&format!("SIP/2.0/TLS {}", kamailio.addr))), "{vias:?}");
    let record_route = header(&headers, "Record-Route");
    assert!(
        record_route.iter().any(|r| r.contains(&kamailio.addr.to_string()) && r.contains("transport=tls")),
        "{record_route:?}"
    );
    assert_eq!(sdp.as_deref(), Some(OFFER));
    assert!(supports_100rel);

    bob.ua.provisional(&call_id, 180, None, true).await.expect("180");
    assert_eq!(next_status(&mut alice.events, &call_id).await, (180, true, None));
    expect(&mut bob.events, &call_id, request("PRACK")).await;
    bob.ua.accept(&call_id, Some(ANSWER.into())).await.expect("accept");
    assert_eq!(next_status(&mut alice.events, &call_id).await, (200, false, Some(ANSWER.into())));
    expect(&mut bob.events, &call_id, request("ACK")).await;

    let (ender, other) = if bye_from_bob { (bob, alice) } else { (alice, bob) };
    assert_eq!(ender.ua.hangup(&call_id).await.expect("hangup"), HangupKind::Bye);
    expect(&mut other.events, &call_id, request("BYE")).await;
    expect(&mut other.events, &call_id, CallEvent::Terminated { cause: EndCause::Remote }).await;
    expect(&mut ender.events, &call_id, CallEvent::Terminated { cause: EndCause::Local }).await;
}

#[tokio::test]
async fn register_and_call_through_kamailio_over_tls() {
    if !peer_installed("kamailio", kamailio_binary().is_some())
        || !peer_installed("kamailio's TLS module (kamailio-tls-modules)", tls_module().is_some())
    {
        return;
    }
    let pki = Pki::new("kamailio-tls");
    let kamailio = Kamailio::start(&pki).await;
    let mut alice = tls_ua(&pki).await;
    let mut bob = tls_ua(&pki).await;

    let binding = bob
        .ua
        .register(RegisterRequest {
            registrar: kamailio.addr,
            transport: Transport::Tls,
            domain: DOMAIN.into(),
            aor: format!("sip:bob@{DOMAIN}"),
            contact_user: "bob".into(),
            username: "bob".into(),
            password: "unused".into(),
            expires: 300,
        })
        .await
        .expect("register");
    let registered = next_event(&mut bob.events).await;
    assert_eq!(registered.call_id, binding);
    assert!(
        matches!(registered.event, CallEvent::Registration(RegistrationEvent::Registered { expires }) if expires > 0),
        "{registered:?}"
    );
    let lines = kamailio.script_lines();
    assert!(
        lines.iter().any(|l| l.contains("REGISTER of sip:bob@operator.test over tls")
            && l.contains(&format!("{};transport=tls", bob.addr))),
        "{lines:#?}"
    );

    call_through(&kamailio, &mut alice, &mut bob, true).await;
    call_through(&kamailio, &mut alice, &mut bob, false).await;

    let lines = kamailio.script_lines();
    for method in ["PRACK", "ACK", "BYE"] {
        let routed = lines.iter().filter(|l| l.contains(&format!("in-dialog {method} loose-routed")));
        assert!(routed.clone().count() >= 2 && routed.clone().all(|l| l.ends_with("over tls")), "{method}: {lines:#?}");
    }

    bob.ua.unregister(&binding).await.expect("unregister");
    expect(&mut bob.events, &binding, CallEvent::Registration(RegistrationEvent::Unregistered)).await;

    alice.ua.shutdown().await;
    bob.ua.shutdown().await;
}
