//! The user agent against a real SIP peer: sipp playing the called network.
//! Skipped (with a message) when `sipp` is not installed.

use std::net::SocketAddr;
use std::time::Duration;

use camara_sip::{CallEvent, EndCause, HangupKind, NameAddr, OutgoingInvite, TimerConfig, Transport, UaEvent};
use tokio::sync::mpsc::UnboundedReceiver;

mod common;
use common::*;

fn invite(next_hop: SocketAddr, transport: Transport) -> OutgoingInvite {
    OutgoingInvite {
        call_id: None,
        request_uri: format!("sip:+818000000002@{next_hop};user=phone"),
        from: NameAddr { display_name: Some("Alice".into()), uri: "sip:+818000000001@operator.com;user=phone".into() },
        to: NameAddr { display_name: Some("Bob".into()), uri: "sip:+818000000002@tn.operator.com;user=phone".into() },
        p_asserted_identity: Some(NameAddr { display_name: None, uri: "tel:+818000000001".into() }),
        privacy: None,
        extra_headers: vec![],
        sdp: Some(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\n"
                .into(),
        ),
        extra_body_parts: vec![],
        next_hop,
        transport,
        credentials: None,
    }
}

async fn next_event(events: &mut UnboundedReceiver<UaEvent>, call_id: &str) -> CallEvent {
    let event =
        tokio::time::timeout(STEP, events.recv()).await.expect("no call event in time").expect("event channel closed");
    assert_eq!(event.call_id, call_id);
    event.event
}

fn status_of(event: &CallEvent) -> Option<(u16, bool)> {
    match event {
        CallEvent::Response { status, reliable, .. } => Some((*status, *reliable)),
        _ => None,
    }
}

async fn answered_call_then_bye(transport: Transport) {
    if !sipp_available() {
        return;
    }
    let (ua, mut events) = start_ua().await;
    let sipp = Sipp::start("uas_100rel.xml", transport).await;

    let call_id = ua.invite(invite(sipp.addr, transport)).await.expect("invite");
    let local = ua.local_addr(Transport::Udp).unwrap().ip().to_string();
    assert!(call_id.ends_with(&format!("@{local}")), "{call_id}");

    assert_eq!(status_of(&next_event(&mut events, &call_id).await), Some((100, false)));
    assert_eq!(status_of(&next_event(&mut events, &call_id).await), Some((180, true)));
    let answer = next_event(&mut events, &call_id).await;
    let CallEvent::Response { status: 200, reason, sdp: Some(sdp), reliable: false, .. } = &answer else {
        panic!("expected 200 OK with SDP, got {answer:?}");
    };
    assert_eq!(reason, "OK");
    assert!(sdp.contains("m=audio"), "{sdp}");

    assert_eq!(ua.hangup(&call_id).await.expect("hangup"), HangupKind::Bye);
    assert_eq!(next_event(&mut events, &call_id).await, CallEvent::Terminated { cause: EndCause::Local });
    assert!(ua.hangup(&call_id).await.is_err(), "a finished call cannot be hung up");

    sipp.assert_success().await;
    ua.shutdown().await;
}

/// Answered call, put on hold with a re-INVITE (a=sendonly) that the peer
/// answers a=recvonly, then hung up.
async fn answered_call_held_then_bye(transport: Transport) {
    if !sipp_available() {
        return;
    }
    let (ua, mut events) = start_ua().await;
    let sipp = Sipp::start("uas_reinvite.xml", transport).await;

    let call_id = ua.invite(invite(sipp.addr, transport)).await.expect("invite");
    assert_eq!(status_of(&next_event(&mut events, &call_id).await), Some((100, false)));
    assert_eq!(status_of(&next_event(&mut events, &call_id).await), Some((180, true)));
    assert_eq!(status_of(&next_event(&mut events, &call_id).await), Some((200, false)));

    let hold = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\na=sendonly\r\n";
    ua.reinvite(&call_id, hold.into()).await.expect("reinvite");
    let answer = next_event(&mut events, &call_id).await;
    let CallEvent::ReinviteResponse { status: 200, reason, sdp: Some(sdp) } = &answer else {
        panic!("expected 200 OK with SDP to the re-INVITE, got {answer:?}");
    };
    assert_eq!(reason, "OK");
    assert!(sdp.contains("a=recvonly"), "{sdp}");

    assert_eq!(ua.hangup(&call_id).await.expect("hangup"), HangupKind::Bye);
    assert_eq!(next_event(&mut events, &call_id).await, CallEvent::Terminated { cause: EndCause::Local });

    sipp.assert_success().await;
    ua.shutdown().await;
}

/// RFC 4028 with the gateway as refresher: a 4 s session is refreshed with a
/// re-INVITE after 2 s, silently (no event), then the call is hung up.
async fn session_refreshed_then_bye(transport: Transport) {
    if !sipp_available() {
        return;
    }
    let (ua, mut events) = start_ua_with(TimerConfig { session_expires: 4, min_se: 2, ..TimerConfig::default() }).await;
    let sipp = Sipp::start("uas_session_timer.xml", transport).await;

    let call_id = ua.invite(invite(sipp.addr, transport)).await.expect("invite");
    assert_eq!(status_of(&next_event(&mut events, &call_id).await), Some((200, false)));
    // The refresh goes at 2 s; the next one would be at 4 s.
    let quiet = tokio::time::timeout(Duration::from_millis(3000), events.recv()).await;
    assert!(quiet.is_err(), "the refresh must not be reported: {quiet:?}");

    assert_eq!(ua.hangup(&call_id).await.expect("hangup"), HangupKind::Bye);
    assert_eq!(next_event(&mut events, &call_id).await, CallEvent::Terminated { cause: EndCause::Local });

    sipp.assert_success().await;
    ua.shutdown().await;
}

/// A network that challenges the INVITE (401): the call's credentials answer it, sipp checks the
/// digest with its own `verifyauth`, answers, and the call ends with our BYE. With a wrong
/// password sipp refuses the retry with 403, which ends the call.
async fn challenged_call(transport: Transport, password: &str) {
    if !sipp_available() {
        return;
    }
    let (ua, mut events) = start_ua().await;
    let sipp = Sipp::start("uas_invite_digest.xml", transport).await;
    let credentials = camara_sip::Credentials { username: "+818000000001".into(), password: password.into() };
    let call_id =
        ua.invite(OutgoingInvite { credentials: Some(credentials), ..invite(sipp.addr, transport) }).await.unwrap();
    let event = next_event(&mut events, &call_id).await;
    if password == "secret" {
        // The 401 is answered, not reported.
        assert_eq!(status_of(&event), Some((200, false)), "{event:?}");
        assert_eq!(ua.hangup(&call_id).await.expect("hangup"), HangupKind::Bye);
        assert_eq!(next_event(&mut events, &call_id).await, CallEvent::Terminated { cause: EndCause::Local });
        sipp.assert_success().await;
    } else {
        assert_eq!(status_of(&event), Some((403, false)), "{event:?}");
        assert_eq!(
            next_event(&mut events, &call_id).await,
            CallEvent::Terminated { cause: EndCause::Rejected { status: 403 } }
        );
        let (success, report) = sipp.finish().await;
        assert!(!success, "sipp must refuse a wrong digest: {report}");
    }
    ua.shutdown().await;
}

async fn cancelled_call(transport: Transport, hangup_before_ringing: bool) {
    if !sipp_available() {
        return;
    }
    let (ua, mut events) = start_ua().await;
    let sipp = Sipp::start("uas_cancel.xml", transport).await;

    let call_id = ua.invite(invite(sipp.addr, transport)).await.expect("invite");
    if hangup_before_ringing {
        // sipp rings only after a 1 s pause: the CANCEL must wait for the 180.
        assert_eq!(ua.hangup(&call_id).await.expect("hangup"), HangupKind::Cancel);
        assert_eq!(status_of(&next_event(&mut events, &call_id).await), Some((180, false)));
    } else {
        assert_eq!(status_of(&next_event(&mut events, &call_id).await), Some((180, false)));
        assert_eq!(ua.hangup(&call_id).await.expect("hangup"), HangupKind::Cancel);
    }
    let terminated = next_event(&mut events, &call_id).await;
    assert!(
        matches!(&terminated, CallEvent::Response { status: 487, reason, .. } if reason == "Request Terminated"),
        "{terminated:?}"
    );
    assert_eq!(next_event(&mut events, &call_id).await, CallEvent::Terminated { cause: EndCause::Local });

    sipp.assert_success().await;
    ua.shutdown().await;
}

#[tokio::test]
async fn udp_answered_call_with_prack_then_bye() {
    answered_call_then_bye(Transport::Udp).await;
}

#[tokio::test]
async fn tcp_answered_call_with_prack_then_bye() {
    answered_call_then_bye(Transport::Tcp).await;
}

#[tokio::test]
async fn udp_answered_call_held_with_reinvite_then_bye() {
    answered_call_held_then_bye(Transport::Udp).await;
}

#[tokio::test]
async fn tcp_answered_call_held_with_reinvite_then_bye() {
    answered_call_held_then_bye(Transport::Tcp).await;
}

#[tokio::test]
async fn udp_cancel_after_ringing() {
    cancelled_call(Transport::Udp, false).await;
}

#[tokio::test]
async fn tcp_cancel_held_back_until_ringing() {
    cancelled_call(Transport::Tcp, true).await;
}

#[tokio::test]
async fn udp_call_ended_by_the_remote_party() {
    if !sipp_available() {
        return;
    }
    let (ua, mut events) = start_ua().await;
    let sipp = Sipp::start("uas_remote_bye.xml", Transport::Udp).await;

    let call_id = ua.invite(invite(sipp.addr, Transport::Udp)).await.expect("invite");
    assert_eq!(status_of(&next_event(&mut events, &call_id).await), Some((200, false)));
    let bye = next_event(&mut events, &call_id).await;
    let CallEvent::Request { headers, .. } = &bye else { panic!("not the BYE: {bye:?}") };
    // Every header of the peer's BYE is reported with it (the mapping plugin may read them).
    assert!(headers.iter().any(|(n, v)| n == "Reason" && v == "Q.850;cause=16"), "{headers:?}");
    assert!(headers.iter().any(|(n, _)| n == "CSeq"), "{headers:?}");
    assert_eq!(
        bye.without_headers(),
        CallEvent::Request { method: "BYE".into(), reason: Some("Q.850;cause=16".into()), sdp: None, headers: vec![] }
    );
    assert_eq!(next_event(&mut events, &call_id).await, CallEvent::Terminated { cause: EndCause::Remote });
    assert!(ua.hangup(&call_id).await.is_err());

    sipp.assert_success().await;
    ua.shutdown().await;
}

#[tokio::test]
async fn udp_session_timer_refreshed_by_the_gateway() {
    session_refreshed_then_bye(Transport::Udp).await;
}

#[tokio::test]
async fn tcp_session_timer_refreshed_by_the_gateway() {
    session_refreshed_then_bye(Transport::Tcp).await;
}

#[tokio::test]
async fn udp_challenged_invite_is_answered_with_digest_credentials() {
    challenged_call(Transport::Udp, "secret").await;
}

#[tokio::test]
async fn tcp_challenged_invite_is_answered_with_digest_credentials() {
    challenged_call(Transport::Tcp, "secret").await;
}

#[tokio::test]
async fn wrong_digest_credentials_end_the_call_with_the_refusal() {
    challenged_call(Transport::Udp, "not-the-secret").await;
}
