//! Access-token verification for the CAMARA WebRTC gateway (CAMARA ICM profile).
//!
//! A JWT is verified locally: signature against the authorization server's JWKS (from a file, a
//! URL or OIDC discovery; re-fetched on key rotation), then `exp`, `nbf`, `iss` and `aud`. Any
//! other token is sent to the server's RFC 7662 introspection endpoint when one is configured.
//!
//! This crate only establishes *who issued the token and what it says*. What the token may do
//! (scopes, subscriber identity) is decided by the authorization policy plugin from
//! [`VerifiedToken`].

mod claims;
mod config;
mod http;
mod introspection;
mod keys;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Validation};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

pub use config::{IntrospectionConfig, VerifierConfig};

use claims::{ClaimRules, Claims};
use http::HttpClient;
use keys::{KeyCache, KeySet, Lookup};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Nothing to verify tokens with: no JWKS source and no introspection.
    #[error("no token verification is configured ([auth] issuer, jwks_file, jwks_url or introspection)")]
    NotConfigured,
    #[error("invalid token verification settings: {0}")]
    Config(String),
    /// The authorization server (discovery, JWKS, introspection) could not be used: the token may
    /// well be valid, so the caller should answer 503, not 401.
    #[error("the authorization server cannot be used: {0}")]
    KeySource(String),
    /// The token is not acceptable (answer 401).
    #[error("{0}")]
    Rejected(String),
}

/// A token that passed verification, with its claims (or introspection answer) as sent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifiedToken {
    /// `iss`; empty when the token has none and no issuer is required.
    pub issuer: String,
    pub subject: Option<String>,
    pub audience: Vec<String>,
    /// From `scope` and `scp`, deduplicated and sorted.
    pub scopes: Vec<String>,
    pub expires_at: i64,
    pub issued_at: Option<i64>,
    /// `client_id`, else `azp`.
    pub client_id: Option<String>,
    pub claims: serde_json::Map<String, serde_json::Value>,
}

/// The parts of the OIDC discovery document (or RFC 8414 metadata) used here.
#[derive(Debug, Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: Option<String>,
    introspection_endpoint: Option<String>,
}

/// Verifies bearer tokens. Cheap to share behind an `Arc`; all caches are internal.
pub struct TokenVerifier {
    config: VerifierConfig,
    algorithms: Vec<Algorithm>,
    accepted_issuers: Option<Vec<String>>,
    http: HttpClient,
    discovery: OnceCell<Arc<Discovery>>,
    keys: KeyCache,
}

impl TokenVerifier {
    /// Checks the settings; contacts nothing (see [`TokenVerifier::preload`]).
    pub fn new(config: VerifierConfig) -> Result<Self, AuthError> {
        config.validate()?;
        let algorithms = config.parsed_algorithms()?;
        let http = HttpClient::new(Duration::from_secs(config.request_timeout_seconds.max(1)), config.allow_http);
        let keys = KeyCache::new(
            Duration::from_secs(config.jwks_cache_seconds),
            Duration::from_secs(config.min_refetch_interval_seconds),
        );
        Ok(TokenVerifier {
            accepted_issuers: config.accepted_issuers(),
            algorithms,
            http,
            discovery: OnceCell::new(),
            keys,
            config,
        })
    }

    /// Whether any kind of token can be verified at all.
    pub fn is_configured(&self) -> bool {
        self.config.has_jwks_source() || self.config.introspection.is_some()
    }

    /// Fetches discovery and the JWKS now, so that a bad setting or an unreachable server shows at
    /// start-up. The caller decides whether that is fatal; verification retries later anyway.
    pub async fn preload(&self) -> Result<(), AuthError> {
        if self.config.issuer.is_some() {
            self.discovery().await?;
        }
        if self.config.has_jwks_source() {
            self.key_set().await?;
        }
        Ok(())
    }

    /// Verifies `token` (the bearer credential, without the `Bearer ` prefix).
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, AuthError> {
        if let Some(header) = jwt_header(token)
            && self.config.has_jwks_source()
        {
            self.verify_jwt(token, &header).await
        } else if let Some(introspection) = &self.config.introspection {
            // RFC 7662 works for any token, so a JWT also goes here when no JWKS is configured.
            self.introspect(token, introspection).await
        } else if !self.is_configured() {
            Err(AuthError::NotConfigured)
        } else {
            Err(AuthError::Rejected("not a JWT, and no token introspection is configured".into()))
        }
    }

    fn claim_rules(&self) -> ClaimRules<'_> {
        ClaimRules {
            issuers: self.accepted_issuers.as_deref(),
            audiences: &self.config.audiences,
            leeway: i64::try_from(self.config.leeway_seconds).unwrap_or(i64::MAX),
        }
    }

    async fn verify_jwt(&self, token: &str, raw_header: &Claims) -> Result<VerifiedToken, AuthError> {
        let reject = |m: String| AuthError::Rejected(m);
        // Checked on the raw header first so that `none` and HMAC tokens get a clear answer
        // before any key is looked at (algorithm-confusion attacks name a public key as secret).
        let alg_name = raw_header.get("alg").and_then(|a| a.as_str()).unwrap_or_default();
        let alg = alg_name
            .parse::<Algorithm>()
            .ok()
            .filter(|a| self.algorithms.contains(a))
            .ok_or_else(|| reject(format!("token algorithm {alg_name:?} is not accepted")))?;
        // RFC 7515 §4.1.11: extensions the recipient does not understand must fail; none are.
        if raw_header.contains_key("crit") {
            return Err(reject("token header has critical extensions (crit)".into()));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| reject(format!("malformed token: {e}")))?;
        let kid = header.kid.as_deref();

        let unknown_kid = || reject(format!("unknown key id {:?}", kid.unwrap_or_default()));
        let mut keys = self.key_set().await?;
        // An unknown kid may be a key the IdP has just rotated in: look once more in a newer set
        // (at most one refetch per call; the cache rate-limits them across calls).
        if let Lookup::UnknownKid = keys.find(kid, alg) {
            match self.keys.refetch_for_unknown_kid(&keys, self.fetch_key_set()).await {
                Ok(Some(fresh)) => keys = fresh,
                Ok(None) => return Err(unknown_kid()),
                Err(e) => return Err(AuthError::KeySource(e)),
            }
        }
        let key = match keys.find(kid, alg) {
            Lookup::Found(key) => &key.key,
            Lookup::NoKey(why) => return Err(reject(why.into())),
            Lookup::UnknownKid => return Err(unknown_kid()),
        };

        // jsonwebtoken checks only the signature here; the claims go through the same
        // `ClaimRules` as introspection answers, so both paths accept and refuse alike.
        let mut validation = Validation::new(alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| {
            if let jsonwebtoken::errors::ErrorKind::InvalidSignature = e.kind() {
                reject("bad token signature".into())
            } else {
                reject(format!("invalid token: {e}"))
            }
        })?;
        self.claim_rules().check(data.claims)
    }

    async fn key_set(&self) -> Result<Arc<KeySet>, AuthError> {
        self.keys.get(self.fetch_key_set()).await.map_err(AuthError::KeySource)
    }

    async fn fetch_key_set(&self) -> Result<KeySet, String> {
        let text = if let Some(file) = &self.config.jwks_file {
            tokio::fs::read(file).await.map_err(|e| format!("{}: {e}", file.display()))?
        } else {
            let url = match &self.config.jwks_url {
                Some(url) => url.clone(),
                None => self
                    .discovery()
                    .await
                    .map_err(|e| e.to_string())?
                    .jwks_uri
                    .clone()
                    .ok_or("the discovery document has no jwks_uri")?,
            };
            self.http.get(&url).await?.to_vec()
        };
        let set = KeySet::parse(&text)?;
        tracing::debug!("JWKS loaded");
        Ok(set)
    }

    /// The discovery document of `issuer`, fetched once (a failed fetch is retried next time).
    async fn discovery(&self) -> Result<Arc<Discovery>, AuthError> {
        let Some(issuer) = &self.config.issuer else {
            return Err(AuthError::Config("no issuer configured for discovery".into()));
        };
        self.discovery
            .get_or_try_init(|| async {
                let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
                let doc: Discovery = self.http.get_json(&url).await.map_err(AuthError::KeySource)?;
                // OIDC Discovery §4.3: a document for another issuer must not be used, or a
                // mix-up would let that issuer's keys sign tokens for this one.
                if doc.issuer != *issuer {
                    return Err(AuthError::KeySource(format!(
                        "{url}: the document is for issuer {:?}, not {issuer:?}",
                        doc.issuer
                    )));
                }
                for url in [&doc.jwks_uri, &doc.introspection_endpoint].into_iter().flatten() {
                    config::check_url(url, self.config.allow_http).map_err(AuthError::KeySource)?;
                }
                Ok(Arc::new(doc))
            })
            .await
            .cloned()
    }

    async fn introspect(&self, token: &str, settings: &IntrospectionConfig) -> Result<VerifiedToken, AuthError> {
        let endpoint = match &settings.endpoint {
            Some(url) => url.clone(),
            None => self
                .discovery()
                .await?
                .introspection_endpoint
                .clone()
                .ok_or_else(|| AuthError::Config("the discovery document has no introspection_endpoint".into()))?,
        };
        let answer = introspection::introspect(&self.http, &endpoint, settings, token).await?;
        self.claim_rules().check(answer)
    }
}

/// The decoded header when `token` has the JWS compact shape (three dot-separated parts, the
/// first one base64url JSON object); anything else is treated as an opaque token.
fn jwt_header(token: &str) -> Option<Claims> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    let bytes = URL_SAFE_NO_PAD.decode(header).ok()?;
    serde_json::from_slice(&bytes).ok()
}
