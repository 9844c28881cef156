//! The embedded defaults' demo endpoint, which stands in for the telco network so that a
//! newcomer's first calls work with nothing installed: its echo number answers and echoes the
//! audio (and answers holds and resumes), its tone number plays a tone, a call to a registered
//! number rings that number's devices through SIP (so two devices call each other), and it
//! calls a registered device on `POST /demo/calls`. Real WebRTC peers (aiortc) are the devices.

use std::time::Duration;

use camara_gateway::config::SipTransportName;
use camara_gateway_tests::*;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(15);

const ECHO: &str = camara_gateway::demo::ECHO_NUMBER;
const SESSIONS: &str = "/webrtc-call-handling/v0.3/sessions";

async fn demo_gateway() -> (camara_gateway::RunningGateway, Api, Sink, String, String) {
    init_logs();
    let mut config = gateway_config(None, SipTransportName::Udp);
    config.device_side.demo_endpoint = true;
    let gateway = camara_gateway::start(config).await.expect("gateway starts");
    assert!(gateway.gateway.demo.is_some(), "no next hop configured: the demo endpoint is it");
    let api = Api::new(gateway.http_addr);
    let (sink, token, registration_id) = subscriber(&api, ALICE).await;
    (gateway, api, sink, token, registration_id)
}

/// `number` registered (the test device) and subscribed: its sink, token and registration.
async fn subscriber(api: &Api, number: &str) -> (Sink, String, String) {
    let sink = Sink::start(vec![]).await;
    let token = tokens::for_subscriber(number);
    let registration_id = api.register(&token).await.body["registrationId"].as_str().unwrap().to_string();
    assert_eq!(api.subscribe(&token, &sink.url, "sink-secret").await.status, 201);
    (sink, token, registration_id)
}

/// The next session-status of `sink` with `status`, skipping the others.
async fn until_status(sink: &mut Sink, status: &str) -> serde_json::Value {
    loop {
        let data = sink.next(WAIT).await.body["data"].clone();
        assert!(
            !["Failed", "Terminated", "NotReachable"].contains(&data["status"].as_str().unwrap_or_default())
                || status == data["status"],
            "waiting for {status}: {data}"
        );
        if data["status"] == status {
            return data;
        }
    }
}

/// Alice's peer (sending `tone` Hz) calls `to` and is connected: the peer and the session path.
async fn call_from_alice(
    api: &Api,
    sink: &mut Sink,
    token: &str,
    registration_id: &str,
    to: &str,
    tone: &str,
) -> (WebRtcPeer, String) {
    let mut peer = WebRtcPeer::start(&["--role", "offer", "--codec", "pcmu", "--tone", tone]);
    let offer = peer.expect("offer", WAIT).await;
    let body = json!({
        "originatorAddress": format!("tel:{ALICE}"),
        "receiverAddress": format!("tel:{to}"),
        "offer": {"sdp": offer["sdp"]}
    });
    let created = api.call("POST", SESSIONS, Some(token), &[("registrationId", registration_id)], Some(body)).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let path = format!("{SESSIONS}/{}", created.body["mediaSessionId"].as_str().unwrap());
    let connected = until_status(sink, "Connected").await;
    peer.send(json!({"cmd": "answer", "sdp": connected["answer"]["sdp"]})).await;
    peer.expect("connected", WAIT).await;
    (peer, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_echo_number_echoes_and_answers_hold_and_resume() {
    if !peer_installed("the aiortc peer", WebRtcPeer::available()) {
        return;
    }
    let (gateway, api, mut sink, token, registration_id) = demo_gateway().await;
    let (mut peer, path) = call_from_alice(&api, &mut sink, &token, &registration_id, ECHO, "800").await;
    peer.assert_tone_back(800.0).await;
    // Hold and resume: the demo endpoint answers the re-INVITEs, the audio comes back after.
    for status in ["Hold", "Resume"] {
        let changed =
            api.call("PUT", &format!("{path}/status"), Some(&token), &[], Some(json!({"status": status}))).await;
        assert_eq!((changed.status, changed.body["status"].as_str()), (200, Some(status)), "{:?}", changed.body);
        until_status(&mut sink, status).await;
    }
    peer.assert_tone_back(800.0).await;
    assert_eq!(api.call("DELETE", &path, Some(&token), &[], None).await.status, 204);
    until_status(&mut sink, "Terminated").await;
    peer.close().await;
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tone_number_plays_a_tone() {
    if !peer_installed("the aiortc peer", WebRtcPeer::available()) {
        return;
    }
    let (gateway, api, mut sink, token, registration_id) = demo_gateway().await;
    let tone = camara_gateway::demo::TONE_NUMBER;
    let (mut peer, _) = call_from_alice(&api, &mut sink, &token, &registration_id, tone, "800").await;
    // What comes back is the tone, not the caller's 800 Hz.
    peer.assert_tone_back(440.0).await;
    peer.close().await;
    gateway.stop().await;
}

/// On the embedded defaults two devices call each other: the demo network bridges a call to a
/// registered number back to the gateway, which rings that number's device. Audio flows both
/// ways; a hold on one side reaches the other; the caller's hangup ends the callee's session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_calls_bob_through_the_demo_network() {
    if !peer_installed("the aiortc peer", WebRtcPeer::available()) {
        return;
    }
    let (gateway, api, mut alice_sink, alice_token, alice_registration) = demo_gateway().await;
    let (mut bob_sink, bob_token, _) = subscriber(&api, BOB).await;

    let mut alice = WebRtcPeer::start(&["--role", "offer", "--codec", "pcmu", "--tone", "600"]);
    let offer = alice.expect("offer", WAIT).await;
    let body = json!({
        "originatorAddress": format!("tel:{ALICE}"),
        "receiverAddress": format!("tel:{BOB}"),
        "offer": {"sdp": offer["sdp"]}
    });
    let headers = [("registrationId", alice_registration.as_str())];
    let created = api.call("POST", SESSIONS, Some(&alice_token), &headers, Some(body)).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let alice_path = format!("{SESSIONS}/{}", created.body["mediaSessionId"].as_str().unwrap());

    // Bob's device rings, with alice as the caller, and answers.
    let invitation = bob_sink.next(WAIT).await.body;
    assert_eq!(invitation["type"], SESSION_INVITATION, "{invitation}");
    assert_eq!(invitation["data"]["originatorAddress"], format!("tel:{ALICE}"), "{invitation}");
    let bob_path = format!("{SESSIONS}/{}", invitation["data"]["mediaSessionId"].as_str().unwrap());
    let mut bob = WebRtcPeer::start(&["--role", "answer", "--codec", "any", "--tone", "900"]);
    bob.send(json!({"cmd": "offer", "sdp": invitation["data"]["offer"]["sdp"]})).await;
    let answer = bob.expect("answer", WAIT).await["sdp"].as_str().unwrap().to_string();
    let answered = api
        .call(
            "PUT",
            &format!("{bob_path}/status"),
            Some(&bob_token),
            &[],
            Some(json!({"status": "Connected", "answer": {"sdp": answer}})),
        )
        .await;
    assert_eq!(answered.status, 200, "{:?}", answered.body);
    let connected = until_status(&mut alice_sink, "Connected").await;
    alice.send(json!({"cmd": "answer", "sdp": connected["answer"]["sdp"]})).await;
    alice.expect("connected", WAIT).await;
    bob.expect("connected", WAIT).await;
    // Each hears the other's tone.
    alice.assert_tone_back(900.0).await;
    bob.assert_tone_back(600.0).await;

    // Alice holds: bob's session hears it; alice resumes.
    let held = api
        .call("PUT", &format!("{alice_path}/status"), Some(&alice_token), &[], Some(json!({"status": "Hold"})))
        .await;
    assert_eq!(held.status, 200, "{:?}", held.body);
    until_status(&mut bob_sink, "Hold").await;
    let resumed = api
        .call("PUT", &format!("{alice_path}/status"), Some(&alice_token), &[], Some(json!({"status": "Resume"})))
        .await;
    assert_eq!(resumed.status, 200, "{:?}", resumed.body);
    until_status(&mut bob_sink, "Resume").await;
    bob.assert_tone_back(600.0).await;

    assert_eq!(api.call("DELETE", &alice_path, Some(&alice_token), &[], None).await.status, 204);
    until_status(&mut bob_sink, "Terminated").await;
    until_status(&mut alice_sink, "Terminated").await;
    alice.close().await;
    bob.close().await;
    gateway.stop().await;
}

/// `INVITE urn:service:sos SIP/2.0` (RFC 5031) reaches the demo endpoint and is answered; it was
/// once dropped as unparsable, and retransmitted until the caller gave up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_endpoint_answers_an_emergency_call() {
    let (gateway, api, mut sink, token, registration_id) = demo_gateway().await;
    let body = json!({
        "originatorAddress": format!("tel:{ALICE}"),
        "receiverAddress": "urn:service:sos",
        "callType": "EMERGENCY",
        "offer": {"sdp": WEBRTC_OFFER}
    });
    let path = "/webrtc-call-handling/v0.3/sessions";
    let created = api.call("POST", path, Some(&token), &[("registrationId", &registration_id)], Some(body)).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    loop {
        let data = sink.next(WAIT).await.body["data"].clone();
        assert!(!["Failed", "Terminated"].contains(&data["status"].as_str().unwrap_or_default()), "{data}");
        if data["status"] == "Connected" {
            break;
        }
    }
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_endpoint_calls_the_device_on_request() {
    let (gateway, api, mut sink, _token, _registration_id) = demo_gateway().await;
    // As `curl -d` sends it: JSON in a form's content type.
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let asked = api.raw("POST", "/demo/calls", &form, Some(r#"{"to": "+818000000001"}"#.into())).await;
    assert_eq!(asked.status, 202, "{}", asked.body);
    let invitation = sink.next(WAIT).await.body;
    assert_eq!(invitation["type"], SESSION_INVITATION, "{invitation}");
    assert_eq!(invitation["data"]["originatorAddress"], format!("tel:{ECHO}"), "{invitation}");
    let bad = api.call("POST", "/demo/calls", None, &[], Some(json!({"to": "alice"}))).await;
    assert_eq!((bad.status, bad.body["code"].as_str()), (400, Some("INVALID_ARGUMENT")), "{:?}", bad.body);
    let nobody = api.call("POST", "/demo/calls", None, &[], Some(json!({"to": "+818000000077"}))).await;
    assert_eq!((nobody.status, nobody.body["code"].as_str()), (404, Some("NOT_FOUND")), "{:?}", nobody.body);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_oauth_server_is_not_served_next_to_a_real_issuer() {
    init_logs();
    let discovery = "/oauth/.well-known/openid-configuration";
    let mut config = gateway_config(None, SipTransportName::Udp);
    config.oauth_server.enabled = true;
    // `[auth]` trusts the test JWKS (another issuer), as a production configuration would.
    let gateway = camara_gateway::start(config).await.expect("gateway starts");
    assert_eq!(Api::new(gateway.http_addr).try_call("GET", discovery).await, Some(404));
    gateway.stop().await;
    let mut config = gateway_config(None, SipTransportName::Udp);
    config.oauth_server.enabled = true;
    config.auth = Default::default();
    let gateway = camara_gateway::start(config).await.expect("gateway starts");
    assert_eq!(Api::new(gateway.http_addr).try_call("GET", discovery).await, Some(200));
    gateway.stop().await;
}
