//! The default mapping, run in isolation through the plugin harness.

use camara_plugin_harness::mapping::{IncomingInvite, NameAddr, Pair, SessionStatus, SipEvent, SipRequest};
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
    let plan = mapping
        .map_outgoing_call(&call, &fixtures::outgoing_call_context(), &fixtures::network_context())
        .await
        .unwrap()
        .unwrap();
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
    let plan = mapping
        .map_outgoing_call(&call, &fixtures::outgoing_call_context(), &fixtures::network_context())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(plan.from.uri, "sip:anonymous@anonymous.invalid");
    assert_eq!(plan.privacy.as_deref(), Some("id"));
    assert_eq!(plan.p_asserted_identity.unwrap().uri, "sip:+818000000001@gateway.example;user=phone");
}

#[tokio::test]
async fn sip_outcomes_read_as_camara_statuses() {
    let mapping = mapping(&[]).await;
    let call = fixtures::outgoing_call_context();
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
        let update = mapping.map_sip_event(&fixtures::invite_response(code, phrase), &call).await.unwrap();
        assert_eq!(update.map(|u| u.status), expected, "{code}");
    }
    let bye = SipEvent::Request(SipRequest { method: "BYE".into(), reason: None, has_sdp: false, headers: vec![] });
    let update = mapping.map_sip_event(&bye, &call).await.unwrap().unwrap();
    assert_eq!((update.status, update.reason.as_str()), (SessionStatus::Terminated, "Call terminated by receiver"));
    let hangup = SipEvent::LocalHangup("BYE".into());
    let update = mapping.map_sip_event(&hangup, &call).await.unwrap().unwrap();
    assert_eq!(update.reason, "Call terminated by originator");
}

#[tokio::test]
async fn a_refusal_names_the_cause_its_reason_header_gives() {
    let mapping = mapping(&[]).await;
    let mut busy = fixtures::invite_response(486, "Busy Here");
    if let SipEvent::InviteResponse(r) = &mut busy {
        r.headers = vec![
            Pair::new("Via", "SIP/2.0/UDP gateway.example;branch=z9hG4bK1"),
            Pair::new("reason", "Q.850;cause=17;text=\"User busy\""),
        ];
    }
    let update = mapping.map_sip_event(&busy, &fixtures::outgoing_call_context()).await.unwrap().unwrap();
    assert_eq!(update.status, SessionStatus::Busy);
    assert_eq!(update.reason, "486 Busy Here: remote endpoint busy (Reason: Q.850;cause=17;text=\"User busy\")");
    let plain = fixtures::invite_response(486, "Busy Here");
    let update = mapping.map_sip_event(&plain, &fixtures::outgoing_call_context()).await.unwrap().unwrap();
    assert_eq!(update.reason, "486 Busy Here: remote endpoint busy");
}

#[tokio::test]
async fn an_emergency_call_carries_its_typed_location_as_pidf_lo() {
    let mapping = mapping(&[("home-domain", "operator.com")]).await;
    let mut call = fixtures::outgoing_call("tel:+818000000001", "urn:service:sos");
    call.call_type = camara_plugin_harness::mapping::CallType::Emergency;
    call.location = Some(json!({
        "shape": "Circle",
        "coordinates": {"latitude": 35.6, "longitude": 139.7, "radius": 30},
        "confidence": {"value": 90, "pdf": "normal"}
    }));
    let context = fixtures::outgoing_call_context();
    let plan = mapping.map_outgoing_call(&call, &context, &fixtures::network_context()).await.unwrap().unwrap();
    let document = &plan.body_parts[0].body;
    assert!(document.contains("<gml:pos>35.6 139.7</gml:pos>") && document.contains(">30</gs:radius>"), "{document}");
    assert!(plan.extra_headers.iter().any(|h| h.name == "Geolocation"), "{:?}", plan.extra_headers);
    // A location the typed record cannot hold is refused before the plugin runs.
    call.location = Some(json!({"shape": "Polygon", "coordinates": {"latitude": 1, "longitude": 2}}));
    let refused = mapping.map_outgoing_call(&call, &context, &fixtures::network_context()).await.unwrap().unwrap_err();
    assert_eq!((refused.status, refused.code.as_str()), (400, "INVALID_ARGUMENT"), "{refused:?}");
    // One the plugin refuses: a circle without a radius.
    call.location = Some(json!({"coordinates": {"latitude": 1, "longitude": 2}}));
    let refused = mapping.map_outgoing_call(&call, &context, &fixtures::network_context()).await.unwrap().unwrap_err();
    assert!(refused.message.contains("radius"), "{refused:?}");
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
    let call = mapping.map_incoming_call(&invite, "c1@network.example").await.unwrap().unwrap();
    assert_eq!(call.target_phone_number, "+818000000001");
    assert_eq!(call.originator_address, "tel:+818000000002");
    assert_eq!(call.originator_name.as_deref(), Some("Bob"));
    let unknown = IncomingInvite {
        request_uri: "sip:service@gateway.example".into(),
        to: NameAddr { display_name: None, uri: "sip:service@x.example".into() },
        ..invite
    };
    assert_eq!(mapping.map_incoming_call(&unknown, "c2@network.example").await.unwrap().unwrap_err().status_code, 404);
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
            json!({
                "event": {"InviteResponse": {"status_code": 180, "reason_phrase": "Ringing", "has_sdp": false, "reliable": true}},
                "call": {"session_id": "s1", "direction": "Outgoing", "call_id": "c1@gateway.example"}
            }),
        )
        .await
        .unwrap();
    assert_eq!(out["status"], "Ringing");
    assert_eq!(out["reason"], "180 Ringing received from remote endpoint");
}
