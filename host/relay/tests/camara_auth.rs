//! The standalone relay with real token verification (`camara-auth` against the test JWKS of
//! `tests/fixtures/`), and the `camara-auth` adapter on its own.

use std::path::PathBuf;
use std::sync::Arc;

use camara_relay::{DeviceAuthenticator, DeviceIdentity, RelayConfig, TokenVerifierAuthenticator};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const ISSUER: &str = "https://auth.operator.test";
const AUDIENCE: &str = "camara-webrtc-gateway";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(name)
}

fn claims(extra: Value) -> Value {
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "iat": now, "exp": now + 600});
    claims.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    claims
}

fn sign_with(claims: &Value, key_file: &str) -> String {
    let key = EncodingKey::from_rsa_pem(&std::fs::read(fixture(key_file)).unwrap()).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test-rs256".into());
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn sign(claims: &Value) -> String {
    sign_with(claims, "rs256-test-key.pem")
}

fn verifier_config() -> camara_auth::VerifierConfig {
    camara_auth::VerifierConfig {
        jwks_file: Some(fixture("jwks.json")),
        issuers: vec![ISSUER.into()],
        audiences: vec![AUDIENCE.into()],
        ..Default::default()
    }
}

async fn call(method: &str, url: &str, token: &str) -> (u16, Value) {
    use http_body_util::{BodyExt, Full};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let request = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(axum::body::Bytes::new()))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, if body.is_empty() { Value::Null } else { serde_json::from_slice(&body).unwrap() })
}

#[tokio::test]
async fn the_standalone_relay_verifies_device_tokens_with_camara_auth() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = RelayConfig { auth: verifier_config(), ..Default::default() };
    tokio::spawn(camara_relay::serve(config, listener));
    let base = format!("http://{addr}/relay");

    let alice = sign(&claims(json!({"phone_number": "+818000000001"})));
    let (status, channel) = call("POST", &format!("{base}/channels"), &alice).await;
    assert_eq!(status, 201, "{channel}");
    let id = channel["channelId"].as_str().unwrap();
    assert_eq!(channel["sinkUrl"], format!("{base}/sink/{id}"), "the base URL comes from the listener");
    assert_eq!(channel["websocketUrl"], format!("ws://{addr}/relay/channels/{id}/ws"));

    // Another token of the same identity is the owner.
    let again = sign(&claims(json!({"phone_number": "+818000000001", "jti": "2"})));
    assert_eq!(call("GET", &format!("{base}/channels/{id}"), &again).await.0, 200);
    // Same subject, another phone number: another identity.
    let other = sign(&claims(json!({"phone_number": "+818000000002"})));
    assert_eq!(call("GET", &format!("{base}/channels/{id}"), &other).await.0, 404);

    let untrusted = sign_with(&claims(json!({})), "untrusted-rs256-key.pem");
    let (status, body) = call("POST", &format!("{base}/channels"), &untrusted).await;
    assert_eq!(status, 401, "{body}");
    let expired = sign(&claims(json!({"exp": chrono::Utc::now().timestamp() - 3600})));
    assert_eq!(call("POST", &format!("{base}/channels"), &expired).await.0, 401);
    let wrong_audience = sign(&claims(json!({"aud": "someone-else"})));
    assert_eq!(call("POST", &format!("{base}/channels"), &wrong_audience).await.0, 401);
}

#[tokio::test]
async fn the_adapter_reads_subject_and_the_configured_phone_number_claim() {
    let verifier = Arc::new(camara_auth::TokenVerifier::new(verifier_config()).unwrap());
    let auth = TokenVerifierAuthenticator::new(verifier.clone(), "msisdn");
    assert_eq!(
        auth.authenticate(&sign(&claims(json!({"msisdn": "+818000000001", "phone_number": "ignored"})))).await,
        Ok(DeviceIdentity { subject: "user-1".into(), phone_number: Some("+818000000001".into()) })
    );
    assert_eq!(
        auth.authenticate(&sign(&claims(json!({})))).await,
        Ok(DeviceIdentity { subject: "user-1".into(), phone_number: None })
    );
    assert!(auth.authenticate(&sign(&claims(json!({"msisdn": 81})))).await.is_err());
    let mut no_subject = claims(json!({}));
    no_subject.as_object_mut().unwrap().remove("sub");
    assert!(auth.authenticate(&sign(&no_subject)).await.unwrap_err().contains("subject"));
    assert!(auth.authenticate("not-a-token").await.is_err());

    // The standalone relay refuses to start without any token verification.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = camara_relay::serve(RelayConfig::default(), listener).await.unwrap_err();
    assert!(matches!(err, camara_relay::RelayError::Config(_)), "{err}");
}
