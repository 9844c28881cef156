//! End-to-end checks of `TokenVerifier` against a real local authorization server (discovery,
//! JWKS, introspection on 127.0.0.1) with tokens signed by the keys in `tests/fixtures`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use camara_auth::{AuthError, IntrospectionConfig, TokenVerifier, VerifierConfig};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const AUDIENCE: &str = "camara-webrtc";
const CLIENT_ID: &str = "gateway";
const CLIENT_SECRET: &str = "s3cret:&=";

// ---------------------------------------------------------------- the authorization server

struct Idp {
    base: String,
    /// What `/jwks` serves; tests swap it to simulate key rotation.
    jwks: Mutex<String>,
    jwks_hits: AtomicUsize,
    discovery_hits: AtomicUsize,
    introspection_hits: AtomicUsize,
    /// Introspection answers by token; unknown tokens are inactive.
    introspection: Mutex<HashMap<String, Value>>,
    /// The `issuer` the discovery document claims (normally `base`).
    discovery_issuer: Mutex<Option<String>>,
}

impl Idp {
    async fn start() -> Arc<Idp> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let idp = Arc::new(Idp {
            base,
            jwks: Mutex::new(fixture_text("jwks.json")),
            jwks_hits: AtomicUsize::new(0),
            discovery_hits: AtomicUsize::new(0),
            introspection_hits: AtomicUsize::new(0),
            introspection: Mutex::new(HashMap::new()),
            discovery_issuer: Mutex::new(None),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/introspect", post(introspect))
            .with_state(idp.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        idp
    }

    fn jwks_url(&self) -> String {
        format!("{}/jwks", self.base)
    }

    fn jwks_hits(&self) -> usize {
        self.jwks_hits.load(Ordering::SeqCst)
    }
}

async fn discovery(State(idp): State<Arc<Idp>>) -> Json<Value> {
    idp.discovery_hits.fetch_add(1, Ordering::SeqCst);
    let issuer = idp.discovery_issuer.lock().unwrap().clone().unwrap_or_else(|| idp.base.clone());
    Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{}/jwks", idp.base),
        "introspection_endpoint": format!("{}/introspect", idp.base),
    }))
}

async fn jwks(State(idp): State<Arc<Idp>>) -> String {
    idp.jwks_hits.fetch_add(1, Ordering::SeqCst);
    idp.jwks.lock().unwrap().clone()
}

async fn introspect(State(idp): State<Arc<Idp>>, headers: HeaderMap, body: String) -> (StatusCode, Json<Value>) {
    idp.introspection_hits.fetch_add(1, Ordering::SeqCst);
    // RFC 6749 §2.3.1 encoding of the client credentials.
    let expected = format!("Basic {}", STANDARD.encode(format!("{CLIENT_ID}:s3cret%3A%26%3D")));
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_client"})));
    }
    let form: HashMap<String, String> = form_urlencoded(&body);
    let answer = form
        .get("token")
        .and_then(|t| idp.introspection.lock().unwrap().get(t).cloned())
        .unwrap_or_else(|| json!({"active": false}));
    (StatusCode::OK, Json(answer))
}

fn form_urlencoded(body: &str) -> HashMap<String, String> {
    body.split('&').filter_map(|pair| pair.split_once('=')).map(|(k, v)| (k.to_string(), percent_decode(v))).collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

// ---------------------------------------------------------------- tokens

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(name)
}

fn fixture_text(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).unwrap()
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn claims(issuer: &str) -> Value {
    json!({
        "iss": issuer,
        "sub": "tel:+34600000001",
        "aud": [AUDIENCE, "other-api"],
        "exp": now() + 600,
        "iat": now(),
        "azp": "asp-webrtc-app-001",
        "scope": "webrtc-calls:create openid webrtc-calls:create",
        "scp": ["webrtc-events:create", "openid"],
    })
}

fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

fn sign(alg: Algorithm, pem: &str, kid: Option<&str>, claims: &Value) -> String {
    let pem = fixture_text(pem);
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        _ => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn rs256(claims: &Value) -> String {
    sign(Algorithm::RS256, "rs256-test-key.pem", Some("test-rs256"), claims)
}

/// A JWKS holding the fixture keys plus the public half of `untrusted-rs256-key.pem` as `kid`.
fn rotated_jwks(kid: &str) -> String {
    let mut set: JwkSet = serde_json::from_str(&fixture_text("jwks.json")).unwrap();
    let key = EncodingKey::from_rsa_pem(fixture_text("untrusted-rs256-key.pem").as_bytes()).unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some(kid.into());
    set.keys.push(jwk);
    serde_json::to_string(&set).unwrap()
}

// ---------------------------------------------------------------- verifiers

fn jwks_config(idp: &Idp) -> VerifierConfig {
    VerifierConfig {
        jwks_url: Some(idp.jwks_url()),
        issuers: vec![idp.base.clone()],
        audiences: vec![AUDIENCE.into()],
        allow_http: true,
        ..VerifierConfig::default()
    }
}

fn verifier(config: VerifierConfig) -> TokenVerifier {
    TokenVerifier::new(config).unwrap()
}

#[track_caller]
fn assert_rejected(result: Result<camara_auth::VerifiedToken, AuthError>, expected: &str) {
    match result {
        Err(AuthError::Rejected(message)) => assert_eq!(message, expected),
        other => panic!("expected Rejected({expected:?}), got {other:?}"),
    }
}

// ---------------------------------------------------------------- JWT verification

#[tokio::test]
async fn valid_rs256_token_is_accepted_with_its_claims() {
    let idp = Idp::start().await;
    let v = verifier(jwks_config(&idp));
    let claims = claims(&idp.base);
    let token = v.verify(&rs256(&claims)).await.unwrap();
    assert_eq!(token.issuer, idp.base);
    assert_eq!(token.subject.as_deref(), Some("tel:+34600000001"));
    assert_eq!(token.audience, vec![AUDIENCE.to_string(), "other-api".into()]);
    assert_eq!(token.scopes, vec!["openid", "webrtc-calls:create", "webrtc-events:create"]);
    assert_eq!(token.expires_at, claims["exp"].as_i64().unwrap());
    assert_eq!(token.issued_at, claims["iat"].as_i64());
    assert_eq!(token.client_id.as_deref(), Some("asp-webrtc-app-001"));
    assert_eq!(Value::Object(token.claims), claims);
    assert_eq!(idp.jwks_hits(), 1);
}

#[tokio::test]
async fn valid_es256_token_is_accepted_from_a_jwks_file() {
    let v = verifier(VerifierConfig {
        jwks_file: Some(fixture("jwks.json")),
        issuers: vec!["https://auth.operator.com".into()],
        audiences: vec![AUDIENCE.into()],
        ..VerifierConfig::default()
    });
    let claims = with(claims("https://auth.operator.com"), "client_id", json!("asp-2"));
    let token = sign(Algorithm::ES256, "es256-test-key.pem", Some("test-es256"), &claims);
    let token = v.verify(&token).await.unwrap();
    assert_eq!(token.issuer, "https://auth.operator.com");
    assert_eq!(token.client_id.as_deref(), Some("asp-2"), "client_id wins over azp");
}

#[tokio::test]
async fn ps256_token_is_accepted() {
    let idp = Idp::start().await;
    let v = verifier(jwks_config(&idp));
    // The fixture JWK pins alg RS256, so PS256 needs a key without that pin.
    let set: Value = serde_json::from_str(&fixture_text("jwks.json")).unwrap();
    let mut rsa = set["keys"][0].clone();
    rsa.as_object_mut().unwrap().remove("alg");
    rsa["kid"] = json!("test-ps256");
    *idp.jwks.lock().unwrap() = json!({"keys": [rsa]}).to_string();
    let token = sign(Algorithm::PS256, "rs256-test-key.pem", Some("test-ps256"), &claims(&idp.base));
    assert!(v.verify(&token).await.is_ok());
}

#[tokio::test]
async fn expired_token_is_rejected() {
    let idp = Idp::start().await;
    let v = verifier(jwks_config(&idp));
    let claims = with(claims(&idp.base), "exp", json!(now() - 3600));
    assert_rejected(v.verify(&rs256(&claims)).await, "token has expired");
}

#[tokio::test]
async fn expiry_within_leeway_is_accepted() {
    let idp = Idp::start().await;
    let v = verifier(jwks_config(&idp));
    let claims = with(claims(&idp.base), "exp", json!(now() - 5));
    assert!(v.verify(&rs256(&claims)).await.is_ok());
}

#[tokio::test]
async fn token_without_exp_is_rejected() {
    let idp = Idp::start().await;
    let v = verifier(jwks_config(&idp));
    let mut claims = claims(&idp.base);
    claims.as_object_mut().unwrap().remove("exp");
    assert_rejected(v.verify(&rs256(&claims)).await, "token has no expiry (exp)");
}

#[tokio::test]
async fn not_yet_valid_token_is_rejected() {
    let idp = Idp::start().await;
    let v = verifier(jwks_config(&idp));
    let claims = with(claims(&idp.base), "nbf", json!(now() + 3600));
    assert_rejected(v.verify(&rs256(&claims)).await, "token is not valid yet (nbf)");
}

#[tokio::test]
async fn wrong_issuer_is_rejected() {
    let idp = Idp::start().await;
    let v = verifier(jwks_config(&idp));
    let claims = claims("https://evil.example.com");
    assert_rejected(v.verify(&rs256(&claims)).await, "token issuer is not accepted");
}

#[tokio::test]
async fn wrong_audience_is_rejected() {
    let idp = Idp::start().await;
    let v = verifier(jwks_config(&idp));
    let claims = with(claims(&idp.base), "aud", json!("some-other-api"));
    assert_rejected(v.verify(&rs256(&claims)).await, "token audience is not accepted");
}

#[tokio::test]
async fn unsigned_alg_none_token_is_rejected() {
    let idp = Idp::start().await;
    let v = verifier(jwks_config(&idp));
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT","kid":"test-rs256"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims(&idp.base).to_string());
    assert_rejected(v.verify(&format!("{header}.{payload}.")).await, r#"token algorithm "none" is not accepted"#);
    assert_eq!(idp.jwks_hits(), 0, "no key is even looked at");
}

#[tokio::test]
async fn hs256_signed_with_the_public_jwks_is_rejected() {
    let idp = Idp::start().await;
    let v = verifier(jwks_config(&idp));
    // Algorithm confusion: the attacker uses the (public) JWKS bytes as the HMAC secret.
    let secret = EncodingKey::from_secret(fixture_text("jwks.json").as_bytes());
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("test-rs256".into());
    let token = jsonwebtoken::encode(&header, &claims(&idp.base), &secret).unwrap();
    assert_rejected(v.verify(&token).await, r#"token algorithm "HS256" is not accepted"#);
}

#[tokio::test]
async fn key_not_in_the_jwks_is_rejected() {
    let idp = Idp::start().await;
    let v = verifier(jwks_config(&idp));
    // Signed by a key the IdP never published, claiming to be the published one.
    let token = sign(Algorithm::RS256, "untrusted-rs256-key.pem", Some("test-rs256"), &claims(&idp.base));
    assert_rejected(v.verify(&token).await, "bad token signature");
}

#[tokio::test]
async fn kid_of_another_key_type_is_rejected() {
    let idp = Idp::start().await;
    let v = verifier(jwks_config(&idp));
    let token = sign(Algorithm::ES256, "es256-test-key.pem", Some("test-rs256"), &claims(&idp.base));
    assert_rejected(v.verify(&token).await, "the key named by kid does not fit the token's algorithm");
}

#[tokio::test]
async fn token_without_kid_is_rejected_when_the_choice_is_ambiguous() {
    let idp = Idp::start().await;
    let v = verifier(jwks_config(&idp));
    let claims = claims(&idp.base);
    // One RSA key in the set: unambiguous.
    assert!(v.verify(&sign(Algorithm::RS256, "rs256-test-key.pem", None, &claims)).await.is_ok());
    *idp.jwks.lock().unwrap() = rotated_jwks("second-rsa");
    let v = verifier(jwks_config(&idp));
    assert_rejected(
        v.verify(&sign(Algorithm::RS256, "rs256-test-key.pem", None, &claims)).await,
        "token has no key id (kid) and the JWKS has several keys",
    );
}

#[tokio::test]
async fn unknown_kid_refetches_once_per_interval() {
    let idp = Idp::start().await;
    let v = verifier(jwks_config(&idp));
    v.preload().await.unwrap();
    assert_eq!(idp.jwks_hits(), 1);

    // The IdP rotates: tokens now come with a key the cache has not seen.
    *idp.jwks.lock().unwrap() = rotated_jwks("rotated-1");
    let claims = claims(&idp.base);
    let rotated = sign(Algorithm::RS256, "untrusted-rs256-key.pem", Some("rotated-1"), &claims);
    let token = v.verify(&rotated).await.unwrap();
    assert_eq!(token.subject.as_deref(), Some("tel:+34600000001"));
    assert_eq!(idp.jwks_hits(), 2, "the unknown kid triggered one refetch");

    // Another unknown kid within min_refetch_interval (10 s): rejected without asking the IdP.
    let bogus = sign(Algorithm::RS256, "untrusted-rs256-key.pem", Some("rotated-2"), &claims);
    assert_rejected(v.verify(&bogus).await, r#"unknown key id "rotated-2""#);
    assert_rejected(v.verify(&bogus).await, r#"unknown key id "rotated-2""#);
    assert_eq!(idp.jwks_hits(), 2);

    // Known keys, old and new, still verify from the cache.
    assert!(v.verify(&rotated).await.is_ok());
    assert!(v.verify(&rs256(&claims)).await.is_ok());
    assert_eq!(idp.jwks_hits(), 2);
}

#[tokio::test]
async fn unknown_kid_refetches_again_after_the_interval() {
    let idp = Idp::start().await;
    let v = verifier(VerifierConfig { min_refetch_interval_seconds: 0, ..jwks_config(&idp) });
    v.preload().await.unwrap();
    let bogus = sign(Algorithm::RS256, "untrusted-rs256-key.pem", Some("nope"), &claims(&idp.base));
    assert_rejected(v.verify(&bogus).await, r#"unknown key id "nope""#);
    assert_rejected(v.verify(&bogus).await, r#"unknown key id "nope""#);
    assert_eq!(idp.jwks_hits(), 3);
}

#[tokio::test]
async fn expired_cache_is_refreshed() {
    let idp = Idp::start().await;
    let v = verifier(VerifierConfig { jwks_cache_seconds: 0, ..jwks_config(&idp) });
    let token = rs256(&claims(&idp.base));
    v.verify(&token).await.unwrap();
    v.verify(&token).await.unwrap();
    assert_eq!(idp.jwks_hits(), 2);
}

#[tokio::test]
async fn jwks_server_down_is_a_key_source_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    drop(listener); // nothing listens there any more: connection refused
    let v = verifier(VerifierConfig { jwks_url: Some(url), allow_http: true, ..VerifierConfig::default() });
    assert!(matches!(v.preload().await, Err(AuthError::KeySource(_))));
    let token = rs256(&claims("https://auth.operator.com"));
    match v.verify(&token).await {
        Err(AuthError::KeySource(message)) => assert!(message.contains("/jwks"), "{message}"),
        other => panic!("expected KeySource, got {other:?}"),
    }
}

#[tokio::test]
async fn jwks_outage_after_a_successful_fetch_keeps_the_old_keys() {
    let idp = Idp::start().await;
    let v = verifier(VerifierConfig { jwks_cache_seconds: 0, ..jwks_config(&idp) });
    let token = rs256(&claims(&idp.base));
    v.verify(&token).await.unwrap();
    *idp.jwks.lock().unwrap() = "not json".into();
    assert!(v.verify(&token).await.is_ok());
    assert_eq!(idp.jwks_hits(), 2);
}

// ---------------------------------------------------------------- discovery

#[tokio::test]
async fn discovery_finds_the_jwks_and_implies_the_issuer() {
    let idp = Idp::start().await;
    let v = verifier(VerifierConfig {
        issuer: Some(idp.base.clone()),
        audiences: vec![AUDIENCE.into()],
        allow_http: true,
        ..VerifierConfig::default()
    });
    v.preload().await.unwrap();
    assert!(v.verify(&rs256(&claims(&idp.base))).await.is_ok());
    assert_rejected(v.verify(&rs256(&claims("https://evil.example.com"))).await, "token issuer is not accepted");
    assert_eq!(idp.discovery_hits.load(Ordering::SeqCst), 1);
    assert_eq!(idp.jwks_hits(), 1);
}

#[tokio::test]
async fn discovery_document_of_another_issuer_is_refused() {
    let idp = Idp::start().await;
    *idp.discovery_issuer.lock().unwrap() = Some("https://evil.example.com".into());
    let v = verifier(VerifierConfig { issuer: Some(idp.base.clone()), allow_http: true, ..VerifierConfig::default() });
    match v.verify(&rs256(&claims(&idp.base))).await {
        Err(AuthError::KeySource(message)) => {
            assert!(message.contains("not \"http://127.0.0.1"), "{message}")
        }
        other => panic!("expected KeySource, got {other:?}"),
    }
    assert_eq!(idp.jwks_hits(), 0);
}

// ---------------------------------------------------------------- introspection

fn introspection_config(idp: &Idp, secret: &str) -> VerifierConfig {
    VerifierConfig {
        issuer: Some(idp.base.clone()),
        audiences: vec![AUDIENCE.into()],
        introspection: Some(IntrospectionConfig {
            endpoint: None, // from discovery
            client_id: CLIENT_ID.into(),
            client_secret: secret.into(),
        }),
        allow_http: true,
        ..VerifierConfig::default()
    }
}

#[tokio::test]
async fn active_opaque_token_is_accepted_by_introspection() {
    let idp = Idp::start().await;
    let answer = json!({
        "active": true,
        "iss": idp.base,
        "sub": "tel:+34600000002",
        "aud": AUDIENCE,
        "exp": now() + 600,
        "scope": "webrtc-events:create webrtc-calls:create",
        "client_id": "asp-webrtc-app-001",
    });
    idp.introspection.lock().unwrap().insert("opaque+token/1".into(), answer.clone());
    let v = verifier(introspection_config(&idp, CLIENT_SECRET));
    let token = v.verify("opaque+token/1").await.unwrap();
    assert_eq!(token.subject.as_deref(), Some("tel:+34600000002"));
    assert_eq!(token.audience, vec![AUDIENCE.to_string()]);
    assert_eq!(token.scopes, vec!["webrtc-calls:create", "webrtc-events:create"]);
    assert_eq!(token.client_id.as_deref(), Some("asp-webrtc-app-001"));
    assert_eq!(token.issued_at, None);
    assert_eq!(Value::Object(token.claims), answer);
    assert_eq!(idp.introspection_hits.load(Ordering::SeqCst), 1);
    assert_eq!(idp.jwks_hits(), 0, "opaque tokens never touch the JWKS");
}

#[tokio::test]
async fn inactive_token_is_rejected_by_introspection() {
    let idp = Idp::start().await;
    let v = verifier(introspection_config(&idp, CLIENT_SECRET));
    assert_rejected(v.verify("revoked-token").await, "token is not active");
}

#[tokio::test]
async fn expired_introspected_token_is_rejected() {
    let idp = Idp::start().await;
    let answer = json!({"active": true, "iss": idp.base, "aud": AUDIENCE, "exp": now() - 3600});
    idp.introspection.lock().unwrap().insert("stale".into(), answer);
    let v = verifier(introspection_config(&idp, CLIENT_SECRET));
    assert_rejected(v.verify("stale").await, "token has expired");
}

#[tokio::test]
async fn introspected_token_for_another_audience_is_rejected() {
    let idp = Idp::start().await;
    let answer = json!({"active": true, "iss": idp.base, "aud": "billing", "exp": now() + 600});
    idp.introspection.lock().unwrap().insert("elsewhere".into(), answer);
    let v = verifier(introspection_config(&idp, CLIENT_SECRET));
    assert_rejected(v.verify("elsewhere").await, "token audience is not accepted");
}

#[tokio::test]
async fn introspection_refusing_our_credentials_is_a_key_source_error() {
    let idp = Idp::start().await;
    let v = verifier(introspection_config(&idp, "wrong"));
    match v.verify("opaque").await {
        Err(AuthError::KeySource(message)) => assert!(message.contains("HTTP 401"), "{message}"),
        other => panic!("expected KeySource, got {other:?}"),
    }
}

#[tokio::test]
async fn jwt_is_introspected_when_no_jwks_source_is_configured() {
    let idp = Idp::start().await;
    let jwt = rs256(&claims(&idp.base));
    let answer = json!({"active": true, "iss": idp.base, "aud": AUDIENCE, "exp": now() + 600});
    idp.introspection.lock().unwrap().insert(jwt.clone(), answer);
    let v = verifier(VerifierConfig {
        issuers: vec![idp.base.clone()],
        introspection: Some(IntrospectionConfig {
            endpoint: Some(format!("{}/introspect", idp.base)),
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
        }),
        allow_http: true,
        ..VerifierConfig::default()
    });
    assert!(v.verify(&jwt).await.is_ok());
    assert_eq!(idp.introspection_hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn opaque_token_without_introspection_is_rejected() {
    let idp = Idp::start().await;
    let v = verifier(jwks_config(&idp));
    assert_rejected(v.verify("opaque").await, "not a JWT, and no token introspection is configured");
}

// ---------------------------------------------------------------- configuration

#[tokio::test]
async fn nothing_configured_is_not_configured() {
    let v = verifier(VerifierConfig::default());
    assert!(!v.is_configured());
    assert!(matches!(v.verify(&rs256(&claims("x"))).await, Err(AuthError::NotConfigured)));
    assert!(v.preload().await.is_ok());
}

#[test]
fn unsafe_settings_are_refused() {
    let refused = |config: VerifierConfig, expected: &str| match TokenVerifier::new(config) {
        Err(AuthError::Config(message)) => assert!(message.contains(expected), "{message}"),
        Err(other) => panic!("expected Config({expected:?}), got {other:?}"),
        Ok(_) => panic!("expected Config({expected:?}), got a verifier"),
    };
    let algorithms = |a: &[&str]| VerifierConfig {
        algorithms: a.iter().map(|s| s.to_string()).collect(),
        ..VerifierConfig::default()
    };
    refused(algorithms(&["RS256", "HS256"]), "symmetric algorithm HS256");
    refused(algorithms(&["none"]), r#"unknown or refused algorithm "none""#);
    refused(algorithms(&[]), "no algorithm is accepted");
    refused(
        VerifierConfig { jwks_url: Some("http://idp.example.com/jwks".into()), ..VerifierConfig::default() },
        "http URLs need allow_http = true",
    );
    refused(
        VerifierConfig { issuer: Some("http://idp.example.com".into()), ..VerifierConfig::default() },
        "http URLs need allow_http = true",
    );
    refused(
        VerifierConfig {
            introspection: Some(IntrospectionConfig { client_id: "gw".into(), ..Default::default() }),
            ..VerifierConfig::default()
        },
        "introspection needs an endpoint, or an issuer",
    );
}

#[test]
fn config_deserializes_with_defaults() {
    let config: VerifierConfig = serde_json::from_value(json!({
        "issuer": "https://auth.operator.com",
        "introspection": {"client_id": "gw", "client_secret": "x"}
    }))
    .unwrap();
    assert_eq!(config.algorithms, vec!["RS256", "ES256", "PS256"]);
    assert_eq!(config.jwks_cache_seconds, 300);
    assert_eq!(config.min_refetch_interval_seconds, 10);
    assert!(!config.allow_http);
    assert!(TokenVerifier::new(config).is_ok());
    assert!(serde_json::from_value::<VerifierConfig>(json!({"jwks": "x"})).is_err(), "unknown fields are refused");
}
