//! The user agent answering calls from a real SIP peer: sipp playing the
//! calling network. Skipped (with a message) when `sipp` is not installed.

use std::time::Duration;

use camara_sip::{CallEvent, EndCause, TimerConfig, Transport, UaEvent};
use tokio::sync::mpsc::UnboundedReceiver;

mod common;
use common::*;

const ANSWER_SDP: &str = "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30002 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/// Waits for the Incoming event of a new call; returns its Call-ID and the event.
async fn incoming(events: &mut UnboundedReceiver<UaEvent>) -> (String, CallEvent) {
    let UaEvent { call_id, event } = next_event(events).await;
    assert!(matches!(event, CallEvent::Incoming { .. }), "{event:?}");
    (call_id, event)
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

    answer_with_prack_until_bye(&ua, &mut events, &call_id, ANSWER_SDP).await;
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
    expect(&mut events, &call_id, CallEvent::Terminated { cause: EndCause::Remote }).await;
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
    expect(&mut events, &call_id, CallEvent::Terminated { cause: EndCause::Local }).await;

    sipp.assert_success().await;
    ua.shutdown().await;
}

/// RFC 4028 as the callee and refresher: the caller asks for a 4 s session refreshed by us; the
/// UPDATE refresh at 2 s is silent (sipp checks it), then we put the call on hold with a
/// re-INVITE and the caller hangs up.
async fn session_refreshed_by_us_then_held(transport: Transport) {
    if !sipp_available() {
        return;
    }
    let (ua, mut events) = start_ua_with(TimerConfig { session_expires: 4, min_se: 2, ..TimerConfig::default() }).await;
    let sipp = Sipp::call("uac_session_timer.xml", transport, ua.local_addr(transport).unwrap());
    let (call_id, _) = incoming(&mut events).await;
    ua.accept(&call_id, Some(ANSWER_SDP.into())).await.expect("accept");
    expect(&mut events, &call_id, request("ACK")).await;
    let quiet = tokio::time::timeout(Duration::from_millis(2500), events.recv()).await;
    assert!(quiet.is_err(), "the refresh must not be reported: {quiet:?}");

    let hold = ANSWER_SDP.replace("o=- 2 2", "o=- 2 3") + "a=sendonly\r\n";
    ua.reinvite(&call_id, hold).await.expect("re-INVITE of an incoming call");
    let answer = next_event(&mut events).await;
    let CallEvent::ReinviteResponse { status: 200, sdp: Some(sdp), .. } = &answer.event else {
        panic!("expected 200 to the re-INVITE, got {answer:?}");
    };
    assert!(sdp.contains("a=recvonly"), "{sdp}");
    expect(&mut events, &call_id, request("BYE")).await;
    expect(&mut events, &call_id, CallEvent::Terminated { cause: EndCause::Remote }).await;

    sipp.assert_success().await;
    ua.shutdown().await;
}

#[tokio::test]
async fn udp_incoming_session_refreshed_by_us_with_update_then_held() {
    session_refreshed_by_us_then_held(Transport::Udp).await;
}

#[tokio::test]
async fn tcp_incoming_session_refreshed_by_us_with_update_then_held() {
    session_refreshed_by_us_then_held(Transport::Tcp).await;
}
