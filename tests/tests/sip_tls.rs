//! SIP over TLS through the gateway's configuration: `[sip] tls_listen`, `[sip.tls]` PEM files
//! (a CA and a loopback certificate made here with rcgen) and `next_hop_transport = "tls"`.
//! The network is a SIP user agent listening on TLS only (the project's SIP stack, which
//! `host/sip/tests/kamailio_tls.rs` checks against Kamailio's TLS module): a device's call
//! reaches it over TLS, is answered, and the device's hang-up arrives as a BYE on TLS. A PEM
//! file that cannot be used stops the gateway with an error naming it.

use std::time::Duration;

use camara_gateway::config::{SipTlsSettings, SipTransportName};
use camara_gateway_tests::*;
use camara_sip::{CallEvent, EndCause, SipConfig, TimerConfig, TlsConfig, Transport, UaEvent, UserAgent};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use tokio::sync::mpsc::UnboundedReceiver;

const WAIT: Duration = Duration::from_secs(15);
const NETWORK_SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
    m=audio 30400 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n";

/// A CA and a certificate it issued for 127.0.0.1, in PEM files under `dir`.
struct Pki {
    ca: std::path::PathBuf,
    certificate: std::path::PathBuf,
    private_key: std::path::PathBuf,
}

impl Pki {
    fn new(dir: &TempDir) -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "gateway test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf =
            CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().signed_by(&key, &ca, &ca_key).unwrap();
        let write = |name: &str, pem: String| {
            let path = dir.0.join(name);
            std::fs::write(&path, pem).unwrap();
            path
        };
        Pki {
            ca: write("ca.pem", ca.pem()),
            certificate: write("cert.pem", leaf.pem()),
            private_key: write("key.pem", key.serialize_pem()),
        }
    }

    fn settings(&self) -> SipTlsSettings {
        SipTlsSettings {
            certificate: self.certificate.clone(),
            private_key: self.private_key.clone(),
            ca: Some(self.ca.clone()),
            server_name: None,
            verify_server_name: true,
        }
    }

    fn sip_config(&self) -> TlsConfig {
        let pem = |path: &std::path::Path| std::fs::read(path).unwrap();
        TlsConfig::new(&pem(&self.certificate), &pem(&self.private_key)).unwrap().trust_pem(&pem(&self.ca)).unwrap()
    }
}

async fn next_event(events: &mut UnboundedReceiver<UaEvent>) -> UaEvent {
    tokio::time::timeout(WAIT, events.recv()).await.expect("no SIP event in time").expect("user agent running")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_call_reaches_a_tls_only_network_and_ends_there() {
    init_logs();
    let dir = TempDir::new("sip-tls");
    let pki = Pki::new(&dir);
    let (network, mut network_events) = UserAgent::start(SipConfig {
        udp_listen: None,
        tcp_listen: None,
        tls_listen: Some("127.0.0.1:0".parse().unwrap()),
        tls: Some(pki.sip_config()),
        advertised_host: None,
        user_agent: "tls-network".into(),
        timers: TimerConfig::default(),
    })
    .await
    .expect("network user agent");
    let network_addr = network.local_addr(Transport::Tls).unwrap();

    let mut config = gateway_config(Some(network_addr), SipTransportName::Udp);
    config.sip.tls_listen = Some("127.0.0.1:0".parse().unwrap());
    config.sip.tls = Some(pki.settings());
    config.sip.next_hop_transport = SipTransportName::Tls;
    let gateway = camara_gateway::start(config).await.expect("gateway starts with [sip.tls]");
    assert!(gateway.sip_tls_addr.is_some());
    let api = Api::new(gateway.http_addr);
    let token = tokens::for_subscriber(ALICE);
    let registration = api.register(&token).await;
    let registration_id = registration.body["registrationId"].as_str().unwrap().to_string();

    let session = api.call_number(&token, &registration_id, ALICE, &format!("tel:{BOB}")).await;
    assert_eq!(session.status, 201, "{:?}", session.body);
    let session_id = session.body["mediaSessionId"].as_str().unwrap().to_string();
    let UaEvent { call_id, event } = next_event(&mut network_events).await;
    let CallEvent::Incoming { request_uri, headers, sdp, .. } = event else { panic!("{event:?}") };
    assert!(request_uri.contains(BOB), "{request_uri}");
    let via = headers.iter().find(|(name, _)| name.eq_ignore_ascii_case("Via")).map(|(_, v)| v.clone()).unwrap();
    assert!(via.starts_with("SIP/2.0/TLS "), "the INVITE came over TLS: {via}");
    let contact = headers.iter().find(|(name, _)| name.eq_ignore_ascii_case("Contact")).unwrap().1.clone();
    assert!(contact.to_ascii_lowercase().contains("transport=tls"), "{contact}");
    assert!(sdp.is_some_and(|s| s.contains("RTP/AVP")));
    network.accept(&call_id, Some(NETWORK_SDP.into())).await.unwrap();
    assert!(
        matches!(next_event(&mut network_events).await.event, CallEvent::Request { ref method, .. } if method == "ACK")
    );

    let path = format!("/webrtc-call-handling/v0.3/sessions/{session_id}");
    let mut status = String::new();
    for _ in 0..50 {
        status = api.call("GET", &path, Some(&token), &[], None).await.body["status"].as_str().unwrap_or("").into();
        if status == "Connected" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, "Connected");

    assert_eq!(api.call("DELETE", &path, Some(&token), &[], None).await.status, 204);
    let bye = next_event(&mut network_events).await;
    assert!(matches!(bye.event, CallEvent::Request { ref method, .. } if method == "BYE"), "{bye:?}");
    assert_eq!(next_event(&mut network_events).await.event, CallEvent::Terminated { cause: EndCause::Remote });
    gateway.stop().await;
    network.shutdown().await;
}

#[tokio::test]
async fn an_unusable_pem_file_stops_the_gateway_with_its_name() {
    init_logs();
    let dir = TempDir::new("sip-tls-bad");
    let pki = Pki::new(&dir);
    let garbage = dir.0.join("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n").unwrap();
    for (settings, named) in [
        (SipTlsSettings { certificate: garbage.clone(), ..pki.settings() }, garbage.clone()),
        (SipTlsSettings { private_key: dir.0.join("missing.pem"), ..pki.settings() }, dir.0.join("missing.pem")),
        (SipTlsSettings { ca: Some(garbage.clone()), ..pki.settings() }, garbage.clone()),
    ] {
        let mut config = gateway_config(None, SipTransportName::Udp);
        config.sip.tls_listen = Some("127.0.0.1:0".parse().unwrap());
        config.sip.tls = Some(settings);
        let error = match camara_gateway::start(config).await {
            Ok(gateway) => {
                gateway.stop().await;
                panic!("started with an unusable {}", named.display());
            }
            Err(e) => format!("{e:#}"),
        };
        assert!(error.contains(&named.display().to_string()), "{error}");
    }
}
