//! What the operator configures: where the keys come from, what the tokens must say.

use std::path::PathBuf;

use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};

use crate::AuthError;

/// Token verification settings (the gateway's `[auth]` section).
///
/// JWT keys come from `jwks_file`, else `jwks_url`, else the `jwks_uri` of the OIDC discovery
/// document of `issuer`. Opaque tokens go to RFC 7662 introspection when `introspection` is set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VerifierConfig {
    /// The authorization server; enables discovery at `{issuer}/.well-known/openid-configuration`.
    /// When `issuers` is empty, tokens must carry this exact `iss`.
    pub issuer: Option<String>,
    pub jwks_file: Option<PathBuf>,
    pub jwks_url: Option<String>,
    /// Accepted `iss` values; empty accepts `issuer` if set, else any issuer whose key verifies.
    pub issuers: Vec<String>,
    /// Accepted `aud` values (any one suffices); empty skips the audience check.
    pub audiences: Vec<String>,
    /// Asymmetric algorithms accepted; symmetric ones and `none` never are.
    pub algorithms: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway_seconds: u64,
    /// How long a fetched JWKS is used before it is fetched again.
    pub jwks_cache_seconds: u64,
    /// On an unknown `kid`, the JWKS is fetched again at most this often (and a failed fetch is
    /// not retried sooner): key rotation works without letting bad tokens hammer the IdP.
    pub min_refetch_interval_seconds: u64,
    /// Timeout of each request to the authorization server (discovery, JWKS, introspection).
    pub request_timeout_seconds: u64,
    pub introspection: Option<IntrospectionConfig>,
    /// Accept `http://` URLs (tests and development on loopback); otherwise https only.
    pub allow_http: bool,
}

impl Default for VerifierConfig {
    fn default() -> Self {
        VerifierConfig {
            issuer: None,
            jwks_file: None,
            jwks_url: None,
            issuers: Vec::new(),
            audiences: Vec::new(),
            algorithms: vec!["RS256".into(), "ES256".into(), "PS256".into()],
            leeway_seconds: 30,
            jwks_cache_seconds: 300,
            min_refetch_interval_seconds: 10,
            request_timeout_seconds: 5,
            introspection: None,
            allow_http: false,
        }
    }
}

/// RFC 7662 token introspection, for tokens that are not JWTs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IntrospectionConfig {
    /// Default: the `introspection_endpoint` of the discovery document.
    pub endpoint: Option<String>,
    /// The gateway's own client credentials at the authorization server (HTTP Basic).
    pub client_id: String,
    pub client_secret: String,
}

impl VerifierConfig {
    /// Parses `algorithms`, refusing what would make a JWKS-based check unsound.
    pub(crate) fn parsed_algorithms(&self) -> Result<Vec<Algorithm>, AuthError> {
        if self.algorithms.is_empty() {
            return Err(AuthError::Config("no algorithm is accepted ([auth] algorithms is empty)".into()));
        }
        self.algorithms
            .iter()
            .map(|a| match a.parse::<Algorithm>() {
                // With a shared secret, anyone holding the (public) JWKS could mint tokens.
                Ok(Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) => {
                    Err(AuthError::Config(format!("symmetric algorithm {a} cannot be used with a JWKS")))
                }
                Ok(alg) => Ok(alg),
                // "none" lands here: jsonwebtoken has no such algorithm.
                Err(_) => Err(AuthError::Config(format!("unknown or refused algorithm {a:?}"))),
            })
            .collect()
    }

    /// Checks every configured URL now, so that a typo fails at start-up rather than per request.
    pub(crate) fn validate(&self) -> Result<(), AuthError> {
        if self.jwks_file.is_some() && self.jwks_url.is_some() {
            return Err(AuthError::Config("set jwks_file or jwks_url, not both".into()));
        }
        if let Some(issuer) = &self.issuer {
            check_url(issuer, self.allow_http).map_err(AuthError::Config)?;
        }
        if let Some(url) = &self.jwks_url {
            check_url(url, self.allow_http).map_err(AuthError::Config)?;
        }
        if let Some(introspection) = &self.introspection {
            match &introspection.endpoint {
                Some(url) => check_url(url, self.allow_http).map_err(AuthError::Config)?,
                None if self.issuer.is_none() => {
                    return Err(AuthError::Config(
                        "introspection needs an endpoint, or an issuer to discover it from".into(),
                    ));
                }
                None => {}
            }
            if introspection.client_id.is_empty() {
                return Err(AuthError::Config("introspection needs a client_id".into()));
            }
        }
        Ok(())
    }

    /// The `iss` values a token may carry; `None` accepts any.
    pub(crate) fn accepted_issuers(&self) -> Option<Vec<String>> {
        if !self.issuers.is_empty() { Some(self.issuers.clone()) } else { self.issuer.clone().map(|i| vec![i]) }
    }

    pub(crate) fn has_jwks_source(&self) -> bool {
        self.jwks_file.is_some() || self.jwks_url.is_some() || self.issuer.is_some()
    }
}

/// Only absolute https URLs (http too when allowed), so that keys never travel in clear text.
pub(crate) fn check_url(text: &str, allow_http: bool) -> Result<(), String> {
    let url = url::Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_http => {}
        "http" => return Err(format!("{text:?}: http URLs need allow_http = true")),
        other => return Err(format!("{text:?}: unsupported scheme {other}")),
    }
    if url.host().is_none() {
        return Err(format!("{text:?} has no host"));
    }
    Ok(())
}
