//! Registration against a real SIP peer: sipp playing a registrar that
//! challenges with HTTP Digest. Skipped (with a message) when `sipp` is not
//! installed. sipp only checks that the Authorization is there and well
//! formed; the digest value is checked against the RFC 7616 vectors in the
//! unit tests.

use camara_sip::{CallEvent, RegisterRequest, RegistrationEvent, Transport, UaEvent};
use tokio::sync::mpsc::UnboundedReceiver;

mod common;
use common::*;

async fn next_registration_event(events: &mut UnboundedReceiver<UaEvent>, binding: &str) -> RegistrationEvent {
    let event = tokio::time::timeout(STEP, events.recv())
        .await
        .expect("no registration event in time")
        .expect("event channel closed");
    assert_eq!(event.call_id, binding);
    match event.event {
        CallEvent::Registration(e) => e,
        other => panic!("expected a registration event, got {other:?}"),
    }
}

async fn register_with_digest_then_unregister(transport: Transport) {
    if !sipp_available() {
        return;
    }
    let (ua, mut events) = start_ua().await;
    let sipp = Sipp::start("uas_register_digest.xml", transport).await;

    let binding = ua
        .register(RegisterRequest {
            registrar: sipp.addr,
            transport,
            domain: "operator.com".into(),
            aor: "sip:+818000000001@operator.com".into(),
            contact_user: "+818000000001".into(),
            username: "+818000000001".into(),
            password: "secret".into(),
            expires: 3600,
        })
        .await
        .expect("register");
    // The Contact's expires parameter wins over the Expires header.
    assert_eq!(next_registration_event(&mut events, &binding).await, RegistrationEvent::Registered { expires: 1200 });

    ua.unregister(&binding).await.expect("unregister");
    assert_eq!(next_registration_event(&mut events, &binding).await, RegistrationEvent::Unregistered);
    assert!(ua.unregister(&binding).await.is_err(), "a removed binding cannot be unregistered again");

    sipp.assert_success().await;
    ua.shutdown().await;
}

#[tokio::test]
async fn udp_register_with_digest_then_unregister() {
    register_with_digest_then_unregister(Transport::Udp).await;
}

#[tokio::test]
async fn tcp_register_with_digest_then_unregister() {
    register_with_digest_then_unregister(Transport::Tcp).await;
}
