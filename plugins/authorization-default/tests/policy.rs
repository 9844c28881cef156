//! The default policy, run in isolation through the plugin harness.

use camara_plugin_harness::authorization::Decision;
use camara_plugin_harness::{Harness, HarnessError, build_component, fixtures};
use serde_json::json;

async fn policy(config: &[(&str, &str)]) -> camara_plugin_harness::AuthorizationPlugin {
    let wasm = build_component(env!("CARGO_MANIFEST_DIR")).expect("build");
    Harness::new().unwrap().authorization(&wasm, config).await.expect("load")
}

fn denied(decision: Decision) -> (u16, String, String) {
    match decision {
        Decision::Deny(e) => (e.status, e.code, e.message),
        Decision::Allow(s) => panic!("expected a denial, got {s:?}"),
    }
}

#[tokio::test]
async fn allows_the_scope_of_each_operation_and_names_the_subscriber() {
    let policy = policy(&[]).await;
    let cases = [
        ("webrtc-registration", "createRegistration", "webrtc-registration:sessions:create"),
        ("webrtc-registration", "deleteRegistrationById", "webrtc-registration:sessions:delete"),
        ("webrtc-call-handling", "createSession", "webrtc-call-handling:sessions:create"),
        ("webrtc-call-handling", "updateSessionStatus", "webrtc-call-handling:sessions:write"),
        ("webrtc-events", "retrieveNotificationChannelSubscription", "webrtc-events:read"),
        ("webrtc-events", "deleteNotificationChannelSubscription", "webrtc-events:delete"),
    ];
    for (api, op, scope) in cases {
        let req = fixtures::authorization_request(api, op, json!({"sub": "+818000000001", "scope": scope}));
        match policy.authorize(&req).await.unwrap() {
            Decision::Allow(s) => assert_eq!(s.phone_number.as_deref(), Some("+818000000001"), "{op}"),
            Decision::Deny(e) => panic!("{op} denied: {e:?}"),
        }
        let other_scope = fixtures::authorization_request(api, op, json!({"sub": "+818000000001", "scope": "openid"}));
        let (status, code, message) = denied(policy.authorize(&other_scope).await.unwrap());
        assert_eq!((status, code.as_str()), (403, "PERMISSION_DENIED"), "{op}");
        assert!(message.contains(scope), "{message}");
    }
}

#[tokio::test]
async fn event_subscriptions_need_the_create_scope_of_every_type() {
    let policy = policy(&[]).await;
    let status_type = "org.camaraproject.webrtc-events.v0.session-status";
    let invitation_type = "org.camaraproject.webrtc-events.v0.session-invitation";
    let scope = format!("webrtc-events:{status_type}:create");
    let mut req = fixtures::authorization_request(
        "webrtc-events",
        "createNotificationChannelSubscription",
        json!({"sub": "+818000000001", "scope": scope}),
    );
    req.request.event_types = vec![status_type.into()];
    assert!(matches!(policy.authorize(&req).await.unwrap(), Decision::Allow(_)));
    req.request.event_types.push(invitation_type.into());
    let (_, code, message) = denied(policy.authorize(&req).await.unwrap());
    assert_eq!(code, "PERMISSION_DENIED");
    assert!(message.contains(invitation_type), "{message}");
}

#[tokio::test]
async fn the_phone_number_comes_from_the_configured_claim() {
    let policy = policy(&[("phone-number-claim", "msisdn")]).await;
    let req = fixtures::authorization_request(
        "webrtc-registration",
        "createRegistration",
        json!({"sub": "opaque-user-42", "msisdn": "818000000009", "scope": "webrtc-registration:sessions:create"}),
    );
    match policy.authorize(&req).await.unwrap() {
        Decision::Allow(s) => {
            assert_eq!(s.phone_number.as_deref(), Some("+818000000009"));
            assert_eq!(s.subject.as_deref(), Some("opaque-user-42"));
        }
        Decision::Deny(e) => panic!("{e:?}"),
    }
}

#[tokio::test]
async fn a_token_without_a_subscriber_cannot_act_for_one() {
    let policy = policy(&[]).await;
    let req = fixtures::authorization_request(
        "webrtc-registration",
        "createRegistration",
        json!({"sub": "client-app", "scope": "webrtc-registration:sessions:create"}),
    );
    let (status, code, _) = denied(policy.authorize(&req).await.unwrap());
    assert_eq!((status, code.as_str()), (403, "INVALID_TOKEN_CONTEXT"));
    // webrtc-events lists 422 MISSING_IDENTIFIER for it where it has a 422, else only PERMISSION_DENIED.
    let status_type = "org.camaraproject.webrtc-events.v0.session-status";
    let mut create = fixtures::authorization_request(
        "webrtc-events",
        "createNotificationChannelSubscription",
        json!({"sub": "client-app", "scope": format!("webrtc-events:{status_type}:create")}),
    );
    create.request.event_types = vec![status_type.into()];
    let (status, code, _) = denied(policy.authorize(&create).await.unwrap());
    assert_eq!((status, code.as_str()), (422, "MISSING_IDENTIFIER"));
    let read = fixtures::authorization_request(
        "webrtc-events",
        "retrieveNotificationChannelSubscription",
        json!({"sub": "client-app", "scope": "webrtc-events:read"}),
    );
    let (status, code, _) = denied(policy.authorize(&read).await.unwrap());
    assert_eq!((status, code.as_str()), (403, "PERMISSION_DENIED"));
}

#[tokio::test]
async fn the_originator_must_be_the_subscriber_unless_anonymous() {
    let policy = policy(&[]).await;
    let mut req = fixtures::authorization_request(
        "webrtc-call-handling",
        "createSession",
        json!({"sub": "+818000000001", "scope": "webrtc-call-handling:sessions:create"}),
    );
    req.request.addresses = vec!["tel:+818000000077".into(), "tel:+818000000002".into()];
    let (_, code, message) = denied(policy.authorize(&req).await.unwrap());
    assert_eq!(code, "INVALID_TOKEN_CONTEXT");
    assert!(message.contains("originatorAddress"));
    req.request.addresses[0] = "sip:anonymous@anonymous.invalid".into();
    assert!(matches!(policy.authorize(&req).await.unwrap(), Decision::Allow(_)));
    req.request.addresses[0] = "sip:+818000000001@operator.example;user=phone".into();
    assert!(matches!(policy.authorize(&req).await.unwrap(), Decision::Allow(_)));
}

#[tokio::test]
async fn unknown_configuration_is_refused_at_load() {
    let wasm = build_component(env!("CARGO_MANIFEST_DIR")).unwrap();
    let err = Harness::new().unwrap().authorization(&wasm, &[("phone-claim", "x")]).await.err().expect("refused");
    match err {
        HarnessError::Plugin(camara_plugin_harness::PluginError::InvalidConfig { reason, .. }) => {
            assert!(reason.contains("phone-claim"), "{reason}")
        }
        other => panic!("unexpected {other}"),
    }
}
