//! Access-token verification (CAMARA ICM): signature against a JWKS, `exp`, `nbf`, `iss`, `aud`.
//! What a verified token may do is the authorization plugin's decision, not this module's.

use std::collections::HashSet;
use std::sync::Arc;

use camara_plugin_host::authorization::TokenClaims;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tokio::sync::RwLock;

use crate::config::AuthConfig;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no token verification keys are configured ([auth] jwks_file or jwks_url)")]
    NotConfigured,
    #[error("cannot load the JWKS: {0}")]
    Jwks(String),
    #[error("{0}")]
    Rejected(String),
}

/// Verifies bearer tokens against the configured JWKS.
pub struct TokenVerifier {
    config: AuthConfig,
    algorithms: Vec<Algorithm>,
    keys: RwLock<Option<Arc<JwkSet>>>,
}

impl TokenVerifier {
    pub fn new(config: AuthConfig) -> Result<Self, AuthError> {
        let algorithms = config
            .algorithms
            .iter()
            .map(|a| match a.parse::<Algorithm>() {
                Ok(Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) => {
                    Err(AuthError::Jwks(format!("symmetric algorithm {a} cannot be used with a JWKS")))
                }
                Ok(alg) => Ok(alg),
                Err(_) => Err(AuthError::Jwks(format!("unknown algorithm {a}"))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TokenVerifier { config, algorithms, keys: RwLock::new(None) })
    }

    pub fn is_configured(&self) -> bool {
        self.config.jwks_file.is_some() || self.config.jwks_url.is_some()
    }

    /// Loads the key set now, so that a bad configuration shows at start-up.
    pub async fn preload(&self) -> Result<(), AuthError> {
        if self.is_configured() {
            self.key_set().await?;
        }
        Ok(())
    }

    async fn key_set(&self) -> Result<Arc<JwkSet>, AuthError> {
        if let Some(keys) = self.keys.read().await.clone() {
            return Ok(keys);
        }
        let text = if let Some(file) = &self.config.jwks_file {
            tokio::fs::read_to_string(file).await.map_err(|e| AuthError::Jwks(format!("{}: {e}", file.display())))?
        } else if let Some(url) = &self.config.jwks_url {
            crate::http_client::get_text(url).await.map_err(AuthError::Jwks)?
        } else {
            return Err(AuthError::NotConfigured);
        };
        let set: JwkSet = serde_json::from_str(&text).map_err(|e| AuthError::Jwks(format!("not a JWKS: {e}")))?;
        let set = Arc::new(set);
        *self.keys.write().await = Some(set.clone());
        Ok(set)
    }

    /// Verifies `token` and returns its claims in the shape the authorization plugin takes.
    pub async fn verify(&self, token: &str) -> Result<TokenClaims, AuthError> {
        let reject = |m: String| AuthError::Rejected(m);
        let header = jsonwebtoken::decode_header(token).map_err(|e| reject(format!("malformed token: {e}")))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(reject(format!("token algorithm {:?} is not accepted", header.alg)));
        }
        let keys = self.key_set().await?;
        let jwk = match &header.kid {
            Some(kid) => keys.find(kid).ok_or_else(|| reject(format!("unknown key id {kid:?}")))?,
            None if keys.keys.len() == 1 => &keys.keys[0],
            None => return Err(reject("token has no key id (kid)".into())),
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| reject(format!("unusable key: {e}")))?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.config.leeway_seconds;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        if self.config.issuers.is_empty() {
            validation.iss = None;
        } else {
            validation.set_issuer(&self.config.issuers);
            validation.required_spec_claims.insert("iss".into());
        }
        if self.config.audiences.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.config.audiences);
            validation.required_spec_claims.insert("aud".into());
        }
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, &key, &validation)
            .map_err(|e| reject(format!("invalid token: {e}")))?;
        Ok(token_claims(data.claims))
    }
}

fn token_claims(claims: serde_json::Map<String, serde_json::Value>) -> TokenClaims {
    let text = |k: &str| claims.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let audience = match claims.get("aud") {
        Some(serde_json::Value::String(a)) => vec![a.clone()],
        Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    };
    // RFC 8693 `scope` is space-separated; some issuers send an `scp` array instead.
    let mut scopes: Vec<String> = text("scope").map(|s| s.split_whitespace().map(str::to_string).collect()).unwrap_or_default();
    if let Some(serde_json::Value::Array(scp)) = claims.get("scp") {
        scopes.extend(scp.iter().filter_map(|v| v.as_str().map(str::to_string)));
    }
    let unique: HashSet<String> = scopes.drain(..).collect();
    let mut scopes: Vec<String> = unique.into_iter().collect();
    scopes.sort();
    TokenClaims {
        issuer: text("iss").unwrap_or_default(),
        subject: text("sub"),
        audience,
        scopes,
        expires_at: claims.get("exp").and_then(|v| v.as_i64()).unwrap_or_default(),
        issued_at: claims.get("iat").and_then(|v| v.as_i64()),
        client_id: text("client_id").or_else(|| text("azp")),
        all_claims_json: serde_json::Value::Object(claims).to_string(),
    }
}
