//! The OAuth server over real HTTP on 127.0.0.1: discovery, the PKCE code flow through the HTML
//! form, client credentials, refresh rotation, introspection; tokens checked against the served
//! JWKS with jsonwebtoken, and by the gateway's own verifier (`camara-auth`).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use camara_auth::{AuthError, IntrospectionConfig, TokenVerifier, VerifierConfig};
use camara_oauth::{CAMARA_WEBRTC_SCOPES, ClientConfig, GrantType, OAuthConfig, OAuthServer};
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

const AUDIENCE: &str = "camara-webrtc-gateway";
/// Characters that RFC 6749 §2.3.1 makes clients form-encode inside HTTP Basic.
const BACKEND_SECRET: &str = "s3cret:&= +x";
const GATEWAY_SECRET: &str = "gateway-secret";
const SOFTPHONE_SCOPES: &str = "openid webrtc-registration:sessions:create webrtc-call-handling:sessions:create";

// ---------------------------------------------------------------- server and client

struct Harness {
    issuer: String,
    redirect_uri: String,
    server: Arc<OAuthServer>,
    http: Client<HttpConnector, Full<Bytes>>,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    fn location(&self) -> url::Url {
        let location = self.headers.get(LOCATION).expect("a Location header").to_str().unwrap();
        url::Url::parse(location).unwrap()
    }

    fn query(&self, name: &str) -> Option<String> {
        self.location().query_pairs().find(|(n, _)| n == name).map(|(_, v)| v.into_owned())
    }

    fn no_store(&self) -> bool {
        self.headers.get(CACHE_CONTROL).is_some_and(|v| v == "no-store")
    }

    #[track_caller]
    fn assert_error(&self, status: StatusCode, error: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.json()["error"], error, "{}", self.body);
        assert!(self.no_store(), "errors are not cached");
    }
}

fn config() -> OAuthConfig {
    let mut softphone = ClientConfig::softphone();
    softphone.redirect_uris.push("{origin}/other/".into());
    OAuthConfig {
        clients: vec![
            softphone,
            ClientConfig {
                client_id: "backend".into(),
                client_secret: Some(BACKEND_SECRET.into()),
                allowed_scopes: vec![
                    "webrtc-call-handling:sessions:create".into(),
                    "webrtc-call-handling:sessions:read".into(),
                ],
                grant_types: vec![GrantType::ClientCredentials],
                phone_number: Some("+818000000009".into()),
                ..ClientConfig::default()
            },
            ClientConfig {
                client_id: "gateway".into(),
                client_secret: Some(GATEWAY_SECRET.into()),
                allowed_scopes: Vec::new(),
                grant_types: vec![GrantType::ClientCredentials],
                ..ClientConfig::default()
            },
        ],
        ..OAuthConfig::default()
    }
}

async fn start(mut config: OAuthConfig) -> Harness {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    config.issuer = format!("{origin}/oauth");
    let server = Arc::new(OAuthServer::new(config).unwrap());
    let app = server.clone().router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Harness {
        issuer: server.issuer().to_string(),
        redirect_uri: format!("{origin}/softphone/"),
        server,
        http: Client::builder(TokioExecutor::new()).build_http(),
    }
}

impl Harness {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    async fn send(&self, request: Request<Full<Bytes>>) -> Answer {
        let response = self.http.request(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Answer { status, headers, body: String::from_utf8(body.to_vec()).unwrap() }
    }

    async fn get(&self, url: &str) -> Answer {
        self.send(Request::get(url).body(Full::default()).unwrap()).await
    }

    async fn post_form(&self, url: &str, form: &[(&str, &str)], basic: Option<(&str, &str)>) -> Answer {
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let mut request =
            Request::builder().method(Method::POST).uri(url).header(CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some((id, secret)) = basic {
            let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let pair = format!("{}:{}", encode(id), encode(secret));
            request = request.header(AUTHORIZATION, format!("Basic {}", STANDARD.encode(pair)));
        }
        self.send(request.body(Full::new(Bytes::from(body))).unwrap()).await
    }

    async fn token(&self, form: &[(&str, &str)], basic: Option<(&str, &str)>) -> Answer {
        self.post_form(&self.url("/token"), form, basic).await
    }

    async fn introspect(&self, token: &str) -> Value {
        let answer =
            self.post_form(&self.url("/introspect"), &[("token", token)], Some(("gateway", GATEWAY_SECRET))).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        answer.json()
    }

    fn authorize_url(&self, params: &[(&str, &str)]) -> String {
        let query = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
        format!("{}?{query}", self.url("/authorize"))
    }

    /// GET `/authorize`, then POST the page's form (its hidden fields, as a browser would) with
    /// `credentials` and `decision`.
    async fn authorize(&self, params: &[(&str, &str)], credentials: (&str, &str), decision: &str) -> Answer {
        let page = self.get(&self.authorize_url(params)).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let mut form = hidden_fields(&page.body);
        form.push(("username".into(), credentials.0.into()));
        form.push(("password".into(), credentials.1.into()));
        form.push(("decision".into(), decision.into()));
        let form: Vec<(&str, &str)> = form.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        self.post_form(&self.url("/authorize"), &form, None).await
    }

    /// The whole code flow for `alice`: the code exchanged with the right verifier.
    async fn code_flow(&self, scope: &str) -> Value {
        let pkce = Pkce::new();
        let params = self.code_params(&pkce, scope, "state-1");
        let redirect = self.authorize(&params, ("alice", "alice"), "approve").await;
        assert_eq!(redirect.status, StatusCode::SEE_OTHER, "{}", redirect.body);
        let code = redirect.query("code").expect("a code");
        let answer = self.exchange(&code, &self.redirect_uri, &pkce.verifier).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        answer.json()
    }

    fn code_params<'a>(&'a self, pkce: &'a Pkce, scope: &'a str, state: &'a str) -> Vec<(&'a str, &'a str)> {
        vec![
            ("response_type", "code"),
            ("client_id", "softphone"),
            ("redirect_uri", &self.redirect_uri),
            ("scope", scope),
            ("state", state),
            ("code_challenge", &pkce.challenge),
            ("code_challenge_method", "S256"),
            ("nonce", "nonce-1"),
        ]
    }

    async fn exchange(&self, code: &str, redirect_uri: &str, verifier: &str) -> Answer {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("client_id", "softphone"),
            ("code_verifier", verifier),
        ];
        self.token(&form, None).await
    }

    /// The claims of `token` after checking its signature against the served JWKS.
    async fn decode(&self, token: &str, audience: &str) -> (jsonwebtoken::Header, Map<String, Value>) {
        let jwks: JwkSet = serde_json::from_str(&self.get(&self.url("/jwks")).await.body).unwrap();
        let header = jsonwebtoken::decode_header(token).unwrap();
        assert_eq!(header.alg, Algorithm::ES256);
        let jwk = jwks.find(header.kid.as_deref().expect("a kid")).expect("the kid is in the JWKS");
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[audience]);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
            .expect("the signature verifies");
        (header, data.claims)
    }
}

struct Pkce {
    verifier: String,
    challenge: String,
}

impl Pkce {
    fn new() -> Pkce {
        let verifier = format!("verifier-{}-0123456789abcdefghijklmnopqrstuvwxyz", rand_suffix());
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        Pkce { verifier, challenge }
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"").replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

/// The `<input type="hidden" name=".." value="..">` of a page, in order.
fn hidden_fields(html: &str) -> Vec<(String, String)> {
    html.split("<input type=\"hidden\" ")
        .skip(1)
        .map(|rest| {
            let name = rest.split("name=\"").nth(1).unwrap().split('"').next().unwrap();
            let value = rest.split("value=\"").nth(1).unwrap().split('"').next().unwrap();
            (name.to_string(), unescape(value))
        })
        .collect()
}

// ---------------------------------------------------------------- discovery and keys

#[tokio::test]
async fn discovery_documents_describe_the_server() {
    let h = start(config()).await;
    let origin = h.issuer.trim_end_matches("/oauth").to_string();
    for url in [
        h.url("/.well-known/openid-configuration"),
        h.url("/.well-known/oauth-authorization-server"),
        format!("{origin}/.well-known/oauth-authorization-server/oauth"),
    ] {
        let answer = h.get(&url).await;
        assert_eq!(answer.status, StatusCode::OK, "{url}");
        let doc = answer.json();
        assert_eq!(doc["issuer"], h.issuer);
        assert_eq!(doc["authorization_endpoint"], h.url("/authorize"));
        assert_eq!(doc["token_endpoint"], h.url("/token"));
        assert_eq!(doc["jwks_uri"], h.url("/jwks"));
        assert_eq!(doc["introspection_endpoint"], h.url("/introspect"));
        assert_eq!(doc["response_types_supported"], serde_json::json!(["code"]));
        assert_eq!(
            doc["grant_types_supported"],
            serde_json::json!(["authorization_code", "client_credentials", "refresh_token"])
        );
        assert_eq!(doc["code_challenge_methods_supported"], serde_json::json!(["S256"]));
        assert_eq!(
            doc["token_endpoint_auth_methods_supported"],
            serde_json::json!(["client_secret_basic", "client_secret_post", "none"])
        );
        assert_eq!(doc["id_token_signing_alg_values_supported"], serde_json::json!(["ES256"]));
        let scopes: Vec<&str> =
            doc["scopes_supported"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
        assert!(scopes.contains(&"openid"));
        assert!(CAMARA_WEBRTC_SCOPES.iter().all(|s| scopes.contains(s)));
    }

    let jwks = h.get(&h.url("/jwks")).await.json();
    let key = &jwks["keys"][0];
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    for (name, value) in [("kty", "EC"), ("crv", "P-256"), ("alg", "ES256"), ("use", "sig")] {
        assert_eq!(key[name], value);
    }
    for coordinate in ["x", "y"] {
        assert_eq!(URL_SAFE_NO_PAD.decode(key[coordinate].as_str().unwrap()).unwrap().len(), 32);
    }
    assert!(key["kid"].as_str().is_some_and(|k| !k.is_empty()));
    assert!(key.get("d").is_none(), "the private key is not published");
}

// ---------------------------------------------------------------- authorization code + PKCE

#[tokio::test]
async fn code_flow_with_pkce_issues_verifiable_tokens() {
    let h = start(config()).await;
    let pkce = Pkce::new();
    let params = h.code_params(&pkce, SOFTPHONE_SCOPES, "state-1");

    let page = h.get(&h.authorize_url(&params)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.headers[CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
    assert!(page.body.contains("<form method=\"post\" action=\"/oauth/authorize\">"), "{}", page.body);
    assert!(page.body.contains("<label for=\"username\">") && page.body.contains("type=\"password\""));
    for scope in SOFTPHONE_SCOPES.split(' ') {
        assert!(page.body.contains(&format!("<code>{scope}</code>")), "scope {scope} is listed");
    }
    assert!(page.body.contains("value=\"approve\">Approve</button>"));
    assert!(page.body.contains("value=\"deny\" formnovalidate>Deny</button>"));

    let redirect = h.authorize(&params, ("alice", "alice"), "approve").await;
    assert_eq!(redirect.status, StatusCode::SEE_OTHER, "{}", redirect.body);
    assert!(redirect.location().as_str().starts_with(&h.redirect_uri));
    assert_eq!(redirect.query("state").as_deref(), Some("state-1"));
    assert_eq!(redirect.query("iss").as_deref(), Some(h.issuer.as_str()));
    let code = redirect.query("code").expect("a code");

    let answer = h.exchange(&code, &h.redirect_uri, &pkce.verifier).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(answer.no_store());
    let tokens = answer.json();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);
    assert_eq!(tokens["scope"], SOFTPHONE_SCOPES);
    assert!(tokens["refresh_token"].as_str().is_some_and(|t| t.len() >= 43));

    let (header, claims) = h.decode(tokens["access_token"].as_str().unwrap(), AUDIENCE).await;
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(claims["iss"], h.issuer);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], AUDIENCE);
    assert_eq!(claims["phone_number"], "+818000000001");
    assert_eq!(claims["scope"], SOFTPHONE_SCOPES);
    assert_eq!(claims["client_id"], "softphone");
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    let (iat, exp, nbf) =
        (claims["iat"].as_i64().unwrap(), claims["exp"].as_i64().unwrap(), claims["nbf"].as_i64().unwrap());
    assert_eq!(exp - iat, 900);
    assert!(nbf <= iat);

    // `openid` was asked for: an ID token for the client, with the nonce.
    let (_, id) = h.decode(tokens["id_token"].as_str().unwrap(), "softphone").await;
    assert_eq!(id["sub"], "alice");
    assert_eq!(id["nonce"], "nonce-1");
    assert_eq!(id["phone_number"], "+818000000001");
}

#[tokio::test]
async fn omitted_scope_grants_the_clients_allowed_scopes_and_bob_gets_his_number() {
    let h = start(config()).await;
    let pkce = Pkce::new();
    let params: Vec<_> = h.code_params(&pkce, "", "s").into_iter().filter(|(n, _)| *n != "scope").collect();
    let redirect = h.authorize(&params, ("bob", "bob"), "approve").await;
    let answer = h.exchange(&redirect.query("code").unwrap(), &h.redirect_uri, &pkce.verifier).await;
    let tokens = answer.json();
    let (_, claims) = h.decode(tokens["access_token"].as_str().unwrap(), AUDIENCE).await;
    assert_eq!(claims["phone_number"], "+818000000002");
    let scopes: Vec<&str> = claims["scope"].as_str().unwrap().split(' ').collect();
    assert!(CAMARA_WEBRTC_SCOPES.iter().all(|s| scopes.contains(s)));
}

#[tokio::test]
async fn a_wrong_verifier_is_an_invalid_grant() {
    let h = start(config()).await;
    let pkce = Pkce::new();
    let redirect = h.authorize(&h.code_params(&pkce, SOFTPHONE_SCOPES, "s"), ("alice", "alice"), "approve").await;
    let code = redirect.query("code").unwrap();
    let other = Pkce::new();
    h.exchange(&code, &h.redirect_uri, &other.verifier).await.assert_error(StatusCode::BAD_REQUEST, "invalid_grant");
    // The code was used up by that attempt.
    h.exchange(&code, &h.redirect_uri, &pkce.verifier).await.assert_error(StatusCode::BAD_REQUEST, "invalid_grant");
    // A verifier that is not RFC 7636 syntax at all.
    h.exchange("whatever", &h.redirect_uri, "short").await.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
}

#[tokio::test]
async fn a_code_is_single_use_and_its_reuse_revokes_the_refresh_token() {
    let h = start(config()).await;
    let pkce = Pkce::new();
    let redirect = h.authorize(&h.code_params(&pkce, SOFTPHONE_SCOPES, "s"), ("alice", "alice"), "approve").await;
    let code = redirect.query("code").unwrap();
    let first = h.exchange(&code, &h.redirect_uri, &pkce.verifier).await;
    assert_eq!(first.status, StatusCode::OK);
    let again = h.exchange(&code, &h.redirect_uri, &pkce.verifier).await;
    again.assert_error(StatusCode::BAD_REQUEST, "invalid_grant");
    assert!(again.json()["error_description"].as_str().unwrap().contains("used before"));
    let refresh = first.json()["refresh_token"].as_str().unwrap().to_string();
    let answer = h
        .token(&[("grant_type", "refresh_token"), ("refresh_token", &refresh), ("client_id", "softphone")], None)
        .await;
    answer.assert_error(StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test]
async fn redirect_uris_must_match_exactly() {
    let h = start(config()).await;
    let pkce = Pkce::new();
    // Not registered: an error page, never a redirect to the unknown URI.
    for bad in [format!("{}x", h.redirect_uri), "https://evil.example/softphone/".to_string()] {
        let mut params = h.code_params(&pkce, SOFTPHONE_SCOPES, "s");
        params.retain(|(n, _)| *n != "redirect_uri");
        params.push(("redirect_uri", &bad));
        let answer = h.get(&h.authorize_url(&params)).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST);
        assert!(answer.headers.get(LOCATION).is_none());
        assert!(answer.body.contains("not registered"), "{}", answer.body);
    }
    // Registered, but not the one the code was issued for.
    let redirect = h.authorize(&h.code_params(&pkce, SOFTPHONE_SCOPES, "s"), ("alice", "alice"), "approve").await;
    let other = h.redirect_uri.replace("/softphone/", "/other/");
    let answer = h.exchange(&redirect.query("code").unwrap(), &other, &pkce.verifier).await;
    answer.assert_error(StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test]
async fn a_wrong_password_shows_the_page_again_without_a_code() {
    let h = start(config()).await;
    let pkce = Pkce::new();
    let params = h.code_params(&pkce, SOFTPHONE_SCOPES, "s");
    for (username, password) in [("alice", "bob"), ("nobody", "alice"), ("alice", "")] {
        let answer = h.authorize(&params, (username, password), "approve").await;
        assert_eq!(answer.status, StatusCode::OK);
        assert!(answer.headers.get(LOCATION).is_none());
        assert!(answer.body.contains("role=\"alert\""), "{}", answer.body);
        assert!(answer.body.contains("<form method=\"post\""));
    }
}

#[tokio::test]
async fn deny_redirects_with_access_denied() {
    let h = start(config()).await;
    let pkce = Pkce::new();
    let answer = h.authorize(&h.code_params(&pkce, SOFTPHONE_SCOPES, "st&te=1"), ("", ""), "deny").await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(answer.query("error").as_deref(), Some("access_denied"));
    assert_eq!(answer.query("state").as_deref(), Some("st&te=1"));
    assert!(answer.query("code").is_none());
}

#[tokio::test]
async fn bad_authorization_requests_are_refused() {
    let h = start(config()).await;
    let pkce = Pkce::new();
    let base = h.code_params(&pkce, SOFTPHONE_SCOPES, "s");
    let with = |name: &'static str, value: Option<&'static str>| {
        let mut params: Vec<(&str, &str)> = base.iter().filter(|(n, _)| *n != name).cloned().collect();
        if let Some(value) = value {
            params.push((name, value));
        }
        params
    };
    for (params, error) in [
        (with("code_challenge_method", Some("plain")), "invalid_request"),
        (with("code_challenge_method", None), "invalid_request"),
        (
            with("code_challenge", None).into_iter().filter(|(n, _)| *n != "code_challenge_method").collect(),
            "invalid_request",
        ),
        (with("code_challenge", Some("too-short")), "invalid_request"),
        (with("response_type", Some("token")), "unsupported_response_type"),
        (with("scope", Some("openid webrtc-events:everything")), "invalid_scope"),
    ] {
        let answer = h.get(&h.authorize_url(&params)).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{params:?}: {}", answer.body);
        assert_eq!(answer.query("error").as_deref(), Some(error), "{params:?}");
        assert_eq!(answer.query("state").as_deref(), Some("s"));
    }
    // Unknown client, or a parameter given twice: a page, no redirect.
    for params in
        [with("client_id", Some("stranger")), with("state", Some("s")).into_iter().chain([("state", "t")]).collect()]
    {
        let answer = h.get(&h.authorize_url(&params)).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST);
        assert!(answer.headers.get(LOCATION).is_none());
    }
}

#[tokio::test]
async fn echoed_values_are_escaped_in_the_page() {
    let h = start(config()).await;
    let pkce = Pkce::new();
    let state = "\"><script>alert(1)</script>";
    let page = h.get(&h.authorize_url(&h.code_params(&pkce, SOFTPHONE_SCOPES, state))).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("<script>"));
    assert!(page.body.contains("&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(page.headers.get("content-security-policy").is_some());
    // And the round trip through the form gives the client its state back unchanged.
    let redirect = h.authorize(&h.code_params(&pkce, SOFTPHONE_SCOPES, state), ("alice", "alice"), "approve").await;
    assert_eq!(redirect.query("state").as_deref(), Some(state));
}

// ---------------------------------------------------------------- client credentials

#[tokio::test]
async fn client_credentials_with_basic_and_post() {
    let h = start(config()).await;
    let scope = "webrtc-call-handling:sessions:create";
    let basic =
        h.token(&[("grant_type", "client_credentials"), ("scope", scope)], Some(("backend", BACKEND_SECRET))).await;
    let post = h
        .token(
            &[("grant_type", "client_credentials"), ("client_id", "backend"), ("client_secret", BACKEND_SECRET)],
            None,
        )
        .await;
    for answer in [&basic, &post] {
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        let tokens = answer.json();
        assert!(tokens.get("refresh_token").is_none(), "no refresh token for client credentials");
        assert!(tokens.get("id_token").is_none());
        let (_, claims) = h.decode(tokens["access_token"].as_str().unwrap(), AUDIENCE).await;
        assert_eq!(claims["sub"], "backend");
        assert_eq!(claims["client_id"], "backend");
        assert_eq!(claims["phone_number"], "+818000000009");
    }
    assert_eq!(basic.json()["scope"], scope);
    assert_eq!(post.json()["scope"], "webrtc-call-handling:sessions:create webrtc-call-handling:sessions:read");

    let wrong = h.token(&[("grant_type", "client_credentials")], Some(("backend", "wrong"))).await;
    wrong.assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
    assert!(wrong.headers.get(WWW_AUTHENTICATE).is_some());
    let wrong_post = h
        .token(&[("grant_type", "client_credentials"), ("client_id", "backend"), ("client_secret", "wrong")], None)
        .await;
    wrong_post.assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
    let unknown = h.token(&[("grant_type", "client_credentials")], Some(("nobody", "x"))).await;
    unknown.assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
    let two_methods = h
        .token(
            &[("grant_type", "client_credentials"), ("client_secret", BACKEND_SECRET)],
            Some(("backend", BACKEND_SECRET)),
        )
        .await;
    two_methods.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    let scope = h
        .token(
            &[("grant_type", "client_credentials"), ("scope", "webrtc-events:read")],
            Some(("backend", BACKEND_SECRET)),
        )
        .await;
    scope.assert_error(StatusCode::BAD_REQUEST, "invalid_scope");
    // The public softphone is not registered for client credentials.
    let public = h.token(&[("grant_type", "client_credentials"), ("client_id", "softphone")], None).await;
    public.assert_error(StatusCode::BAD_REQUEST, "unauthorized_client");
}

#[tokio::test]
async fn malformed_token_requests_get_rfc6749_errors() {
    let h = start(config()).await;
    h.token(&[("grant_type", "password")], None).await.assert_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    h.token(&[("client_id", "softphone")], None).await.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    let missing_code = h.token(&[("grant_type", "authorization_code"), ("client_id", "softphone")], None).await;
    missing_code.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    let no_client = h.token(&[("grant_type", "authorization_code"), ("code", "x")], None).await;
    no_client.assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
    let garbage_basic = h
        .send(
            Request::post(h.url("/token"))
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(AUTHORIZATION, "Basic %%%")
                .body(Full::new(Bytes::from("grant_type=client_credentials")))
                .unwrap(),
        )
        .await;
    garbage_basic.assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
    let json_body = h
        .send(
            Request::post(h.url("/token"))
                .header(CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(r#"{"grant_type":"client_credentials"}"#)))
                .unwrap(),
        )
        .await;
    json_body.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    let twice = h
        .send(
            Request::post(h.url("/token"))
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Full::new(Bytes::from("grant_type=client_credentials&grant_type=refresh_token")))
                .unwrap(),
        )
        .await;
    twice.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
}

// ---------------------------------------------------------------- refresh tokens

#[tokio::test]
async fn refresh_tokens_rotate() {
    let h = start(config()).await;
    let tokens = h.code_flow(SOFTPHONE_SCOPES).await;
    let first = tokens["refresh_token"].as_str().unwrap().to_string();
    let refresh = |token: String, scope: Option<&'static str>| {
        let h = &h;
        async move {
            let mut form =
                vec![("grant_type", "refresh_token"), ("refresh_token", token.as_str()), ("client_id", "softphone")];
            form.extend(scope.map(|s| ("scope", s)));
            h.token(&form, None).await
        }
    };

    // Asking for more than was granted is refused, and leaves the token usable.
    refresh(first.clone(), Some("webrtc-events:read")).await.assert_error(StatusCode::BAD_REQUEST, "invalid_scope");

    let second = refresh(first.clone(), Some("webrtc-call-handling:sessions:create")).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    let second = second.json();
    assert_eq!(second["scope"], "webrtc-call-handling:sessions:create");
    let (_, claims) = h.decode(second["access_token"].as_str().unwrap(), AUDIENCE).await;
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["phone_number"], "+818000000001");
    let next = second["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(next, first);

    // The new refresh token keeps the original scope.
    let third = refresh(next.clone(), None).await;
    assert_eq!(third.status, StatusCode::OK, "{}", third.body);
    assert_eq!(third.json()["scope"], SOFTPHONE_SCOPES);
    let latest = third.json()["refresh_token"].as_str().unwrap().to_string();

    // The rotated-out token is refused, and its replay revokes the family.
    refresh(first.clone(), None).await.assert_error(StatusCode::BAD_REQUEST, "invalid_grant");
    refresh(latest, None).await.assert_error(StatusCode::BAD_REQUEST, "invalid_grant");
    refresh("not-a-token".into(), None).await.assert_error(StatusCode::BAD_REQUEST, "invalid_grant");
}

// ---------------------------------------------------------------- introspection

#[tokio::test]
async fn introspection_answers_active_and_inactive() {
    let h = start(config()).await;
    let tokens = h.code_flow(SOFTPHONE_SCOPES).await;
    let access = tokens["access_token"].as_str().unwrap();

    let active = h.introspect(access).await;
    assert_eq!(active["active"], true);
    assert_eq!(active["sub"], "alice");
    assert_eq!(active["phone_number"], "+818000000001");
    assert_eq!(active["scope"], SOFTPHONE_SCOPES);
    assert_eq!(active["client_id"], "softphone");
    assert_eq!(active["iss"], h.issuer);
    assert_eq!(active["token_type"], "Bearer");

    for inactive in
        ["garbage", "a.b.c", tokens["id_token"].as_str().unwrap(), tokens["refresh_token"].as_str().unwrap()]
    {
        assert_eq!(h.introspect(inactive).await, serde_json::json!({"active": false}), "{inactive}");
    }
    // A token signed by another server (same claims, other key).
    let other = OAuthServer::new(OAuthConfig { issuer: h.issuer.clone(), ..config() }).unwrap();
    let foreign = other.issue_token("alice", Some("+818000000001"), &["openid"], "softphone");
    assert_eq!(h.introspect(&foreign).await["active"], false);
    // The API for tests and demos issues the same kind of token.
    let direct = h.server.issue_token("carol", Some("+818000000003"), &["webrtc-events:read"], "demo");
    let answer = h.introspect(&direct).await;
    assert_eq!((answer["active"].clone(), answer["phone_number"].clone()), (true.into(), "+818000000003".into()));

    // Only confidential clients may ask.
    let url = h.url("/introspect");
    let anonymous = h.post_form(&url, &[("token", access)], None).await;
    anonymous.assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
    let public = h.post_form(&url, &[("token", access), ("client_id", "softphone")], None).await;
    public.assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
    let wrong = h.post_form(&url, &[("token", access)], Some(("gateway", "nope"))).await;
    wrong.assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
    let post = h
        .post_form(&url, &[("token", access), ("client_id", "gateway"), ("client_secret", GATEWAY_SECRET)], None)
        .await;
    assert_eq!(post.json()["active"], true);
    let no_token = h.post_form(&url, &[], Some(("gateway", GATEWAY_SECRET))).await;
    no_token.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
}

#[tokio::test]
async fn expired_tokens_are_inactive() {
    let h = start(OAuthConfig { access_token_ttl_seconds: 1, ..config() }).await;
    let answer = h.token(&[("grant_type", "client_credentials")], Some(("backend", BACKEND_SECRET))).await;
    let access = answer.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(answer.json()["expires_in"], 1);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(h.introspect(&access).await, serde_json::json!({"active": false}));
}

// ---------------------------------------------------------------- the gateway's verifier

#[tokio::test]
async fn the_gateway_verifier_accepts_our_tokens_by_discovery_and_by_introspection() {
    let h = start(config()).await;
    let tokens = h.code_flow(SOFTPHONE_SCOPES).await;
    let access = tokens["access_token"].as_str().unwrap();

    // JWKS found through OIDC discovery of the issuer, as for a real IdP.
    let by_discovery = TokenVerifier::new(VerifierConfig {
        issuer: Some(h.issuer.clone()),
        audiences: vec![AUDIENCE.into()],
        allow_http: true,
        ..VerifierConfig::default()
    })
    .unwrap();
    by_discovery.preload().await.unwrap();
    let verified = by_discovery.verify(access).await.unwrap();
    assert_eq!(verified.issuer, h.issuer);
    assert_eq!(verified.subject.as_deref(), Some("alice"));
    assert_eq!(verified.client_id.as_deref(), Some("softphone"));
    assert_eq!(verified.audience, vec![AUDIENCE.to_string()]);
    let mut expected: Vec<String> = SOFTPHONE_SCOPES.split(' ').map(str::to_string).collect();
    expected.sort();
    assert_eq!(verified.scopes, expected);
    assert_eq!(verified.claims["phone_number"], "+818000000001");
    // The ID token has the client as audience: not an access token for the gateway.
    let id_token = tokens["id_token"].as_str().unwrap();
    assert!(matches!(by_discovery.verify(id_token).await, Err(AuthError::Rejected(_))));

    // RFC 7662: with no JWKS source, the verifier sends every token (JWTs too) to /introspect.
    let by_introspection = TokenVerifier::new(VerifierConfig {
        issuers: vec![h.issuer.clone()],
        audiences: vec![AUDIENCE.into()],
        introspection: Some(IntrospectionConfig {
            endpoint: Some(h.url("/introspect")),
            client_id: "gateway".into(),
            client_secret: GATEWAY_SECRET.into(),
        }),
        allow_http: true,
        ..VerifierConfig::default()
    })
    .unwrap();
    let verified = by_introspection.verify(access).await.unwrap();
    assert_eq!(verified.subject.as_deref(), Some("alice"));
    assert_eq!(verified.claims["phone_number"], "+818000000001");
    assert!(matches!(by_introspection.verify("garbage").await, Err(AuthError::Rejected(_))));

    // A secret with characters that Basic must form-encode (RFC 6749 §2.3.1), as camara-auth does.
    let backend = TokenVerifier::new(VerifierConfig {
        issuers: vec![h.issuer.clone()],
        introspection: Some(IntrospectionConfig {
            endpoint: Some(h.url("/introspect")),
            client_id: "backend".into(),
            client_secret: BACKEND_SECRET.into(),
        }),
        allow_http: true,
        ..VerifierConfig::default()
    })
    .unwrap();
    assert!(backend.verify(access).await.is_ok());
}
