//! Calls from the network (the call-termination flow): sipp calls a registered number, the
//! device is invited with a WebRTC offer (`session-invitation`), and answers, declines or lets
//! it ring out through `PUT .../status`. The answering device is a real WebRTC peer (aiortc);
//! sipp echoes the media, so the peer hears its own tone come back through both legs.

use std::time::Duration;

use camara_gateway::config::SipTransportName;
use camara_gateway_tests::*;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);

struct Callee {
    gateway: camara_gateway::app::RunningGateway,
    api: Api,
    sink: Sink,
    token: String,
}

async fn registered_callee(no_answer_seconds: u64) -> Callee {
    registered_callee_with(|config| config.sip.no_answer_seconds = no_answer_seconds).await
}

async fn registered_callee_with(adjust: impl FnOnce(&mut camara_gateway::config::GatewayConfig)) -> Callee {
    init_logs();
    let mut config = gateway_config(None, SipTransportName::Udp);
    adjust(&mut config);
    let gateway = camara_gateway::start(config).await.expect("gateway starts");
    let api = Api::new(gateway.http_addr);
    let sink = Sink::start(vec![]).await;
    let token = tokens::for_subscriber(ALICE);
    assert_eq!(api.register(&token).await.status, 201);
    assert_eq!(api.subscribe(&token, &sink.url, "sink-secret").await.status, 201);
    Callee { gateway, api, sink, token }
}

/// A real WebRTC peer (sending a 700 Hz tone) answers the invitation's offer: the peer and its
/// answer SDP.
async fn answering_peer(invitation: &Value) -> (WebRtcPeer, String) {
    let mut peer = WebRtcPeer::start(&["--role", "answer", "--codec", "any", "--tone", "700"]);
    peer.send(json!({"cmd": "offer", "sdp": invitation["offer"]["sdp"]})).await;
    let answer = peer.expect("answer", WAIT).await["sdp"].as_str().unwrap().to_string();
    (peer, answer)
}

impl Callee {
    /// The `session-invitation` event's data.
    async fn invitation(&mut self) -> Value {
        let event = self.sink.next(WAIT).await;
        assert_eq!(event.body["type"], SESSION_INVITATION, "{}", event.body);
        let data = event.body["data"].clone();
        assert_eq!(data["status"], "Initial");
        assert_eq!(data["originatorAddress"], format!("tel:{BOB}"), "{data}");
        assert_eq!(data["receiverAddress"], format!("tel:{ALICE}"), "{data}");
        assert_eq!(data["sequenceNumber"], 1);
        assert!(data["offer"]["sdp"].as_str().unwrap().contains("UDP/TLS/RTP/SAVPF"), "{data}");
        data
    }

    /// sipp calls the device with `scenario`, echoing the media it gets; returns sipp and the
    /// invitation.
    async fn called_by(&mut self, scenario: &str) -> (Sipp, Value) {
        let media_port = free_port().to_string();
        let target = self.gateway.sip_udp_addr.unwrap();
        let sipp = Sipp::uac_with(scenario, target, SipTransportName::Udp, &["-rtp_echo", "-mp", &media_port]).await;
        (sipp, self.invitation().await)
    }

    async fn put_status(&self, session_id: &str, body: Value) -> Reply {
        let path = format!("/webrtc-call-handling/v0.3/sessions/{session_id}/status");
        self.api.call("PUT", &path, Some(&self.token), &[], Some(body)).await
    }

    async fn next_status(&mut self) -> Value {
        let event = self.sink.next(WAIT).await;
        assert_eq!(event.body["type"], SESSION_STATUS, "{}", event.body);
        event.body["data"].clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_answers_and_the_media_flows_both_ways() {
    if !peer_installed("sipp", sipp_available()) || !peer_installed("the aiortc peer", WebRtcPeer::available()) {
        return;
    }
    let mut callee = registered_callee(60).await;
    let (sipp, invitation) = callee.called_by("uac_media.xml").await;
    let session_id = invitation["mediaSessionId"].as_str().unwrap().to_string();
    let (mut peer, answer) = answering_peer(&invitation).await;

    let progress = callee.put_status(&session_id, json!({"status": "InProgress", "answer": {"sdp": answer}})).await;
    assert_eq!(progress.status, 200, "{:?}", progress.body);
    assert_eq!(progress.body["status"], "InProgress");
    assert_eq!(progress.body["answer"]["sdp"], answer.as_str());
    assert_eq!(callee.next_status().await["status"], "InProgress");
    peer.expect("connected", WAIT).await;

    let connected = callee.put_status(&session_id, json!({"status": "Connected"})).await;
    assert_eq!(connected.status, 200, "{:?}", connected.body);
    let event = callee.next_status().await;
    assert_eq!((event["status"].as_str(), event["sequenceNumber"].as_u64()), (Some("Connected"), Some(3)));

    peer.assert_tone_back(700.0).await;

    // sipp hangs up after four seconds of media.
    let ended = callee.next_status().await;
    assert_eq!(ended["status"], "Terminated", "{ended}");
    let (code, messages, errors) = sipp.finish(WAIT).await;
    assert_eq!(code, 0, "sipp: {errors}\n{messages}");
    let start_lines = received_start_lines(&messages);
    assert!(start_lines.iter().any(|l| l.starts_with("SIP/2.0 183")), "{start_lines:?}");
    peer.close().await;
    callee.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_holds_and_resumes_an_answered_incoming_call_with_update() {
    if !peer_installed("sipp", sipp_available()) || !peer_installed("the aiortc peer", WebRtcPeer::available()) {
        return;
    }
    let mut callee = registered_callee_with(|config| {
        config.sip.reoffer_method = camara_gateway::config::ReofferMethod::Update;
    })
    .await;
    let (sipp, invitation) = callee.called_by("uac_held_by_device.xml").await;
    let session_id = invitation["mediaSessionId"].as_str().unwrap().to_string();
    let (peer, answer) = answering_peer(&invitation).await;
    let progress = callee.put_status(&session_id, json!({"status": "InProgress", "answer": {"sdp": answer}})).await;
    assert_eq!(progress.status, 200, "{:?}", progress.body);
    assert_eq!(callee.next_status().await["status"], "InProgress");
    assert_eq!(callee.put_status(&session_id, json!({"status": "Connected"})).await.status, 200);
    assert_eq!(callee.next_status().await["status"], "Connected");

    for requested in ["Hold", "Resume"] {
        let reply = callee.put_status(&session_id, json!({"status": requested})).await;
        assert_eq!(reply.status, 200, "{requested}: {:?}", reply.body);
        assert_eq!(reply.body["status"], requested);
        let event = callee.next_status().await;
        assert_eq!(event["status"], requested, "{event}");
    }

    let ended = callee.next_status().await;
    assert_eq!(ended["status"], "Terminated", "{ended}");
    let (code, messages, errors) = sipp.finish(WAIT).await;
    assert_eq!(code, 0, "sipp: {errors}\n{messages}");
    let updates: Vec<String> =
        received_start_lines(&messages).into_iter().filter(|l| l.starts_with("UPDATE")).collect();
    assert_eq!(updates.len(), 2, "{updates:?}");
    for (index, direction) in ["a=sendonly", "a=sendrecv"].iter().enumerate() {
        let update = received_message_nth(&messages, "UPDATE", index).unwrap();
        assert!(update.contains(direction), "{update}");
    }
    peer.close().await;
    callee.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_declines_with_603() {
    if !peer_installed("sipp", sipp_available()) {
        return;
    }
    let mut callee = registered_callee(60).await;
    let sipp = Sipp::uac("uac_declined.xml", callee.gateway.sip_udp_addr.unwrap(), SipTransportName::Udp).await;
    let session_id = callee.invitation().await["mediaSessionId"].as_str().unwrap().to_string();
    let declined = callee.put_status(&session_id, json!({"status": "Declined"})).await;
    assert_eq!((declined.status, declined.body["status"].as_str()), (200, Some("Declined")), "{:?}", declined.body);
    assert_eq!(callee.next_status().await["status"], "Declined");
    let (code, messages, errors) = sipp.finish(WAIT).await;
    assert_eq!(code, 0, "sipp: {errors}\n{messages}");
    // A declined call cannot be answered any more.
    let late = callee.put_status(&session_id, json!({"status": "Connected", "answer": {"sdp": WEBRTC_OFFER}})).await;
    assert_eq!((late.status, late.body["code"].as_str()), (409, Some("INCOMPATIBLE_STATE")), "{:?}", late.body);
    callee.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_call_is_refused_with_480_when_the_timer_fires() {
    if !peer_installed("sipp", sipp_available()) {
        return;
    }
    let mut callee = registered_callee(1).await;
    let sipp = Sipp::uac("uac_no_answer.xml", callee.gateway.sip_udp_addr.unwrap(), SipTransportName::Udp).await;
    callee.invitation().await;
    assert_eq!(callee.next_status().await["status"], "NoAnswer");
    let (code, messages, errors) = sipp.finish(WAIT).await;
    assert_eq!(code, 0, "sipp: {errors}\n{messages}");
    callee.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answering_needs_an_answer_sdp() {
    if !peer_installed("sipp", sipp_available()) {
        return;
    }
    let mut callee = registered_callee(2).await;
    let sipp = Sipp::uac("uac_no_answer.xml", callee.gateway.sip_udp_addr.unwrap(), SipTransportName::Udp).await;
    let session_id = callee.invitation().await["mediaSessionId"].as_str().unwrap().to_string();
    let bare = callee.put_status(&session_id, json!({"status": "Connected"})).await;
    assert_eq!((bare.status, bare.body["code"].as_str()), (400, Some("INVALID_ARGUMENT")), "{:?}", bare.body);
    let garbage =
        callee.put_status(&session_id, json!({"status": "Connected", "answer": {"sdp": "v=0\r\nnonsense"}})).await;
    assert_eq!((garbage.status, garbage.body["code"].as_str()), (400, Some("INVALID_ARGUMENT")), "{:?}", garbage.body);
    let other = tokens::for_subscriber(BOB);
    let path = format!("/webrtc-call-handling/v0.3/sessions/{session_id}/status");
    let foreign = callee.api.call("PUT", &path, Some(&other), &[], Some(json!({"status": "Declined"}))).await;
    assert_eq!(foreign.status, 404, "another subscriber's session is not found");
    // Still unanswered: the timer refuses it.
    assert_eq!(callee.next_status().await["status"], "NoAnswer");
    let (code, messages, errors) = sipp.finish(WAIT).await;
    assert_eq!(code, 0, "sipp: {errors}\n{messages}");
    callee.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offerless_invite_gets_our_offer_in_the_200_and_its_answer_in_the_ack() {
    if !peer_installed("sipp", sipp_available()) || !peer_installed("the aiortc peer", WebRtcPeer::available()) {
        return;
    }
    let mut callee = registered_callee(60).await;
    let (sipp, invitation) = callee.called_by("uac_offerless.xml").await;
    let session_id = invitation["mediaSessionId"].as_str().unwrap().to_string();
    let mut peer = WebRtcPeer::start(&["--role", "answer", "--codec", "pcmu", "--tone", "600"]);
    peer.send(json!({"cmd": "offer", "sdp": invitation["offer"]["sdp"]})).await;
    let answer = peer.expect("answer", WAIT).await["sdp"].as_str().unwrap().to_string();
    let connected = callee.put_status(&session_id, json!({"status": "Connected", "answer": {"sdp": answer}})).await;
    assert_eq!(connected.status, 200, "{:?}", connected.body);
    peer.expect("connected", WAIT).await;
    peer.assert_tone_back(600.0).await;
    let (code, messages, errors) = sipp.finish(WAIT).await;
    assert_eq!(code, 0, "sipp: {errors}\n{messages}");
    peer.close().await;
    callee.gateway.stop().await;
}
