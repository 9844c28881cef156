//! The default mapping, run in isolation through the plugin harness.

use camara_plugin_harness::mapping::{CallDirection, IncomingInvite, NameAddr, SessionStatus, SipEvent, SipRequest};
use camara_plugin_harness::{Harness, MappingPlugin, PluginKind, build_component, fixtures};
use serde_json::json;

async fn mapping(config: &[(&str, &str)]) -> MappingPlugin {
    let wasm = build_component(env!("CARGO_MANIFEST_DIR")).expect("build");
    Harness::new().unwrap().mapping(&wasm, config).await.expect("load")
}

#[tokio::test]
async fn an_outgoing_call_becomes_the_invite_of_the_call_flow() {
    let mapping = mapping(&[("home-domain", "operator.com"), ("network-domain", "tn.operator.com")]).await;
    let mut call = fixtures::outgoing_call("tel:+818000000001", "tel:+818000000002");
    call.originator_name = Some("Alice".into());
    let plan = mapping.map_outgoing_call(&call, &fixtures::network_context()).await.unwrap().unwrap();
    assert_eq!(plan.request_uri, "sip:+818000000002@tn.operator.com;user=phone");
    assert_eq!(plan.from.uri, "sip:+818000000001@operator.com;user=phone");
    assert_eq!(plan.from.display_name.as_deref(), Some("Alice"));
    assert_eq!(plan.to.uri, plan.request_uri);
    assert_eq!(plan.p_asserted_identity.unwrap().uri, "sip:+818000000001@operator.com;user=phone");
    assert_eq!(plan.privacy, None);
}

#[tokio::test]
async fn anonymous_callers_are_hidden_but_asserted() {
    let mapping = mapping(&[]).await;
    let mut call = fixtures::outgoing_call("sip:anonymous@anonymous.invalid", "tel:+818000000002");
    call.subscriber_phone_number = Some("+818000000001".into());
    let plan = mapping.map_outgoing_call(&call, &fixtures::network_context()).await.unwrap().unwrap();
    assert_eq!(plan.from.uri, "sip:anonymous@anonymous.invalid");
    assert_eq!(plan.privacy.as_deref(), Some("id"));
    assert_eq!(plan.p_asserted_identity.unwrap().uri, "sip:+818000000001@gateway.example;user=phone");
}

#[tokio::test]
async fn sip_outcomes_read_as_camara_statuses() {
    let mapping = mapping(&[]).await;
    let cases = [
        (100, "Trying", None),
        (180, "Ringing", Some(SessionStatus::Ringing)),
        (183, "Session Progress", Some(SessionStatus::InProgress)),
        (200, "OK", Some(SessionStatus::Connected)),
        (486, "Busy Here", Some(SessionStatus::Busy)),
        (487, "Request Terminated", Some(SessionStatus::SessionCancelled)),
        (603, "Decline", Some(SessionStatus::Declined)),
        (404, "Not Found", Some(SessionStatus::NotReachable)),
        (480, "Temporarily Unavailable", Some(SessionStatus::NotReachable)),
        (408, "Request Timeout", Some(SessionStatus::NoAnswer)),
        (503, "Service Unavailable", Some(SessionStatus::Failed)),
    ];
    for (code, phrase, expected) in cases {
        let update =
            mapping.map_sip_event(&fixtures::invite_response(code, phrase), CallDirection::Outgoing).await.unwrap();
        assert_eq!(update.map(|u| u.status), expected, "{code}");
    }
    let bye = SipEvent::Request(SipRequest { method: "BYE".into(), reason: None, has_sdp: false });
    let update = mapping.map_sip_event(&bye, CallDirection::Outgoing).await.unwrap().unwrap();
    assert_eq!((update.status, update.reason.as_str()), (SessionStatus::Terminated, "Call terminated by receiver"));
    let hangup = SipEvent::LocalHangup("BYE".into());
    let update = mapping.map_sip_event(&hangup, CallDirection::Outgoing).await.unwrap().unwrap();
    assert_eq!(update.reason, "Call terminated by originator");
}

#[tokio::test]
async fn incoming_invites_find_their_subscriber() {
    let mapping = mapping(&[]).await;
    let invite = IncomingInvite {
        request_uri: "sip:+818000000001@gateway.example;user=phone".into(),
        from: NameAddr { display_name: Some("Bob".into()), uri: "sip:+818000000002@tn.operator.com;user=phone".into() },
        to: NameAddr { display_name: None, uri: "sip:+818000000001@operator.com;user=phone".into() },
        p_asserted_identity: None,
        privacy: None,
        headers: Vec::new(),
    };
    let call = mapping.map_incoming_call(&invite).await.unwrap().unwrap();
    assert_eq!(call.target_phone_number, "+818000000001");
    assert_eq!(call.originator_address, "tel:+818000000002");
    assert_eq!(call.originator_name.as_deref(), Some("Bob"));
    let unknown = IncomingInvite {
        request_uri: "sip:service@gateway.example".into(),
        to: NameAddr { display_name: None, uri: "sip:service@x.example".into() },
        ..invite
    };
    assert_eq!(mapping.map_incoming_call(&unknown).await.unwrap().unwrap_err().status_code, 404);
}

#[tokio::test]
async fn registration_mode_is_configurable() {
    let request = camara_plugin_harness::mapping::RegistrationRequest {
        phone_number: "+818000000001".into(),
        device_id: "7d444840-9dc0-11d1-b245-5ffdce74fad2".into(),
        registration_id: "reg-1".into(),
    };
    let plan = mapping(&[]).await.map_registration(&request, &fixtures::network_context()).await.unwrap().unwrap();
    assert!(!plan.send_register);
    let accounts = mapping(&[("registration-mode", "sip-account"), ("home-domain", "operator.com")]).await;
    let plan = accounts.map_registration(&request, &fixtures::network_context()).await.unwrap().unwrap();
    assert!(plan.send_register);
    assert_eq!(plan.aor, "sip:+818000000001@operator.com");
}

#[tokio::test]
async fn the_json_interface_takes_one_member_per_parameter() {
    let wasm = build_component(env!("CARGO_MANIFEST_DIR")).unwrap();
    let out = Harness::new()
        .unwrap()
        .call_json(
            PluginKind::ApiMapping,
            &wasm,
            &[],
            "map-sip-event",
            json!({"event": {"InviteResponse": {"status_code": 180, "reason_phrase": "Ringing", "has_sdp": false, "reliable": true}}, "direction": "Outgoing"}),
        )
        .await
        .unwrap();
    assert_eq!(out["status"], "Ringing");
    assert_eq!(out["reason"], "180 Ringing received from remote endpoint");
}
