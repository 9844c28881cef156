//! Interop with a real SIP registrar and proxy: Kamailio (Debian's package), started here on a
//! free loopback port with `tests/kamailio/kamailio.cfg` (no database: one digest account in the
//! config, an in-memory location table, record-routing).
//!
//! - `sip-account` registration: the gateway's REGISTER is challenged (401, digest, MD5 and
//!   SHA-256), answered, and saved in Kamailio's location table; deleting the registration
//!   removes the binding (un-REGISTER).
//! - a call from the network: sipp calls the number's address of record at Kamailio, which looks
//!   it up and relays the INVITE to the gateway's registered Contact; the device is invited
//!   (`session-invitation`) and declines; 603 goes back through Kamailio to sipp. Or it answers
//!   (a real WebRTC answer from the aiortc peer): the gateway's 200 echoes Kamailio's
//!   Record-Route, and sipp's ACK and BYE reach the gateway through Kamailio.
//! - a call from the device: the gateway sends the INVITE to Kamailio (`[sip] next_hop`), which
//!   record-routes it to a sipp UAS; the call connects, and the ACK and the BYE of the dialog
//!   follow the route set through Kamailio. Kamailio challenges the INVITE first (407, proxy
//!   authentication) and the gateway answers it with the number's account.
//! - a restart: the gateway (its own process, state in redb) is killed, Kamailio too; the gateway
//!   comes back on another SIP port before Kamailio (which has lost its location table), keeps
//!   trying the REGISTER of the stored registration until Kamailio answers, and a call to the
//!   number reaches the new process.
//! - two nodes on one Redis: the node holding a registration is killed, the survivor REGISTERs it
//!   again with its own Contact, and a call to the number reaches the survivor.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use camara_gateway::config::{RegistrarConfig, SipAccount, SipTransportName};
use camara_gateway_tests::*;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);
const DOMAIN: &str = "operator.test";
const PASSWORD: &str = "kamailio-secret";

/// Kamailio with `tests/kamailio/kamailio.cfg` and the digest `algorithm` for REGISTER,
/// relaying INVITEs for `BOB` to `uas` (the network side).
async fn start_kamailio(algorithm: &str, uas: Option<SocketAddr>) -> Kamailio {
    start_kamailio_on(free_port(), algorithm, uas).await
}

/// The same on a given port (a Kamailio restarted where the gateway expects it).
async fn start_kamailio_on(port: u16, algorithm: &str, uas: Option<SocketAddr>) -> Kamailio {
    let template = std::fs::read_to_string(repo_root().join("tests/kamailio/kamailio.cfg")).unwrap();
    let config = template
        .replace("@PORT@", &port.to_string())
        .replace("@DOMAIN@", DOMAIN)
        .replace("@ALGORITHM@", algorithm)
        .replace("@USERNAME@", ALICE)
        .replace("@PASSWORD@", PASSWORD)
        .replace("@UAS_USER@", BOB)
        .replace("@UAS_ADDR@", &uas.map_or_else(|| "127.0.0.1:9".to_string(), |a| a.to_string()));
    Kamailio::start(port, &config).await
}

fn installed() -> bool {
    peer_installed("sipp", sipp_available())
        && peer_installed("kamailio (tests/install-peers.sh)", kamailio_binary().is_some())
}

/// A gateway in `sip-account` mode whose registrar and next hop are `kamailio`.
async fn gateway_behind(kamailio: &Kamailio) -> camara_gateway::app::RunningGateway {
    init_logs();
    let mut config = gateway_config(Some(kamailio.addr), SipTransportName::Udp);
    let mapping = &mut config.plugins.api_mapping.config;
    mapping.insert("registration-mode".into(), "sip-account".into());
    mapping.insert("home-domain".into(), DOMAIN.into());
    mapping.insert("network-domain".into(), DOMAIN.into());
    config.sip.registrar = Some(RegistrarConfig {
        address: kamailio.addr,
        transport: SipTransportName::Udp,
        domain: DOMAIN.into(),
        expires_seconds: 3600,
        answer_timeout_ms: 10_000,
    });
    config.sip.accounts.insert(ALICE.into(), SipAccount { username: ALICE.into(), password: PASSWORD.into() });
    camara_gateway::start(config).await.expect("gateway starts")
}

/// Alice's gateway behind `kamailio`, registered through it, with a subscription to `sink`.
struct Subscriber {
    gateway: camara_gateway::app::RunningGateway,
    api: Api,
    sink: Sink,
    token: String,
    registration_id: String,
}

async fn registered_behind(kamailio: &Kamailio) -> Subscriber {
    let gateway = gateway_behind(kamailio).await;
    let api = Api::new(gateway.http_addr);
    let sink = Sink::start(vec![]).await;
    let token = tokens::for_subscriber(ALICE);
    let registration = api.register(&token).await;
    assert_eq!(registration.status, 201, "{:?}\n{}", registration.body, kamailio.log());
    let registration_id = registration.body["registrationId"].as_str().unwrap().to_string();
    assert_eq!(api.subscribe(&token, &sink.url, "sink-secret").await.status, 201);
    Subscriber { gateway, api, sink, token, registration_id }
}

async fn next_data(sink: &mut Sink, kind: &str, kamailio: &Kamailio) -> Value {
    let Ok(event) = tokio::time::timeout(WAIT, sink.next(2 * WAIT)).await else {
        panic!("no {kind} event in time; kamailio's log:\n{}", kamailio.log());
    };
    assert_eq!(event.body["type"], kind, "{}", event.body);
    event.body["data"].clone()
}

/// Register (digest with `algorithm`), be called through Kamailio, decline, unregister; then
/// Kamailio itself refuses the next call with 404.
async fn registered_and_called_through_kamailio(algorithm: &str) {
    if !installed() {
        return;
    }
    let kamailio = start_kamailio(algorithm, None).await;
    // A wrong password would be a 401 loop; Kamailio accepts only the configured account.
    let Subscriber { gateway, api, mut sink, token, registration_id } = registered_behind(&kamailio).await;
    let script = kamailio.script_lines();
    assert!(script.iter().any(|l| l.contains("challenging REGISTER")), "{}", kamailio.log());
    assert!(script.iter().any(|l| l.contains("authenticated, saving the location")), "{script:#?}");
    if algorithm == "MD5" {
        assert!(
            script.iter().any(|l| l.contains("authorization: Digest") && l.contains("algorithm=MD5")),
            "{script:#?}"
        );
    }
    if algorithm == "SHA-256" {
        // The 401 offered SHA-256 only, and the gateway's answer used it.
        assert!(
            script.iter().any(|l| l.contains("authorization: Digest") && l.contains("algorithm=SHA-256")),
            "{script:#?}"
        );
    }

    let caller = Sipp::uac("tests/kamailio/uac_declined.xml", kamailio.addr, SipTransportName::Udp).await;
    let invitation = next_data(&mut sink, SESSION_INVITATION, &kamailio).await;
    assert_eq!(invitation["receiverAddress"], format!("tel:{ALICE}"), "{invitation}");
    assert_eq!(invitation["originatorAddress"], format!("tel:{BOB}"), "{invitation}");
    assert!(invitation["offer"]["sdp"].as_str().unwrap().contains("UDP/TLS/RTP/SAVPF"), "{invitation}");
    let session_id = invitation["mediaSessionId"].as_str().unwrap().to_string();
    let path = format!("/webrtc-call-handling/v0.3/sessions/{session_id}/status");
    let declined = api.call("PUT", &path, Some(&token), &[], Some(json!({"status": "Declined"}))).await;
    assert_eq!((declined.status, declined.body["status"].as_str()), (200, Some("Declined")), "{:?}", declined.body);
    assert_eq!(next_data(&mut sink, SESSION_STATUS, &kamailio).await["status"], "Declined");
    let (code, messages, errors) = caller.finish(WAIT).await;
    assert_eq!(code, 0, "sipp: {errors}\n{messages}\n{}", kamailio.log());
    let script = kamailio.script_lines();
    assert!(
        script.iter().any(|l| l.contains(&format!("INVITE to the registered contact sip:{ALICE}@127.0.0.1:"))),
        "{script:#?}"
    );

    let deleted = api
        .call("DELETE", &format!("/webrtc-registration/v0.3/sessions/{registration_id}"), Some(&token), &[], None)
        .await;
    assert_eq!(deleted.status, 204);
    // The un-REGISTER (Expires: 0, authenticated) removes the binding: Kamailio then answers
    // the next call itself with 404 (not the gateway, which would also refuse it).
    let unregistered = |k: &Kamailio| k.script_lines().iter().any(|l| l.contains("saving the location (expires 0)"));
    for _ in 0..100 {
        if unregistered(&kamailio) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(unregistered(&kamailio), "no un-REGISTER:\n{}", kamailio.log());
    let not_registered = |k: &Kamailio| k.script_lines().iter().any(|l| l.contains("is not registered"));
    for _ in 0..20 {
        let caller = Sipp::uac("tests/kamailio/uac_not_found.xml", kamailio.addr, SipTransportName::Udp).await;
        let (code, _, _) = caller.finish(WAIT).await;
        if code == 0 && not_registered(&kamailio) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(not_registered(&kamailio), "the binding stayed after the un-REGISTER:\n{}", kamailio.log());
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kamailio_challenges_the_register_with_md5_and_routes_a_call_to_the_gateway() {
    registered_and_called_through_kamailio("MD5").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kamailio_challenges_the_register_with_sha256_and_routes_a_call_to_the_gateway() {
    registered_and_called_through_kamailio("SHA-256").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_from_the_device_goes_through_kamailio_and_its_dialog_follows_the_record_route() {
    if !installed() {
        return;
    }
    let callee = Sipp::uas("tests/kamailio/uas_call.xml", SipTransportName::Udp).await;
    let kamailio = start_kamailio("MD5", Some(callee.addr)).await;
    let Subscriber { gateway, api, mut sink, token, registration_id } = registered_behind(&kamailio).await;

    let session = api.call_number(&token, &registration_id, ALICE, &format!("tel:{BOB}")).await;
    assert_eq!(session.status, 201, "{:?}", session.body);
    let session_id = session.body["mediaSessionId"].as_str().unwrap().to_string();
    let mut statuses = Vec::new();
    while statuses.last().map(String::as_str) != Some("Connected") {
        let data = next_data(&mut sink, SESSION_STATUS, &kamailio).await;
        statuses.push(data["status"].as_str().unwrap().to_string());
        assert!(statuses.len() < 5, "{statuses:?}\n{}", kamailio.log());
    }
    // No 183 from this callee: 180 is Ringing, 200 Connected.
    assert_eq!(statuses, ["Ringing", "Connected"]);

    let path = format!("/webrtc-call-handling/v0.3/sessions/{session_id}");
    assert_eq!(api.call("DELETE", &path, Some(&token), &[], None).await.status, 204);
    let ended = next_data(&mut sink, SESSION_STATUS, &kamailio).await;
    assert_eq!(ended["status"], "Terminated", "{ended}");

    let (code, messages, errors) = callee.finish(WAIT).await;
    assert_eq!(code, 0, "sipp: {errors}\n{messages}\n{}", kamailio.log());
    let seen = received_start_lines(&messages);
    let methods: Vec<&str> = seen.iter().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(methods, ["INVITE", "ACK", "BYE"], "{seen:?}");
    let kamailio_via = format!("SIP/2.0/UDP {}", kamailio.addr);
    for method in ["INVITE", "ACK", "BYE"] {
        let message = received_message(&messages, method).unwrap();
        let vias: Vec<&str> = message.lines().filter(|l| l.to_ascii_lowercase().starts_with("via:")).collect();
        // Kamailio's Via on top of the gateway's: the request came through the proxy.
        assert!(vias.len() == 2 && vias[0].contains(&kamailio_via), "{method}: {vias:?}\n{message}");
    }
    let invite = received_message(&messages, "INVITE").unwrap();
    assert!(invite.starts_with(&format!("INVITE sip:{BOB}@{DOMAIN};user=phone SIP/2.0")), "{invite}");
    assert!(invite.contains(&format!("From: \"Alice\" <sip:{ALICE}@{DOMAIN};user=phone>;tag=")), "{invite}");
    let script = kamailio.script_lines();
    // The proxy challenged the INVITE (407) and the gateway answered with the account's credentials.
    let challenged = script.iter().position(|l| l.contains("challenging INVITE of"));
    let authenticated = script.iter().position(|l| l.contains("INVITE of") && l.contains("authenticated"));
    assert!(challenged.is_some() && authenticated > challenged, "{script:#?}");
    assert!(!invite.to_ascii_lowercase().contains("proxy-authorization"), "consumed by the proxy: {invite}");
    for method in ["ACK", "BYE"] {
        assert!(script.iter().any(|l| l.contains(&format!("in-dialog {method} loose-routed"))), "{script:#?}");
    }
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_answers_a_call_routed_by_kamailio_and_the_callers_bye_follows_the_record_route() {
    if !installed() || !peer_installed("the aiortc peer", WebRtcPeer::available()) {
        return;
    }
    let kamailio = start_kamailio("MD5", None).await;
    let Subscriber { gateway, api, mut sink, token, .. } = registered_behind(&kamailio).await;

    let caller = Sipp::uac("tests/kamailio/uac_answered.xml", kamailio.addr, SipTransportName::Udp).await;
    let invitation = next_data(&mut sink, SESSION_INVITATION, &kamailio).await;
    let session_id = invitation["mediaSessionId"].as_str().unwrap().to_string();
    let mut peer = WebRtcPeer::start(&["--role", "answer", "--codec", "any", "--tone", "700"]);
    peer.send(json!({"cmd": "offer", "sdp": invitation["offer"]["sdp"]})).await;
    let answer = peer.expect("answer", WAIT).await["sdp"].as_str().unwrap().to_string();
    let path = format!("/webrtc-call-handling/v0.3/sessions/{session_id}/status");
    let connected = api
        .call("PUT", &path, Some(&token), &[], Some(json!({"status": "Connected", "answer": {"sdp": answer}})))
        .await;
    assert_eq!(connected.status, 200, "{:?}", connected.body);
    assert_eq!(next_data(&mut sink, SESSION_STATUS, &kamailio).await["status"], "Connected");

    // sipp hangs up after 1.5 s, its BYE routed by Kamailio's Record-Route.
    let ended = next_data(&mut sink, SESSION_STATUS, &kamailio).await;
    assert_eq!(ended["status"], "Terminated", "{ended}");
    let (code, messages, errors) = caller.finish(WAIT).await;
    assert_eq!(code, 0, "sipp: {errors}\n{messages}\n{}", kamailio.log());
    let ok = messages
        .split("----------------------------------------------- ")
        .find(|block| block.contains("message received") && block.contains("SIP/2.0 200") && block.contains("INVITE"))
        .unwrap_or_else(|| panic!("no 200 to the INVITE: {messages}"));
    assert!(ok.contains(&format!("Record-Route: <sip:{};lr", kamailio.addr)), "{ok}");
    let script = kamailio.script_lines();
    for method in ["ACK", "BYE"] {
        assert!(script.iter().any(|l| l.contains(&format!("in-dialog {method} loose-routed"))), "{script:#?}");
    }
    peer.close().await;
    gateway.stop().await;
}

/// The gateway as its own process in `sip-account` mode behind `kamailio`, with its state in
/// `dir`, SIP on `sip_port`.
fn gateway_process_config(dir: &TempDir, kamailio: &Kamailio, http_port: u16, sip_port: u16) -> PathBuf {
    let kamailio = kamailio.addr;
    let sip = format!(
        r#"next_hop = "{kamailio}"
[sip.registrar]
address = "{kamailio}"
domain = "{DOMAIN}"
answer_timeout_ms = 2000
[sip.accounts."{ALICE}"]
username = "{ALICE}"
password = "{PASSWORD}""#
    );
    let mapping = format!(
        r#"[plugins.api_mapping]
config = {{ registration-mode = "sip-account", home-domain = "{DOMAIN}", network-domain = "{DOMAIN}" }}"#
    );
    write_process_config(dir, http_port, sip_port, &sip, &mapping)
}

/// The UDP port of the `[sip]` table of a gateway config written by `gateway_process_config`.
fn config_sip_port(config: &std::path::Path) -> u16 {
    let text = std::fs::read_to_string(config).unwrap();
    let line = text.lines().find(|l| l.starts_with("udp_listen")).unwrap();
    line.trim_end_matches('"').rsplit(':').next().unwrap().parse().unwrap()
}

/// The Contact of each REGISTER Kamailio authenticated and saved (not un-REGISTERs).
fn saved_contacts(kamailio: &Kamailio) -> Vec<String> {
    kamailio
        .script_lines()
        .iter()
        .filter(|l| l.contains("authenticated, saving the location") && !l.contains("(expires 0)"))
        .filter_map(|l| l.split_once("contact ").and_then(|(_, rest)| rest.split_once(", authorization")))
        .map(|(contact, _)| contact.to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_gateway_registers_its_stored_registrations_again() {
    if !installed() {
        return;
    }
    init_logs();
    let kamailio = start_kamailio("MD5", None).await;
    let dir = TempDir::new("rebind");
    let http_port = free_port();
    let api = Api::new(format!("127.0.0.1:{http_port}").parse().unwrap());
    let token = tokens::for_subscriber(ALICE);
    let mut sink = Sink::start(vec![]).await;

    let first_port = free_port();
    let mut gateway = start_gateway_process(&gateway_process_config(&dir, &kamailio, http_port, first_port));
    wait_for_http(&api).await;
    let registration = api.register(&token).await;
    assert_eq!(registration.status, 201, "{:?}\n{}", registration.body, kamailio.log());
    assert_eq!(api.subscribe(&token, &sink.url, "sink-secret").await.status, 201);
    let contacts = saved_contacts(&kamailio);
    assert!(contacts.len() == 1 && contacts[0].contains(&format!(":{first_port}")), "{contacts:?}");
    gateway.kill().await.unwrap();
    // The registrar goes down too, and comes back with an empty location table.
    let registrar_port = kamailio.addr.port();
    let config = gateway_process_config(&dir, &kamailio, http_port, free_port());
    drop(kamailio);

    // Back on another SIP port while the registrar is still down: the REGISTER of the stored
    // registration is not answered, and is sent again (after 5 s) once the registrar is back.
    let second_port = config_sip_port(&config);
    let _gateway = start_gateway_process(&config);
    wait_for_http(&api).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let kamailio = start_kamailio_on(registrar_port, "MD5", None).await;
    for _ in 0..200 {
        if !saved_contacts(&kamailio).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let contacts = saved_contacts(&kamailio);
    assert!(
        contacts.len() == 1 && contacts[0].contains(&format!(":{second_port}")),
        "{contacts:?}\n{}",
        kamailio.log()
    );

    // And a call to the number reaches the new gateway, which invites the device.
    let caller = Sipp::uac("tests/kamailio/uac_declined.xml", kamailio.addr, SipTransportName::Udp).await;
    let invitation = next_data(&mut sink, SESSION_INVITATION, &kamailio).await;
    let path = format!("/webrtc-call-handling/v0.3/sessions/{}/status", invitation["mediaSessionId"].as_str().unwrap());
    let declined = api.call("PUT", &path, Some(&token), &[], Some(json!({"status": "Declined"}))).await;
    assert_eq!(declined.status, 200, "{:?}", declined.body);
    let (code, messages, errors) = caller.finish(WAIT).await;
    assert_eq!(code, 0, "sipp: {errors}\n{messages}\n{}", kamailio.log());
    // The unanswered first attempt was kept retrying, not given up with an un-REGISTER (which,
    // arriving late, would have removed the binding again).
    let script = kamailio.script_lines();
    assert!(!script.iter().any(|l| l.contains("saving the location (expires 0)")), "{script:#?}");
}

/// Two gateway nodes on one Redis, in `sip-account` mode: the node that took a registration
/// REGISTERs it; when it is killed, the survivor REGISTERs it again with its own Contact, and a
/// call to the number reaches the survivor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_registrations_are_registered_again_by_a_survivor() {
    if !installed() {
        return;
    }
    init_logs();
    let Some(redis) = RedisServer::start().await else { return };
    let kamailio = start_kamailio("MD5", None).await;
    let dir = TempDir::new("takeover");
    let mut sink = Sink::start(vec![]).await;
    let token = tokens::for_subscriber(ALICE);
    let node = |id: &str| {
        let (http_port, sip_port) = (free_port(), free_port());
        let node_dir = TempDir::new(&format!("node-{id}"));
        let config = gateway_process_config(&node_dir, &kamailio, http_port, sip_port);
        let storage = format!(
            "backend = \"redis\"\nurl = \"{}\"\nkey_prefix = \"takeover\"\nnode_id = \"{id}\"\nnode_lease_ms = 1500\n",
            redis.url
        );
        // Into the `[storage]` table, before the tables that follow it.
        let text = std::fs::read_to_string(&config).unwrap().replacen(
            "[plugins.api_mapping]",
            &format!("{storage}[plugins.api_mapping]"),
            1,
        );
        let kept = dir.0.join(format!("{id}.toml"));
        std::fs::write(&kept, text).unwrap();
        (kept, Api::new(format!("127.0.0.1:{http_port}").parse().unwrap()), sip_port)
    };
    let (config_a, api_a, port_a) = node("a");
    let (config_b, api_b, port_b) = node("b");
    let mut a = start_gateway_process(&config_a);
    let _b = start_gateway_process(&config_b);
    wait_for_http(&api_a).await;
    wait_for_http(&api_b).await;

    let registration = api_a.register(&token).await;
    assert_eq!(registration.status, 201, "{:?}\n{}", registration.body, kamailio.log());
    assert_eq!(api_b.subscribe(&token, &sink.url, "sink-secret").await.status, 201);
    let contacts = saved_contacts(&kamailio);
    assert!(contacts.len() == 1 && contacts[0].contains(&format!(":{port_a}")), "{contacts:?}");

    a.kill().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !saved_contacts(&kamailio).iter().any(|c| c.contains(&format!(":{port_b}"))) {
        assert!(tokio::time::Instant::now() < deadline, "b did not REGISTER again:\n{}", kamailio.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let path = format!("/webrtc-registration/v0.3/sessions/{}", registration.body["registrationId"].as_str().unwrap());
    assert_eq!(api_b.call("GET", &path, Some(&token), &[], None).await.status, 200);

    // A call to the number: Kamailio finds b's Contact, and b invites the device.
    let caller = Sipp::uac("tests/kamailio/uac_declined.xml", kamailio.addr, SipTransportName::Udp).await;
    let invitation = next_data(&mut sink, SESSION_INVITATION, &kamailio).await;
    let status =
        format!("/webrtc-call-handling/v0.3/sessions/{}/status", invitation["mediaSessionId"].as_str().unwrap());
    let declined = api_b.call("PUT", &status, Some(&token), &[], Some(json!({"status": "Declined"}))).await;
    assert_eq!(declined.status, 200, "{:?}", declined.body);
    let (code, messages, errors) = caller.finish(WAIT).await;
    assert_eq!(code, 0, "sipp: {errors}\n{messages}\n{}", kamailio.log());
}
