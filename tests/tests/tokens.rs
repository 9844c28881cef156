//! Access tokens are verified by the host before any plugin sees them: bad signatures, algorithms,
//! issuers, audiences and times get 401; a valid token without the operation's scope gets 403.

use camara_gateway::config::SipTransportName;
use camara_gateway_tests::*;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

async fn register_with(api: &Api, token: &str) -> Reply {
    api.call(
        "POST",
        "/webrtc-registration/v0.3/sessions",
        Some(token),
        &[("x-correlator", "tok-1")],
        Some(json!({"deviceId": DEVICE_ID})),
    )
    .await
}

fn assert_camara_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{:?}", reply.body);
    assert_eq!(reply.body["status"], status);
    assert_eq!(reply.body["code"], code);
    assert!(reply.body["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(reply.headers["x-correlator"], "tok-1");
}

fn b64(v: &Value) -> String {
    use std::fmt::Write;
    // Unpadded base64url, enough for hand-made tokens.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = v.to_string().into_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            let _ = out.write_char(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test]
async fn bad_tokens_are_unauthenticated_and_missing_scopes_forbidden() {
    init_logs();
    let gateway = camara_gateway::start(gateway_config(None, SipTransportName::Udp)).await.unwrap();
    let api = Api::new(gateway.http_addr);
    let now = chrono::Utc::now().timestamp();
    let valid = tokens::claims(ALICE, ALL_SCOPES);

    let with = |key: &str, value: Value| {
        let mut c = valid.clone();
        c[key] = value;
        c
    };
    let cases: Vec<(&str, String)> = vec![
        ("expired", tokens::sign(&with("exp", json!(now - 3600)))),
        ("not yet valid", tokens::sign(&with("nbf", json!(now + 3600)))),
        ("wrong issuer", tokens::sign(&with("iss", json!("https://evil.example")))),
        ("wrong audience", tokens::sign(&with("aud", json!("another-api")))),
        ("untrusted key", tokens::sign_with(&valid, Algorithm::RS256, "test-rs256", "untrusted-rs256-key.pem")),
        ("unknown kid", tokens::sign_with(&valid, Algorithm::RS256, "nobody", "rs256-test-key.pem")),
        ("alg none", format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT", "kid": "test-rs256"})), b64(&valid))),
        (
            "HS256 keyed with the public JWKS",
            jsonwebtoken::encode(
                &jsonwebtoken::Header { kid: Some("test-rs256".into()), ..jsonwebtoken::Header::new(Algorithm::HS256) },
                &valid,
                &jsonwebtoken::EncodingKey::from_secret(&std::fs::read(fixture("jwks.json")).unwrap()),
            )
            .unwrap(),
        ),
        ("garbage", "not-a-jwt".into()),
    ];
    for (what, token) in cases {
        let reply = register_with(&api, &token).await;
        assert_eq!(reply.status, 401, "{what}: {:?}", reply.body);
        assert_camara_error(&reply, 401, "UNAUTHENTICATED");
    }
    let missing = api
        .call(
            "POST",
            "/webrtc-registration/v0.3/sessions",
            None,
            &[("x-correlator", "tok-1")],
            Some(json!({"deviceId": DEVICE_ID})),
        )
        .await;
    assert_camara_error(&missing, 401, "UNAUTHENTICATED");

    let no_scope = tokens::sign(&tokens::claims(ALICE, "openid webrtc-call-handling:sessions:create"));
    let reply = register_with(&api, &no_scope).await;
    assert_camara_error(&reply, 403, "PERMISSION_DENIED");

    let es256 = tokens::sign_with(&valid, Algorithm::ES256, "test-es256", "es256-test-key.pem");
    assert_eq!(register_with(&api, &es256).await.status, 201, "ES256 is accepted");
    let again = register_with(&api, &tokens::sign(&valid)).await;
    assert_camara_error(&again, 409, "ALREADY_EXISTS");
    gateway.stop().await;
}

#[tokio::test]
async fn another_subscribers_resources_are_not_found() {
    init_logs();
    let gateway = camara_gateway::start(gateway_config(None, SipTransportName::Udp)).await.unwrap();
    let api = Api::new(gateway.http_addr);
    let alice = tokens::for_subscriber(ALICE);
    let bob = tokens::for_subscriber(BOB);
    let registration = api.register(&alice).await;
    let id = registration.body["registrationId"].as_str().unwrap();
    let path = format!("/webrtc-registration/v0.3/sessions/{id}");
    assert_eq!(api.call("GET", &path, Some(&alice), &[], None).await.status, 200);
    let stolen = api.call("GET", &path, Some(&bob), &[], None).await;
    assert_eq!(stolen.status, 404, "{:?}", stolen.body);
    assert!(!stolen.body.to_string().contains(ALICE), "no data of another subscriber");
    assert_eq!(api.call("DELETE", &path, Some(&bob), &[], None).await.status, 404);
    // Bob cannot place a call on Alice's registration, nor as Alice.
    let call = api.call_number(&bob, id, BOB, &format!("tel:{ALICE}")).await;
    assert_eq!((call.status, call.body["code"].as_str()), (400, Some("INVALID_ARGUMENT")), "{:?}", call.body);
    assert!(!call.body.to_string().contains(ALICE), "no data of another subscriber");
    let bobs = api.register(&bob).await.body["registrationId"].as_str().unwrap().to_string();
    let spoof = api.call_number(&bob, &bobs, ALICE, "tel:+818000000003").await;
    assert_eq!((spoof.status, spoof.body["code"].as_str()), (403, Some("INVALID_TOKEN_CONTEXT")));
    gateway.stop().await;
}

#[tokio::test]
async fn malformed_requests_get_camara_errors() {
    init_logs();
    let gateway = camara_gateway::start(gateway_config(None, SipTransportName::Udp)).await.unwrap();
    let api = Api::new(gateway.http_addr);
    let token = tokens::for_subscriber(ALICE);
    let bad_device = api
        .call("POST", "/webrtc-registration/v0.3/sessions", Some(&token), &[], Some(json!({"deviceId": "phone-1"})))
        .await;
    assert_eq!((bad_device.status, bad_device.body["code"].as_str()), (400, Some("INVALID_ARGUMENT")));
    let unknown_field = api
        .call(
            "POST",
            "/webrtc-registration/v0.3/sessions",
            Some(&token),
            &[],
            Some(json!({"deviceId": DEVICE_ID, "x": 1})),
        )
        .await;
    assert_eq!(unknown_field.status, 201, "a member the schema does not name is ignored: {:?}", unknown_field.body);
    let registration_id = unknown_field.body["registrationId"].as_str().unwrap().to_string();
    let bad_address = api.call_number(&token, &registration_id, ALICE, "tel:12").await;
    assert_eq!((bad_address.status, bad_address.body["code"].as_str()), (400, Some("INVALID_ARGUMENT")));
    let no_hop = api.call_number(&token, &registration_id, ALICE, &format!("tel:{BOB}")).await;
    assert_eq!((no_hop.status, no_hop.body["code"].as_str()), (503, Some("UNAVAILABLE")));
    let no_registration = api
        .call("POST", "/webrtc-call-handling/v0.3/sessions", Some(&token), &[], Some(json!({"originatorAddress": format!("tel:{ALICE}"), "receiverAddress": format!("tel:{BOB}"), "offer": {"sdp": WEBRTC_OFFER}})))
        .await;
    assert_eq!(no_registration.status, 400);
    let subscription = |protocol: &str, credential_type: &str, token_type: &str| {
        json!({
            "protocol": protocol, "sink": "https://203.0.113.9/hook", "types": [SESSION_STATUS],
            "config": {"subscriptionDetail": {"deviceId": DEVICE_ID}},
            "sinkCredential": {"credentialType": credential_type, "accessToken": "t",
                               "accessTokenExpiresUtc": "2099-01-01T00:00:00Z", "accessTokenType": token_type}
        })
    };
    for (body, code) in [
        (subscription("MQTT3", "ACCESSTOKEN", "bearer"), "INVALID_PROTOCOL"),
        (subscription("HTTP", "PLAIN", "bearer"), "INVALID_CREDENTIAL"),
        (subscription("HTTP", "ACCESSTOKEN", "mac"), "INVALID_TOKEN"),
    ] {
        let reply = api.call("POST", "/webrtc-events/v0.2/subscriptions", Some(&token), &[], Some(body)).await;
        assert_eq!((reply.status, reply.body["code"].as_str()), (400, Some(code)));
    }
    let insecure_sink = api.subscribe(&token, "http://203.0.113.9/hook", "t").await;
    assert_eq!((insecure_sink.status, insecure_sink.body["code"].as_str()), (400, Some("INVALID_SINK")));
    let unknown =
        api.call("GET", "/webrtc-call-handling/v0.3/nothing", Some(&token), &[("x-correlator", "c-9")], None).await;
    assert_eq!((unknown.status, unknown.body["code"].as_str()), (404, Some("NOT_FOUND")));
    assert_eq!(unknown.headers["x-correlator"], "c-9");
    gateway.stop().await;
}

#[tokio::test]
async fn a_client_over_its_rate_limit_gets_429_and_others_do_not() {
    init_logs();
    let mut config = gateway_config(None, SipTransportName::Udp);
    config.api.rate_limit_per_second = 1;
    config.api.rate_limit_burst = 3;
    let gateway = camara_gateway::start(config).await.unwrap();
    let api = Api::new(gateway.http_addr);
    let alice = tokens::for_subscriber(ALICE);
    let statuses: Vec<u16> = statuses_of_list_calls(&api, &alice, 5).await;
    assert_eq!(&statuses[..3], &[200, 200, 200], "{statuses:?}");
    assert!(statuses[3..].iter().all(|s| *s == 429), "{statuses:?}");
    let limited =
        api.call("GET", "/webrtc-events/v0.2/subscriptions", Some(&alice), &[("x-correlator", "tok-1")], None).await;
    assert_camara_error(&limited, 429, "TOO_MANY_REQUESTS");
    let bob = tokens::for_subscriber(BOB);
    assert_eq!(
        api.call("GET", "/webrtc-events/v0.2/subscriptions", Some(&bob), &[], None).await.status,
        200,
        "another client has its own budget"
    );
    gateway.stop().await;
}

async fn statuses_of_list_calls(api: &Api, token: &str, n: usize) -> Vec<u16> {
    let mut statuses = Vec::new();
    for _ in 0..n {
        statuses.push(api.call("GET", "/webrtc-events/v0.2/subscriptions", Some(token), &[], None).await.status);
    }
    statuses
}

#[tokio::test]
async fn a_token_naming_no_subscriber_is_refused_as_each_api_says() {
    init_logs();
    let gateway = camara_gateway::start(gateway_config(None, SipTransportName::Udp)).await.unwrap();
    let api = Api::new(gateway.http_addr);
    // A client-credentials token: valid, with every scope, but no phone number in `sub`.
    let token = tokens::sign(&tokens::claims("client-app", ALL_SCOPES));
    let correlator = [("x-correlator", "tok-1")];
    assert_camara_error(&register_with(&api, &token).await, 403, "INVALID_TOKEN_CONTEXT");
    let subscription = json!({
        "protocol": "HTTP",
        "sink": "https://sink.example.com/events",
        "types": [SESSION_STATUS],
        "config": {"subscriptionDetail": {"deviceId": DEVICE_ID}}
    });
    let create =
        api.call("POST", "/webrtc-events/v0.2/subscriptions", Some(&token), &correlator, Some(subscription)).await;
    assert_camara_error(&create, 422, "MISSING_IDENTIFIER");
    let list = api.call("GET", "/webrtc-events/v0.2/subscriptions", Some(&token), &correlator, None).await;
    assert_camara_error(&list, 403, "PERMISSION_DENIED");
    gateway.stop().await;
}
