//! Interoperability with an OpenID Provider that is not this project's code: the npm package
//! `oidc-provider` (tests/oidc-provider/server.mjs), started by the test on loopback. The gateway
//! is configured against it exactly as an operator would configure it against their IdP: `[auth]
//! issuer` and `audiences` (OIDC discovery finds the JWKS), plus `introspection` client
//! credentials for opaque tokens. Tokens come from the provider's token endpoint
//! (client_credentials, client_secret_basic) over real HTTP; the provider ties each client to a
//! subscriber's number, which it puts in the `phone_number` claim.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use axum::body::Bytes;
use camara_gateway::config::{GatewayConfig, SipTransportName};
use camara_gateway_tests::*;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

/// The registration scopes are what the limited client lacks.
const LIMITED_SCOPES: &str = "webrtc-call-handling:sessions:create webrtc-call-handling:sessions:read \
webrtc-events:read";

fn provider_dir() -> PathBuf {
    repo_root().join("tests/oidc-provider")
}

/// `npm ci` has run in tests/oidc-provider and a `node` is on the PATH.
fn provider_installed() -> bool {
    let node = std::process::Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    peer_installed(
        "oidc-provider (npm ci in tests/oidc-provider)",
        node && provider_dir().join("node_modules/oidc-provider/package.json").exists(),
    )
}

/// Standard base64 with padding, for HTTP Basic credentials.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            out.push(if i <= chunk.len() { ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

/// A plain HTTP exchange with the provider; the answer's status and JSON body.
async fn http(method: &str, url: &str, basic: Option<(&str, &str)>, form: &[(&str, &str)]) -> (u16, Value) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let mut request = hyper::Request::builder().method(method).uri(url).header("accept", "application/json");
    if let Some((id, secret)) = basic {
        // RFC 6749 §2.3.1: form-urlencoded before joining (the ids here need no escaping).
        request = request.header("authorization", format!("Basic {}", base64(format!("{id}:{secret}").as_bytes())));
    }
    let body = if form.is_empty() {
        Full::new(Bytes::new())
    } else {
        request = request.header("content-type", "application/x-www-form-urlencoded");
        Full::new(Bytes::from(url_encode_form(form)))
    };
    let response = client.request(request.body(body).unwrap()).await.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    (status, value)
}

fn url_encode_form(pairs: &[(&str, &str)]) -> String {
    let encode = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => (b as char).to_string(),
                b' ' => "+".to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs.iter().map(|(n, v)| format!("{}={}", encode(n), encode(v))).collect::<Vec<_>>().join("&")
}

/// `tests/oidc-provider/server.mjs` running on a free loopback port.
struct OidcProvider {
    issuer: String,
    /// What it printed when ready: issuer, resource indicators, clients.
    ready: Value,
    /// Its OIDC discovery document, as anyone would read it.
    discovery: Value,
    // Killed on drop; its stdin closing also tells it to exit.
    _child: tokio::process::Child,
}

impl OidcProvider {
    async fn start() -> OidcProvider {
        let mut last_failure = String::new();
        // A free port can be taken between asking and listening: try a few.
        for _ in 0..3 {
            let port = free_port();
            let mut child = tokio::process::Command::new("node")
                .arg("server.mjs")
                .arg(port.to_string())
                .current_dir(provider_dir())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .expect("node starts");
            let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
            let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
            match ready {
                Ok(Ok(Some(line))) => {
                    let ready: Value = serde_json::from_str(&line).expect("the provider prints JSON");
                    assert_eq!(ready["ready"], true, "{ready}");
                    let issuer = ready["issuer"].as_str().expect("issuer").to_string();
                    // Keep reading (and dropping) its stdout so that it never blocks on a pipe.
                    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                    let (status, discovery) =
                        http("GET", &format!("{issuer}/.well-known/openid-configuration"), None, &[]).await;
                    assert_eq!(status, 200, "discovery: {discovery}");
                    assert_eq!(discovery["issuer"], issuer.as_str());
                    return OidcProvider { issuer, ready, discovery, _child: child };
                }
                other => {
                    last_failure = format!("{other:?}");
                    let _ = child.kill().await;
                }
            }
        }
        panic!("oidc-provider did not start: {last_failure}");
    }

    fn endpoint(&self, name: &str) -> String {
        self.discovery[name].as_str().unwrap_or_else(|| panic!("no {name} in {}", self.discovery)).to_string()
    }

    fn resource(&self, name: &str) -> String {
        self.ready["resources"][name].as_str().expect("resource indicator").to_string()
    }

    fn secret(&self, client: &str) -> String {
        self.ready["clients"][client]["secret"].as_str().expect("client secret").to_string()
    }

    /// The client_credentials grant at the token endpoint; the whole answer.
    async fn token_answer(&self, client: &str, scope: &str, resource: Option<&str>) -> (u16, Value) {
        let secret = self.secret(client);
        let mut form = vec![("grant_type", "client_credentials"), ("scope", scope)];
        if let Some(resource) = resource {
            form.push(("resource", resource));
        }
        http("POST", &self.endpoint("token_endpoint"), Some((client, &secret)), &form).await
    }

    /// An access token of `client` with `scope`, for `resource` (the gateway's JWT resource when
    /// `None`).
    async fn token(&self, client: &str, scope: &str, resource: Option<&str>) -> String {
        let (status, answer) = self.token_answer(client, scope, resource).await;
        assert_eq!(status, 200, "token endpoint: {answer}");
        assert_eq!(answer["token_type"], "Bearer", "{answer}");
        answer["access_token"].as_str().expect("access_token").to_string()
    }
}

/// A gateway whose `[auth]` names nothing but the provider, as an operator would write it.
fn gateway_against(provider: &OidcProvider, introspection: Option<Value>) -> GatewayConfig {
    let mut config = gateway_config(None, SipTransportName::Udp);
    let mut auth = json!({
        "issuer": provider.issuer,
        "audiences": [AUDIENCE],
        "allow_http": true,
    });
    if let Some(introspection) = introspection {
        auth["introspection"] = introspection;
    }
    // Parsed like the `[auth]` section of gateway.toml (unknown keys would be refused).
    config.auth = serde_json::from_value(auth).expect("a valid [auth] section");
    config
}

/// The decoded JOSE header of a JWT.
fn jwt_header(token: &str) -> Value {
    let header = jsonwebtoken::decode_header(token).expect("a JWT");
    serde_json::to_value(header).unwrap()
}

fn list_path() -> String {
    format!("/webrtc-registration/v0.3/sessions?deviceId={DEVICE_ID}")
}

fn assert_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{:?}", reply.body);
    assert_eq!(reply.body["code"], code, "{:?}", reply.body);
}

#[tokio::test]
async fn jwt_access_tokens_of_an_external_oidc_provider_are_accepted_through_discovery() {
    init_logs();
    if !provider_installed() {
        return;
    }
    let provider = OidcProvider::start().await;
    let gateway = camara_gateway::start(gateway_against(&provider, None)).await.expect("gateway starts");
    let api = Api::new(gateway.http_addr);
    let alice_number = provider.ready["clients"]["camara-app"]["phoneNumber"].as_str().unwrap().to_string();
    assert_eq!(alice_number, ALICE);

    // A JWT access token (RFC 9068), signed with the provider's ES256 key.
    let token = provider.token("camara-app", ALL_SCOPES, None).await;
    let header = jwt_header(&token);
    assert_eq!(header["alg"], "ES256", "{header}");
    assert_eq!(header["typ"], "at+jwt", "{header}");

    let registered = api.register(&token).await;
    assert_eq!(registered.status, 201, "{:?}", registered.body);
    assert_eq!(registered.body["regInfo"]["phoneNumber"], ALICE, "the number of the token: {:?}", registered.body);
    let id = registered.body["registrationId"].as_str().expect("registrationId").to_string();

    let listed = api.call("GET", &list_path(), Some(&token), &[], None).await;
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    let ids: Vec<&str> =
        listed.body.as_array().expect("a list").iter().filter_map(|r| r["registrationId"].as_str()).collect();
    assert_eq!(ids, [id.as_str()], "{:?}", listed.body);
    let read = api.call("GET", &format!("/webrtc-registration/v0.3/sessions/{id}"), Some(&token), &[], None).await;
    assert_eq!(read.status, 200, "{:?}", read.body);

    // A token of the same provider for another API (aud "another-api", RS256): 401.
    let other_api = provider.token("camara-app", ALL_SCOPES, Some(&provider.resource("other"))).await;
    assert_eq!(jwt_header(&other_api)["alg"], "RS256");
    assert_error(&api.register(&other_api).await, 401, "UNAUTHENTICATED");

    // A tampered token: the claims of Bob's token under the signature of Alice's: 401.
    let bob = provider.token("camara-app-limited", LIMITED_SCOPES, None).await;
    let parts = |t: &str| t.split('.').map(str::to_string).collect::<Vec<_>>();
    let (a, b) = (parts(&token), parts(&bob));
    let spliced = format!("{}.{}.{}", a[0], b[1], a[2]);
    assert_error(&api.call("GET", &list_path(), Some(&spliced), &[], None).await, 401, "UNAUTHENTICATED");
    // An opaque token of the same provider, with no introspection configured: 401.
    let opaque = provider.token("camara-app", ALL_SCOPES, Some(&provider.resource("opaque"))).await;
    assert!(jsonwebtoken::decode_header(&opaque).is_err(), "opaque: {opaque}");
    assert_error(&api.register(&opaque).await, 401, "UNAUTHENTICATED");

    // A valid token of a client that was not granted the registration scopes: 403. (The provider
    // itself refuses to grant them to that client.)
    let (status, refused) =
        provider.token_answer("camara-app-limited", "webrtc-registration:sessions:create", None).await;
    assert_eq!((status, refused["error"].as_str()), (400, Some("invalid_scope")), "{refused}");
    assert_error(&api.register(&bob).await, 403, "PERMISSION_DENIED");
    assert_error(&api.call("GET", &list_path(), Some(&bob), &[], None).await, 403, "PERMISSION_DENIED");

    let deleted =
        api.call("DELETE", &format!("/webrtc-registration/v0.3/sessions/{id}"), Some(&token), &[], None).await;
    assert_eq!(deleted.status, 204, "{:?}", deleted.body);
    gateway.stop().await;
}

#[tokio::test]
async fn opaque_access_tokens_of_an_external_oidc_provider_are_accepted_through_introspection() {
    init_logs();
    if !provider_installed() {
        return;
    }
    let provider = OidcProvider::start().await;
    // The gateway introspects as its own client of the provider; the endpoint comes from discovery.
    let introspection = json!({"client_id": "camara-gateway", "client_secret": provider.secret("camara-gateway")});
    let gateway = camara_gateway::start(gateway_against(&provider, Some(introspection))).await.expect("gateway starts");
    let api = Api::new(gateway.http_addr);
    let opaque_resource = provider.resource("opaque");

    let token = provider.token("camara-app", ALL_SCOPES, Some(&opaque_resource)).await;
    assert!(jsonwebtoken::decode_header(&token).is_err(), "an opaque token: {token}");
    let registered = api.register(&token).await;
    assert_eq!(registered.status, 201, "{:?}", registered.body);
    assert_eq!(registered.body["regInfo"]["phoneNumber"], ALICE, "the number of the token: {:?}", registered.body);
    let id = registered.body["registrationId"].as_str().expect("registrationId").to_string();
    let listed = api.call("GET", &list_path(), Some(&token), &[], None).await;
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    assert_eq!(listed.body[0]["registrationId"], id.as_str(), "{:?}", listed.body);

    // JWTs of the same provider still go through its JWKS in the same gateway.
    let jwt = provider.token("camara-app", ALL_SCOPES, None).await;
    let listed = api.call("GET", &list_path(), Some(&jwt), &[], None).await;
    assert_eq!(listed.status, 200, "{:?}", listed.body);

    // The limited client's opaque token is active but lacks the registration scopes: 403.
    let limited = provider.token("camara-app-limited", LIMITED_SCOPES, Some(&opaque_resource)).await;
    assert_error(&api.register(&limited).await, 403, "PERMISSION_DENIED");
    // A token the provider never issued: inactive, 401.
    assert_error(&api.register("not-a-token-of-this-provider").await, 401, "UNAUTHENTICATED");

    // Revoked at the provider (RFC 7009): the next request is refused, nothing is cached.
    let (status, answer) = http(
        "POST",
        &provider.endpoint("revocation_endpoint"),
        Some(("camara-app", &provider.secret("camara-app"))),
        &[("token", &token), ("token_type_hint", "access_token")],
    )
    .await;
    assert_eq!(status, 200, "revocation: {answer}");
    assert_error(&api.call("GET", &list_path(), Some(&token), &[], None).await, 401, "UNAUTHENTICATED");
    gateway.stop().await;
}

#[test]
fn basic_credentials_are_standard_base64() {
    assert_eq!(base64(b"camara-app:camara-app-secret"), "Y2FtYXJhLWFwcDpjYW1hcmEtYXBwLXNlY3JldA==");
    assert_eq!(base64(b"ab"), "YWI=");
    assert_eq!(base64(b"abc"), "YWJj");
    assert_eq!(url_encode_form(&[("scope", "a:b c")]), "scope=a%3Ab+c");
}
