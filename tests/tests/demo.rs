//! The embedded defaults' demo endpoint, which stands in for the telco network so that a
//! newcomer's first call works with nothing installed: it answers and echoes the audio, and it
//! calls a registered device on `POST /demo/calls`. A real WebRTC peer (aiortc) is the device.

use std::time::Duration;

use camara_gateway::config::SipTransportName;
use camara_gateway_tests::*;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(15);

async fn demo_gateway() -> (camara_gateway::RunningGateway, Api, Sink, String, String) {
    init_logs();
    let mut config = gateway_config(None, SipTransportName::Udp);
    config.device_side.demo_endpoint = true;
    let gateway = camara_gateway::start(config).await.expect("gateway starts");
    assert!(gateway.gateway.demo.is_some(), "no next hop configured: the demo endpoint is it");
    let api = Api::new(gateway.http_addr);
    let sink = Sink::start(vec![]).await;
    let token = tokens::for_subscriber(ALICE);
    let registration_id = api.register(&token).await.body["registrationId"].as_str().unwrap().to_string();
    assert_eq!(api.subscribe(&token, &sink.url, "sink-secret").await.status, 201);
    (gateway, api, sink, token, registration_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_the_demo_endpoint_hears_its_own_voice() {
    if !peer_installed("the aiortc peer", WebRtcPeer::available()) {
        return;
    }
    let (gateway, api, mut sink, token, registration_id) = demo_gateway().await;
    let mut peer = WebRtcPeer::start(&["--role", "offer", "--codec", "pcmu", "--tone", "800"]);
    let offer = peer.expect("offer", WAIT).await;
    let body = json!({
        "originatorAddress": format!("tel:{ALICE}"),
        "receiverAddress": "tel:+818000000002",
        "offer": {"sdp": offer["sdp"]}
    });
    let path = "/webrtc-call-handling/v0.3/sessions";
    let created = api.call("POST", path, Some(&token), &[("registrationId", &registration_id)], Some(body)).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let answer = loop {
        let data = sink.next(WAIT).await.body["data"].clone();
        if data["status"] == "Connected" {
            break data["answer"]["sdp"].as_str().unwrap().to_string();
        }
    };
    peer.send(json!({"cmd": "answer", "sdp": answer})).await;
    peer.expect("connected", WAIT).await;
    peer.assert_tone_back(800.0).await;
    peer.close().await;
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
    let asked = api.call("POST", "/demo/calls", None, &[], Some(json!({"to": ALICE}))).await;
    assert_eq!(asked.status, 202, "{:?}", asked.body);
    let invitation = sink.next(WAIT).await.body;
    assert_eq!(invitation["type"], SESSION_INVITATION, "{invitation}");
    assert_eq!(invitation["data"]["originatorAddress"], "tel:+818000000002", "{invitation}");
    let bad = api.call("POST", "/demo/calls", None, &[], Some(json!({"to": "alice"}))).await;
    assert_eq!((bad.status, bad.body["code"].as_str()), (400, Some("INVALID_ARGUMENT")), "{:?}", bad.body);
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
