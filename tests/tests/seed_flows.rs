//! The flows of the seed document (`webrtc-api-call-flow.md`, section 4) end to end, the way a
//! device application that cannot host an HTTP endpoint works: it signs in at the gateway's
//! built-in OAuth server (authorization code + PKCE), calls the CAMARA APIs with that token, and
//! receives every event through a Notification Relay channel (the subscription's sink is the
//! channel's `sinkUrl`; the events come over the channel's WebSocket and are acknowledged).
//!
//! The seed's section 4 links two flow documents that are not in the specification material
//! (`subscription_for_call-related_events.md`, `registration_and_expiration_subscription.md`) and
//! marks 4.3 to 4.6 TBD; the messages asserted here are those of the CAMARA call flows the seed
//! grew from (`camara-webrtc/call-flows/`: subscription_for_webrtc_events.md 3.1,
//! webrtc_registration.md 3.2, call_origination_and_disconnection.md 3.3,
//! call_termination_and_disconnection.md 3.4). Bracketed numbers below are their message numbers.
//!
//! The real parts: sipp on the network side, aiortc answering as the device in 4.4.

use std::collections::HashSet;
use std::time::Duration;

use camara_gateway::config::{GatewayConfig, SipTransportName};
use camara_gateway_tests::*;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);
const EVENTS_SOURCE_SUFFIX: &str = "/webrtc-events/v0.2";

/// A gateway with the device side: the built-in OAuth server issues the tokens (verified through
/// its discovery, as a real IdP's), the Notification Relay runs in-process. Plain-http loopback
/// sinks are refused: the relay's sinks are accepted as the gateway's own, not by that allowance.
async fn gateway(
    next_hop: Option<std::net::SocketAddr>,
    configure: impl FnOnce(&mut GatewayConfig),
) -> camara_gateway::RunningGateway {
    init_logs();
    let mut config = gateway_config(next_hop, SipTransportName::Udp);
    config.oauth_server.enabled = true;
    config.auth = Default::default();
    config.notifications.allow_http_loopback_sinks = false;
    configure(&mut config);
    camara_gateway::start(config).await.expect("gateway starts")
}

fn in_seconds(s: i64) -> String {
    (Utc::now() + chrono::Duration::seconds(s)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn instant(value: &Value) -> DateTime<Utc> {
    let text = value.as_str().unwrap_or_else(|| panic!("a date-time, not {value}"));
    DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text:?}: {e}")).with_timezone(&Utc)
}

#[track_caller]
fn assert_same_instant(value: &Value, expected: &str) {
    assert_eq!(instant(value), instant(&json!(expected)), "{value} is not {expected}");
}

/// The CloudEvent envelope of the flows' `POST SINK_URL` bodies; returns its `data`.
#[track_caller]
fn event_data<'a>(event: &'a Value, event_type: &str, subscription_id: &str) -> &'a Value {
    assert_eq!(event["type"], event_type, "{event}");
    assert_eq!(event["specversion"], "1.0", "{event}");
    assert_eq!(event["datacontenttype"], "application/json", "{event}");
    assert!(event["id"].as_str().is_some_and(|id| !id.is_empty()), "{event}");
    assert!(event["source"].as_str().is_some_and(|s| s.ends_with(EVENTS_SOURCE_SUFFIX)), "{event}");
    instant(&event["time"]);
    let data = &event["data"];
    assert_eq!(data["subscriptionId"], subscription_id, "{event}");
    data
}

/// A `session-status` event of the call `session_id` from alice to bob, with the `status`,
/// `sequenceNumber` and `reason` of the flow's examples (3.3: [18], [31], [40], [61]); returns
/// its `data`.
#[track_caller]
fn outgoing_status<'a>(event: &'a Value, subscription_id: &str, session_id: &str, status: &str, seq: u64) -> &'a Value {
    let reason = match status {
        "InProgress" => "183 Session Progress received from remote endpoint",
        "Ringing" => "180 Ringing received from remote endpoint",
        "Connected" => "200 OK received - call connected",
        "Terminated" => "Call terminated by originator",
        other => panic!("no example of {other}"),
    };
    let data = event_data(event, SESSION_STATUS, subscription_id);
    assert_eq!(data["mediaSessionId"], session_id, "{event}");
    assert_eq!(data["originatorAddress"], format!("tel:{ALICE}"), "{event}");
    assert_eq!(data["originatorName"], "Alice", "{event}");
    assert_eq!(data["receiverAddress"], format!("tel:{BOB}"), "{event}");
    assert_eq!(data["receiverName"], "Bob", "{event}");
    assert_eq!(data["status"], status, "{event}");
    assert_eq!(data["sequenceNumber"], seq, "{event}");
    assert_eq!(data["reason"], reason, "{event}");
    data
}

/// The device's WebRTC answer made by the gateway's media anchor, as the events carry it.
#[track_caller]
fn webrtc_answer(data: &Value) -> String {
    let sdp = data["answer"]["sdp"].as_str().unwrap_or_else(|| panic!("an answer SDP: {data}"));
    assert!(sdp.starts_with("v=0") && sdp.contains("UDP/TLS/RTP/SAVPF"), "a WebRTC answer: {sdp}");
    sdp.to_string()
}

/// `POST /webrtc-call-handling/v0.3/sessions` from alice to bob ([7]); checks the 201 ([14]).
async fn originate(alice: &Device, registration_id: &str) -> String {
    let created = alice.api.call_number(&alice.access_token, registration_id, ALICE, &format!("tel:{BOB}")).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(created.headers["x-correlator"], "a1b2c3d4-e5f6-7890-abcd-000000000007");
    let body = &created.body;
    assert_eq!(body["status"], "Initial", "{body}");
    assert_eq!(body["originatorAddress"], format!("tel:{ALICE}"), "{body}");
    assert_eq!(body["originatorName"], "Alice", "{body}");
    assert_eq!(body["receiverAddress"], format!("tel:{BOB}"), "{body}");
    assert_eq!(body["receiverName"], "Bob", "{body}");
    assert_eq!(body["offer"]["sdp"], WEBRTC_OFFER, "{body}");
    body["mediaSessionId"].as_str().filter(|id| !id.is_empty()).expect("mediaSessionId").to_string()
}

/// `DELETE /webrtc-call-handling/v0.3/sessions/{id}` ([53]) -> `204` ([56]).
async fn hang_up(alice: &Device, session_id: &str) {
    let path = format!("/webrtc-call-handling/v0.3/sessions/{session_id}");
    let deleted = alice.call("DELETE", &path, &[("x-correlator", "a1b2c3d4-e5f6-7890-abcd-000000000051")], None).await;
    assert_eq!(deleted.status, 204, "{:?}", deleted.body);
    assert_eq!(deleted.body, Value::Null);
    assert_eq!(deleted.headers["x-correlator"], "a1b2c3d4-e5f6-7890-abcd-000000000051");
}

fn registration_id(reply: &Reply) -> String {
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    reply.body["registrationId"].as_str().expect("registrationId").to_string()
}

fn subscription_id(reply: &Reply) -> String {
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    reply.body["id"].as_str().expect("subscription id").to_string()
}

/// 4.1 (3.1.1): the device subscribes to the call-related events ([8] with the consolidated
/// types), reads the subscription back, and the statuses of a call reach it through the relay,
/// in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_4_1_subscription_for_call_related_events() {
    if !peer_installed("sipp", sipp_available()) {
        return;
    }
    let media_port = free_port().to_string();
    let sipp = Sipp::uas_with("uas_media.xml", SipTransportName::Udp, free_port(), &["-mp", &media_port]).await;
    let gateway = gateway(Some(sipp.addr), |_| {}).await;
    let mut alice = Device::sign_in(gateway.http_addr, "alice", "alice").await;
    let channel = alice.open_channel().await;
    // session-status and session-invitation need "a deviceId related to a valid registration"
    // (webrtc-events `WebrtcSubscriptionDetail`): the device registers before it subscribes.
    let registration_id = registration_id(&alice.register(None).await);

    let types = [SESSION_INVITATION, SESSION_STATUS, REGISTRATION_ENDS];
    let expire = in_seconds(3600);
    let created = alice.subscribe(&types, Some(&expire)).await;
    let sub_id = subscription_id(&created);
    // [11] 201 Created.
    let sub = &created.body;
    assert_eq!(sub["protocol"], "HTTP", "{sub}");
    assert_eq!(sub["sink"], channel["sinkUrl"], "{sub}");
    assert_eq!(sub["types"], json!(types), "{sub}");
    assert_eq!(sub["config"]["subscriptionDetail"]["deviceId"], DEVICE_ID, "{sub}");
    assert_same_instant(&sub["config"]["subscriptionExpireTime"], &expire);
    assert_same_instant(&sub["expiresAt"], &expire);
    assert!(instant(&sub["startsAt"]) <= Utc::now(), "{sub}");
    assert_eq!(sub["status"], "ACTIVE", "{sub}");
    assert!(sub.get("sinkCredential").is_none(), "the sink credential is not echoed: {sub}");
    // No initial event: none of the WebRTC events is triggered by the subscription itself (the
    // flow's note on `initialEvent`), and no `subscription-started` is defined.
    alice.expect_no_event(Duration::from_secs(1)).await;

    let listed = alice.call("GET", "/webrtc-events/v0.2/subscriptions", &[("x-correlator", "list-1")], None).await;
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    assert_eq!(listed.headers["x-correlator"], "list-1");
    assert_eq!(listed.body, json!([sub]));
    let read = alice.call("GET", &format!("/webrtc-events/v0.2/subscriptions/{sub_id}"), &[], None).await;
    assert_eq!((read.status, &read.body), (200, sub));

    let session_id = originate(&alice, &registration_id).await;
    // uas_media.xml answers 180 then 200 (no 183).
    let mut ids = HashSet::new();
    let ringing = alice.next_event(WAIT).await;
    outgoing_status(&ringing, &sub_id, &session_id, "Ringing", 1);
    let connected = alice.next_event(WAIT).await;
    webrtc_answer(outgoing_status(&connected, &sub_id, &session_id, "Connected", 2));
    hang_up(&alice, &session_id).await;
    let terminated = alice.next_event(WAIT).await;
    outgoing_status(&terminated, &sub_id, &session_id, "Terminated", 3);
    for event in [&ringing, &connected, &terminated] {
        assert!(ids.insert(event["id"].as_str().unwrap().to_string()), "event ids are unique: {event}");
    }
    alice.expect_no_event(Duration::from_millis(500)).await;

    let (code, messages, errors) = sipp.finish(WAIT).await;
    assert_eq!(code, 0, "sipp: {errors}\n{messages}");
    gateway.stop().await;
}

/// 4.2 (3.2.1 and `registration-ends`): the device registers with an expiry ([6] -> [9]),
/// subscribes to the end of its registrations, and `registration-ends` (REGISTRATION_EXPIRED)
/// reaches it through the relay once that time has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_4_2_registration_and_expiration_subscription() {
    let gateway = gateway(None, |config| config.registration.min_ttl_seconds = 1).await;
    let mut alice = Device::sign_in(gateway.http_addr, "alice", "alice").await;

    let expire = in_seconds(4);
    let registered = alice.register(Some(&expire)).await;
    let registration_id = registration_id(&registered);
    assert_eq!(registered.body["regInfo"], json!({"phoneNumber": ALICE, "regStatus": "Registered"}));
    assert_same_instant(&registered.body["expiresAt"], &expire);

    alice.open_channel().await;
    let sub_id = subscription_id(&alice.subscribe(&[REGISTRATION_ENDS], None).await);

    let event = alice.next_event(Duration::from_secs(15)).await;
    let data = event_data(&event, REGISTRATION_ENDS, &sub_id);
    assert_eq!(data["registrationId"], registration_id, "{event}");
    assert_eq!(data["terminationReason"], "REGISTRATION_EXPIRED", "{event}");
    assert!(data["terminationDescription"].as_str().is_some_and(|d| !d.is_empty()), "{event}");
    // "REGISTRATION_EXPIRED is triggered exactly when the set registrationExpireTime has passed."
    assert!(instant(&event["time"]) >= instant(&json!(expire)), "ended before its time: {event}");

    let path = format!("/webrtc-registration/v0.3/sessions/{registration_id}");
    let gone = alice.call("GET", &path, &[], None).await;
    assert_eq!((gone.status, gone.body["code"].as_str()), (404, Some("NOT_FOUND")), "{:?}", gone.body);
    alice.expect_no_event(Duration::from_millis(1500)).await;
    gateway.stop().await;
}

/// 4.3 (3.3.1, 3.3.2): a call from the device to the network with the flow's SIP exchange (100,
/// reliable 183 with the answer and 180, PRACKs, 200, ACK): InProgress, Ringing, Connected reach
/// the device through the relay; DELETE sends BYE and Terminated follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_4_3_call_origination_and_disconnection() {
    if !peer_installed("sipp", sipp_available()) {
        return;
    }
    let media_port = free_port().to_string();
    let sipp = Sipp::uas_with("uas_call_flow.xml", SipTransportName::Udp, free_port(), &["-mp", &media_port]).await;
    let gateway = gateway(Some(sipp.addr), |_| {}).await;
    let mut alice = Device::sign_in(gateway.http_addr, "alice", "alice").await;
    let registration_id = registration_id(&alice.register(None).await);
    alice.open_channel().await;
    let sub_id = subscription_id(&alice.subscribe(&[SESSION_INVITATION, SESSION_STATUS], None).await);

    let session_id = originate(&alice, &registration_id).await;
    // [18] InProgress with the answer (183), [31] Ringing (180), [40] Connected (200).
    let in_progress = alice.next_event(WAIT).await;
    let answer = webrtc_answer(outgoing_status(&in_progress, &sub_id, &session_id, "InProgress", 1));
    let ringing = alice.next_event(WAIT).await;
    outgoing_status(&ringing, &sub_id, &session_id, "Ringing", 2);
    let connected = alice.next_event(WAIT).await;
    assert_eq!(webrtc_answer(outgoing_status(&connected, &sub_id, &session_id, "Connected", 3)), answer);

    let path = format!("/webrtc-call-handling/v0.3/sessions/{session_id}");
    let read = alice.call("GET", &path, &[], None).await;
    assert_eq!((read.status, read.body["status"].as_str()), (200, Some("Connected")), "{:?}", read.body);
    assert_eq!(read.body["answer"]["sdp"], answer.as_str());

    // [53] DELETE -> [56] 204, [57] BYE, [61] Terminated.
    hang_up(&alice, &session_id).await;
    let terminated = alice.next_event(WAIT).await;
    outgoing_status(&terminated, &sub_id, &session_id, "Terminated", 4);
    alice.expect_no_event(Duration::from_millis(500)).await;

    let (code, messages, errors) = sipp.finish(WAIT).await;
    assert_eq!(code, 0, "sipp: {errors}\n{messages}");
    let seen = received_start_lines(&messages);
    let methods: Vec<&str> = seen.iter().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(methods, ["INVITE", "PRACK", "PRACK", "ACK", "BYE"], "{seen:?}");
    gateway.stop().await;
}

/// The network side of 3.4.1 and 3.4.2: INVITE with a G.711 offer and 100rel; the reliable 183
/// (the device's answer, [17]) and 180 ([31]) are PRACKed ([20], [34]); 200 ([42]), ACK ([45]);
/// after four seconds of media (echoed with `-rtp_echo`) the caller hangs up with BYE.
const UAC_CALL_TERMINATION: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="Call termination flow: 183 and 180 reliable, 200, BYE from the caller">
  <send retrans="500">
    <![CDATA[

      INVITE sip:+818000000001@[remote_ip]:[remote_port];user=phone SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=z9hG4bKinv[pid]x[call_number]
      Max-Forwards: 70
      From: "Bob" <sip:+818000000002@tn.operator.com;user=phone>;tag=[pid]SIPpTag00[call_number]
      To: <sip:+818000000001@operator.com;user=phone>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:+818000000002@[local_ip]:[local_port];transport=[transport]>
      Supported: 100rel, timer
      Allow: INVITE, ACK, BYE, CANCEL, UPDATE, PRACK, OPTIONS
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=- 7893214567890123456 1 IN IP4 [media_ip]
      s=-
      c=IN IP4 [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 8 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-16
      a=sendrecv
      a=ptime:20

    ]]>
  </send>

  <recv response="100" optional="true"/>

  <recv response="183" rrs="true">
    <action>
      <ereg regexp="[0-9]+" search_in="hdr" header="RSeq:" check_it="true" assign_to="rseq1"/>
      <ereg regexp="m=audio [0-9]+ RTP/AVP" search_in="body" check_it="true" assign_to="answer_m"/>
    </action>
  </recv>

  <send>
    <![CDATA[

      PRACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      Max-Forwards: 70
      From: "Bob" <sip:+818000000002@tn.operator.com;user=phone>;tag=[pid]SIPpTag00[call_number]
      To: <sip:+818000000001@operator.com;user=phone>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 PRACK
      RAck: [$rseq1] 1 INVITE
      Content-Length: 0

    ]]>
  </send>

  <recv response="200" crlf="true">
    <action>
      <ereg regexp="PRACK" search_in="hdr" header="CSeq:" check_it="true" assign_to="prack1_ok"/>
    </action>
  </recv>

  <recv response="180" rrs="true">
    <action>
      <ereg regexp="[0-9]+" search_in="hdr" header="RSeq:" check_it="true" assign_to="rseq2"/>
    </action>
  </recv>

  <send>
    <![CDATA[

      PRACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      Max-Forwards: 70
      From: "Bob" <sip:+818000000002@tn.operator.com;user=phone>;tag=[pid]SIPpTag00[call_number]
      To: <sip:+818000000001@operator.com;user=phone>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 3 PRACK
      RAck: [$rseq2] 1 INVITE
      Content-Length: 0

    ]]>
  </send>

  <recv response="200" crlf="true">
    <action>
      <ereg regexp="PRACK" search_in="hdr" header="CSeq:" check_it="true" assign_to="prack2_ok"/>
    </action>
  </recv>

  <recv response="200" rrs="true">
    <action>
      <ereg regexp="INVITE" search_in="hdr" header="CSeq:" check_it="true" assign_to="invite_ok"/>
      <ereg regexp="m=audio [0-9]+ RTP/AVP" search_in="body" check_it="true" assign_to="final_m"/>
      <log message="checked: [$rseq1] [$answer_m] [$prack1_ok] [$rseq2] [$prack2_ok] [$invite_ok] [$final_m]"/>
    </action>
  </recv>

  <send>
    <![CDATA[

      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      Max-Forwards: 70
      From: "Bob" <sip:+818000000002@tn.operator.com;user=phone>;tag=[pid]SIPpTag00[call_number]
      To: <sip:+818000000001@operator.com;user=phone>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Content-Length: 0

    ]]>
  </send>

  <pause milliseconds="4000"/>

  <send retrans="500">
    <![CDATA[

      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      Max-Forwards: 70
      From: "Bob" <sip:+818000000002@tn.operator.com;user=phone>;tag=[pid]SIPpTag00[call_number]
      To: <sip:+818000000001@operator.com;user=phone>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 4 BYE
      Content-Length: 0

    ]]>
  </send>

  <recv response="200"/>
</scenario>
"#;

/// A `session-status` or `session-invitation` event of the call from bob to alice.
#[track_caller]
fn incoming_event<'a>(event: &'a Value, ty: &str, sub_id: &str, session_id: &str, status: &str, seq: u64) -> &'a Value {
    let data = event_data(event, ty, sub_id);
    assert_eq!(data["mediaSessionId"], session_id, "{event}");
    assert_eq!(data["originatorAddress"], format!("tel:{BOB}"), "{event}");
    assert_eq!(data["originatorName"], "Bob", "{event}");
    assert_eq!(data["receiverAddress"], format!("tel:{ALICE}"), "{event}");
    assert_eq!(data["status"], status, "{event}");
    assert_eq!(data["sequenceNumber"], seq, "{event}");
    data
}

async fn put_status(device: &Device, path: &str, status: &str, answer: Option<&str>) -> Reply {
    let mut body = json!({"status": status});
    if let Some(sdp) = answer {
        body["answer"] = json!({"sdp": sdp});
    }
    device.call("PUT", path, &[], Some(body)).await
}

/// 4.4 (3.4.1, 3.4.2): the network calls the registered device; `session-invitation` reaches it
/// through the relay ([5]); it reads the session ([7] -> [10]), answers with a real WebRTC
/// answer (aiortc) as InProgress ([13] -> [16], 183), rings ([27] -> [30], 180), accepts
/// ([38] -> [41], 200); ICE and DTLS complete and the audio flows; the caller hangs up and
/// Terminated reaches the device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_4_4_call_termination_and_disconnection() {
    if !peer_installed("sipp", sipp_available()) || !peer_installed("the aiortc peer", WebRtcPeer::available()) {
        return;
    }
    let gateway = gateway(None, |_| {}).await;
    let mut alice = Device::sign_in(gateway.http_addr, "alice", "alice").await;
    registration_id(&alice.register(None).await);
    alice.open_channel().await;
    let sub_id = subscription_id(&alice.subscribe(&[SESSION_INVITATION, SESSION_STATUS], None).await);

    let scenario_dir = TempDir::new("seed-flows");
    let scenario = scenario_dir.0.join("uac_call_termination.xml");
    std::fs::write(&scenario, UAC_CALL_TERMINATION).unwrap();
    let media_port = free_port().to_string();
    let target = gateway.sip_udp_addr.unwrap();
    let extra = ["-rtp_echo", "-mp", &media_port];
    let sipp = Sipp::uac_with(scenario.to_str().unwrap(), target, SipTransportName::Udp, &extra).await;

    // [5] session-invitation.
    let invitation = alice.next_event(WAIT).await;
    let session_id = invitation["data"]["mediaSessionId"].as_str().expect("mediaSessionId").to_string();
    let data = incoming_event(&invitation, SESSION_INVITATION, &sub_id, &session_id, "Initial", 1);
    let offer = data["offer"]["sdp"].as_str().expect("the WebRTC offer").to_string();
    assert!(offer.contains("UDP/TLS/RTP/SAVPF"), "{offer}");

    // [7] GET -> [10] 200 OK.
    let path = format!("/webrtc-call-handling/v0.3/sessions/{session_id}");
    let read = alice.call("GET", &path, &[("x-correlator", "b2c3d4e5-f6a7-8901-bcde-000000000007")], None).await;
    assert_eq!(read.status, 200, "{:?}", read.body);
    assert_eq!(read.headers["x-correlator"], "b2c3d4e5-f6a7-8901-bcde-000000000007");
    assert_eq!(read.body["mediaSessionId"], session_id.as_str());
    assert_eq!(read.body["status"], "Initial");
    assert_eq!(read.body["originatorAddress"], format!("tel:{BOB}"));
    assert_eq!(read.body["receiverAddress"], format!("tel:{ALICE}"));
    assert_eq!(read.body["offer"]["sdp"], offer.as_str());

    let mut peer = WebRtcPeer::start(&["--role", "answer", "--codec", "any", "--tone", "700"]);
    peer.send(json!({"cmd": "offer", "sdp": offer})).await;
    let answer = peer.expect("answer", WAIT).await["sdp"].as_str().unwrap().to_string();

    // The flow's PUT /sessions/{id} is the API's PUT /sessions/{id}/status.
    let status_path = format!("{path}/status");
    // [13] InProgress with the answer -> [16] 200 OK, [17] 183.
    let progress = put_status(&alice, &status_path, "InProgress", Some(&answer)).await;
    assert_eq!(progress.status, 200, "{:?}", progress.body);
    assert_eq!(progress.body["status"], "InProgress");
    assert_eq!(progress.body["offer"]["sdp"], offer.as_str());
    assert_eq!(progress.body["answer"]["sdp"], answer.as_str());
    let event = alice.next_event(WAIT).await;
    let data = incoming_event(&event, SESSION_STATUS, &sub_id, &session_id, "InProgress", 2);
    assert_eq!(data["answer"]["sdp"], answer.as_str(), "{event}");
    peer.expect("connected", WAIT).await;

    // [27] Ringing -> [30] 200 OK, [31] 180.
    let ringing = put_status(&alice, &status_path, "Ringing", None).await;
    assert_eq!((ringing.status, ringing.body["status"].as_str()), (200, Some("Ringing")), "{:?}", ringing.body);
    assert_eq!(ringing.body["answer"]["sdp"], answer.as_str());
    let event = alice.next_event(WAIT).await;
    incoming_event(&event, SESSION_STATUS, &sub_id, &session_id, "Ringing", 3);

    // [38] Connected -> [41] 200 OK, [42] 200 (INVITE).
    let connected = put_status(&alice, &status_path, "Connected", None).await;
    assert_eq!((connected.status, connected.body["status"].as_str()), (200, Some("Connected")), "{:?}", connected.body);
    assert_eq!(connected.body["answer"]["sdp"], answer.as_str());
    let event = alice.next_event(WAIT).await;
    incoming_event(&event, SESSION_STATUS, &sub_id, &session_id, "Connected", 4);

    // Voice media both ways: the peer's tone comes back through sipp's echo.
    peer.assert_tone_back(700.0).await;

    // 3.4.2: the caller's BYE -> Terminated.
    let ended = alice.next_event(WAIT).await;
    let data = incoming_event(&ended, SESSION_STATUS, &sub_id, &session_id, "Terminated", 5);
    // The SIP side placed the call and hung up (3.4.2, after 3.3.3).
    assert_eq!(data["reason"], "Call terminated by originator", "{ended}");
    alice.expect_no_event(Duration::from_millis(500)).await;

    let (code, messages, errors) = sipp.finish(WAIT).await;
    assert_eq!(code, 0, "sipp: {errors}\n{messages}");
    let seen = received_start_lines(&messages);
    // 183, 200 (PRACK), 180, 200 (PRACK), 200 (INVITE), 200 (BYE): repeats folded (the last
    // three 200s, and retransmissions of the reliable provisionals).
    let mut responses: Vec<&str> =
        seen.iter().filter_map(|l| l.strip_prefix("SIP/2.0 ")).map(|l| &l[..3]).filter(|code| *code != "100").collect();
    responses.dedup();
    assert_eq!(responses, ["183", "200", "180", "200"], "{seen:?}");
    peer.close().await;
    gateway.stop().await;
}

/// 4.5 (3.2.2): before its registration expires the device refreshes it with PUT ([15] ->
/// [18]) and the original expiry passes without `registration-ends`; its access token runs out,
/// it gets a new one with the refresh_token grant, and the APIs take the new token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_4_5_registration_refresh() {
    const TOKEN_TTL: u64 = 6;
    let gateway = gateway(None, |config| {
        config.registration.min_ttl_seconds = 1;
        config.oauth_server.access_token_ttl_seconds = TOKEN_TTL;
        config.auth.leeway_seconds = 0;
    })
    .await;
    let mut alice = Device::sign_in(gateway.http_addr, "alice", "alice").await;
    assert_eq!(alice.tokens["expires_in"], TOKEN_TTL);
    let first_expiry = in_seconds(3);
    let registration_id = registration_id(&alice.register(Some(&first_expiry)).await);
    alice.open_channel().await;
    let sub_id = subscription_id(&alice.subscribe(&[REGISTRATION_ENDS], None).await);

    // [15] PUT -> [18] 200 OK with the new expiresAt.
    let path = format!("/webrtc-registration/v0.3/sessions/{registration_id}");
    let extended = in_seconds(3600);
    let refreshed = alice
        .call(
            "PUT",
            &path,
            &[("x-correlator", "b2c3d4e5-f6a7-8901-bcde-f23456789012")],
            Some(json!({"registrationExpireTime": extended})),
        )
        .await;
    assert_eq!(refreshed.status, 200, "{:?}", refreshed.body);
    assert_eq!(refreshed.headers["x-correlator"], "b2c3d4e5-f6a7-8901-bcde-f23456789012");
    assert_eq!(refreshed.body["registrationId"], registration_id.as_str());
    assert_eq!(refreshed.body["regInfo"], json!({"phoneNumber": ALICE, "regStatus": "Registered"}));
    assert_same_instant(&refreshed.body["expiresAt"], &extended);
    // The first expiry passes (and the expiry sweep with it): the registration lives on.
    alice.expect_no_event(Duration::from_secs(4)).await;

    // The access token runs out: the API refuses it.
    let old_token = alice.access_token.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(TOKEN_TTL + 10);
    let refused = loop {
        let reply = alice.call("GET", &path, &[], None).await;
        if reply.status != 200 {
            break reply;
        }
        assert!(tokio::time::Instant::now() < deadline, "the access token never expired");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!((refused.status, refused.body["code"].as_str()), (401, Some("UNAUTHENTICATED")), "{:?}", refused.body);

    // The refresh_token grant: a new access token, and a new (rotated) refresh token.
    let old_refresh = alice.refresh_token.clone();
    let tokens = alice.refresh().await;
    assert_ne!(alice.access_token, old_token);
    assert_ne!(alice.refresh_token, old_refresh, "refresh tokens rotate");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], TOKEN_TTL);

    // The APIs take the new token: the registration is there with the refreshed expiry, and can
    // be refreshed again; the subscription is there too.
    let read = alice.call("GET", &path, &[], None).await;
    assert_eq!(read.status, 200, "{:?}", read.body);
    assert_same_instant(&read.body["expiresAt"], &extended);
    let later = in_seconds(7200);
    let again = alice.call("PUT", &path, &[], Some(json!({"registrationExpireTime": later}))).await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert_same_instant(&again.body["expiresAt"], &later);
    let sub = alice.call("GET", &format!("/webrtc-events/v0.2/subscriptions/{sub_id}"), &[], None).await;
    assert_eq!((sub.status, sub.body["id"].as_str()), (200, Some(sub_id.as_str())), "{:?}", sub.body);
    let stale = alice.api.call("GET", &path, Some(&old_token), &[], None).await;
    assert_eq!(stale.status, 401, "the old token stays refused");
    alice.expect_no_event(Duration::from_millis(500)).await;
    gateway.stop().await;
}

/// 4.6 (3.2.3, 3.1.3): the device de-registers ([24] -> [27] 204; the flow shows no event, and
/// `registration-ends` has no reason for it), then unsubscribes ([29] -> [32] 202) and
/// `subscription-ended` with SUBSCRIPTION_DELETED ([33]) reaches it through the relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_4_6_de_registration_and_unsubscribe() {
    let gateway = gateway(None, |_| {}).await;
    let mut alice = Device::sign_in(gateway.http_addr, "alice", "alice").await;
    let registration_id = registration_id(&alice.register(None).await);
    alice.open_channel().await;
    let types = [SESSION_INVITATION, SESSION_STATUS, REGISTRATION_ENDS];
    let sub_id = subscription_id(&alice.subscribe(&types, None).await);

    // [24] DELETE -> [27] 204 No Content.
    let path = format!("/webrtc-registration/v0.3/sessions/{registration_id}");
    let correlator = [("x-correlator", "c3d4e5f6-a7b8-9012-cdef-345678901234")];
    let deleted = alice.call("DELETE", &path, &correlator, None).await;
    assert_eq!(deleted.status, 204, "{:?}", deleted.body);
    assert_eq!(deleted.body, Value::Null);
    assert_eq!(deleted.headers["x-correlator"], correlator[0].1);
    alice.expect_no_event(Duration::from_secs(2)).await;
    let gone = alice.call("GET", &path, &[], None).await;
    assert_eq!(gone.status, 404, "{:?}", gone.body);
    let listed =
        alice.call("GET", &format!("/webrtc-registration/v0.3/sessions?deviceId={DEVICE_ID}"), &[], None).await;
    assert_eq!((listed.status, &listed.body), (200, &json!([])));

    // [29] DELETE -> [32] 202 Accepted {"id"}, [33] subscription-ended.
    let sub_path = format!("/webrtc-events/v0.2/subscriptions/{sub_id}");
    let correlator = [("x-correlator", "a1b2c3d4-e5f6-7890-abcd-ef1234567890")];
    let unsubscribed = alice.call("DELETE", &sub_path, &correlator, None).await;
    assert_eq!(unsubscribed.status, 202, "{:?}", unsubscribed.body);
    assert_eq!(unsubscribed.body, json!({"id": sub_id}));
    assert_eq!(unsubscribed.headers["x-correlator"], correlator[0].1);
    let ended = alice.next_event(WAIT).await;
    let data = event_data(&ended, SUBSCRIPTION_ENDED, &sub_id);
    assert_eq!(data["terminationReason"], "SUBSCRIPTION_DELETED", "{ended}");
    assert_eq!(data["terminationDescription"], "Subscription deleted by client request", "{ended}");

    let gone = alice.call("GET", &sub_path, &[], None).await;
    assert_eq!(gone.status, 404, "{:?}", gone.body);
    let listed = alice.call("GET", "/webrtc-events/v0.2/subscriptions", &[], None).await;
    assert_eq!((listed.status, &listed.body), (200, &json!([])));
    alice.expect_no_event(Duration::from_secs(1)).await;

    // The device gives its relay channel back.
    let channel_id = alice.channel["channelId"].as_str().unwrap().to_string();
    let closed = alice.call("DELETE", &format!("/relay/channels/{channel_id}"), &[], None).await;
    assert_eq!(closed.status, 204, "{:?}", closed.body);
    gateway.stop().await;
}
