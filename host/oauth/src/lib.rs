//! A development and demo OAuth 2.0 / OpenID Connect provider for the CAMARA WebRTC gateway
//! (CAMARA ICM: the authorization server of the telco network issues the access tokens).
//!
//! Owns: OIDC discovery and RFC 8414 metadata, the JWKS, `/authorize` (authorization code with
//! PKCE S256, a plain HTML sign-in and consent page), `/token` (`authorization_code`,
//! `client_credentials`, rotating `refresh_token`), RFC 7662 `/introspect`; ES256 JWT access
//! tokens (RFC 9068 `at+jwt`) carrying the subscriber's E.164 number. Off by default in the
//! gateway's configuration (`[oauth_server] enabled`).
//!
//! Does not own: a user database (clients and subscribers come from configuration, passwords in
//! clear), persistence (the signing key, codes and refresh tokens live in memory and are lost on
//! restart: tokens issued before a restart no longer verify), consent memory, or any of what a
//! production IdP needs. Not for production.

mod authorize;
mod config;
mod grants;
mod html;
mod http;
mod keys;
mod metadata;
mod token;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde_json::{Map, Value, json};

pub use config::{
    CAMARA_WEBRTC_SCOPES, ClientConfig, DEMO_SCRIPT_CLIENT_ID, DEMO_SCRIPT_SECRET, GrantType, OAuthConfig,
    ORIGIN_PLACEHOLDER, SubscriberConfig,
};

use config::IssuerParts;
use grants::{Grant, Grants};
use keys::SigningKey;

/// Request bodies are small forms; anything bigger is refused before it is read whole.
const MAX_BODY: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("invalid OAuth server settings: {0}")]
    Config(String),
    #[error("cannot make the OAuth server's signing key: {0}")]
    Key(String),
}

/// The authorization server: configuration, a signing key made at start, the pending codes and
/// refresh tokens. Serve it with [`OAuthServer::router`].
pub struct OAuthServer {
    config: OAuthConfig,
    issuer: IssuerParts,
    key: SigningKey,
    grants: Mutex<Grants>,
}

impl OAuthServer {
    /// Checks `config` (every URL, number and client) and generates the ES256 key.
    pub fn new(config: OAuthConfig) -> Result<Self, OAuthError> {
        let (config, issuer) = config.validated()?;
        let key = SigningKey::generate()?;
        tracing::info!(issuer = %config.issuer, "built-in OAuth server (development and demo only)");
        Ok(OAuthServer { config, issuer, key, grants: Mutex::new(Grants::default()) })
    }

    /// The routes, at absolute paths under the issuer's path (`/oauth/token`, ...): `merge` this
    /// router into the application's, do not `nest` it. For an issuer with a path, RFC 8414's
    /// `/.well-known/oauth-authorization-server{path}` is served too.
    pub fn router(self: Arc<Self>) -> Router {
        let p = self.issuer.path.clone();
        let mut router = Router::new()
            .route(&format!("{p}/.well-known/openid-configuration"), get(metadata::discovery))
            .route(&format!("{p}/.well-known/oauth-authorization-server"), get(metadata::discovery));
        if !p.is_empty() {
            router = router.route(&format!("/.well-known/oauth-authorization-server{p}"), get(metadata::discovery));
        }
        router
            .route(&format!("{p}/jwks"), get(metadata::jwks))
            .route(&format!("{p}/authorize"), get(authorize::show).post(authorize::submit))
            .route(&format!("{p}/token"), post(token::token))
            .route(&format!("{p}/introspect"), post(token::introspect))
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(self)
    }

    /// The issuer identifier, as configured (the `iss` of every token).
    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// The `aud` of every access token.
    pub fn audience(&self) -> &str {
        &self.config.audience
    }

    /// The configuration in force (with `{origin}` expanded in redirect URIs).
    pub fn config(&self) -> &OAuthConfig {
        &self.config
    }

    /// The public key set served at `/jwks`.
    pub fn jwks(&self) -> Value {
        self.key.jwks()
    }

    /// An access token as `/token` would issue it, without any flow (tests, demos, tools).
    /// `phone_number` should be E.164 with `+`; `scopes` go into `scope` space-separated.
    pub fn issue_token(&self, subject: &str, phone_number: Option<&str>, scopes: &[&str], client_id: &str) -> String {
        let grant = Grant {
            client_id: client_id.into(),
            subject: subject.into(),
            phone_number: phone_number.map(str::to_string),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            auth_time: now_unix(),
        };
        // The key was used once in `new`: signing a JSON object with it cannot fail.
        self.access_token(&grant).expect("the signing key was checked at start")
    }

    fn endpoint(&self, name: &str) -> String {
        format!("{}/{name}", self.config.issuer.trim_end_matches('/'))
    }

    fn grants(&self) -> MutexGuard<'_, Grants> {
        // A panic elsewhere while holding the lock leaves the maps consistent (every mutation is
        // a single insert or retain), so a poisoned lock is still usable.
        self.grants.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn client(&self, client_id: &str) -> Option<&ClientConfig> {
        self.config.clients.iter().find(|c| c.client_id == client_id)
    }

    /// An RFC 9068 JWT access token for `grant`.
    fn access_token(&self, grant: &Grant) -> Result<String, String> {
        let now = now_unix();
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(self.config.issuer));
        claims.insert("sub".into(), json!(grant.subject));
        claims.insert("aud".into(), json!(self.config.audience));
        claims.insert("exp".into(), json!(now + ttl(self.config.access_token_ttl_seconds)));
        claims.insert("iat".into(), json!(now));
        claims.insert("nbf".into(), json!(now));
        claims.insert("jti".into(), json!(random_id()));
        claims.insert("scope".into(), json!(grant.scopes.join(" ")));
        claims.insert("client_id".into(), json!(grant.client_id));
        claims.insert("auth_time".into(), json!(grant.auth_time));
        if let Some(number) = &grant.phone_number {
            claims.insert(self.config.phone_number_claim.clone(), json!(number));
        }
        self.key.sign("at+jwt", &claims)
    }

    /// An OpenID Connect ID token for the client that asked for the `openid` scope.
    fn id_token(&self, grant: &Grant, nonce: Option<&str>) -> Result<String, String> {
        let now = now_unix();
        let mut claims = json!({
            "iss": self.config.issuer,
            "sub": grant.subject,
            "aud": grant.client_id,
            "azp": grant.client_id,
            "exp": now + ttl(self.config.access_token_ttl_seconds),
            "iat": now,
            "auth_time": grant.auth_time,
        });
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(nonce);
        }
        if let Some(number) = &grant.phone_number {
            claims["phone_number"] = json!(number);
            claims["phone_number_verified"] = json!(true);
        }
        self.key.sign("JWT", &claims)
    }
}

fn ttl(seconds: u64) -> i64 {
    // Bounded by the configuration check (at most a year).
    i64::try_from(seconds).unwrap_or(i64::MAX / 2)
}

pub(crate) fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or_default()
}

/// 128 random bits, base64url (`jti`).
fn random_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}
