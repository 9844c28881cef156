//! Time, issuer and audience checks, shared by verified JWTs and introspection answers so that
//! both kinds of token are held to exactly the same rules.

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::{AuthError, VerifiedToken};

pub(crate) type Claims = Map<String, Value>;

pub(crate) struct ClaimRules<'a> {
    pub(crate) issuers: Option<&'a [String]>,
    pub(crate) audiences: &'a [String],
    pub(crate) leeway: i64,
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or_default()
}

/// A NumericDate (RFC 7519 §2): seconds, possibly fractional.
fn numeric_date(claims: &Claims, name: &str) -> Result<Option<i64>, AuthError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f.floor() as i64))
            .map(Some)
            .ok_or_else(|| AuthError::Rejected(format!("claim {name} is not a date"))),
        Some(_) => Err(AuthError::Rejected(format!("claim {name} is not a date"))),
    }
}

fn text(claims: &Claims, name: &str) -> Option<String> {
    claims.get(name).and_then(Value::as_str).map(str::to_string)
}

/// `aud` may be one string or an array of them (RFC 7519 §4.1.3).
fn audience(claims: &Claims) -> Vec<String> {
    match claims.get("aud") {
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    }
}

impl ClaimRules<'_> {
    /// Checks `claims` and returns them as a [`VerifiedToken`]. `exp` is required: a token that
    /// never expires cannot be revoked by waiting, and CAMARA access tokens always carry one.
    pub(crate) fn check(&self, claims: Claims) -> Result<VerifiedToken, AuthError> {
        let reject = |m: &str| Err(AuthError::Rejected(m.to_string()));
        let now = now();
        let Some(expires_at) = numeric_date(&claims, "exp")? else {
            return reject("token has no expiry (exp)");
        };
        if now > expires_at.saturating_add(self.leeway) {
            return reject("token has expired");
        }
        if let Some(not_before) = numeric_date(&claims, "nbf")?
            && not_before > now.saturating_add(self.leeway)
        {
            return reject("token is not valid yet (nbf)");
        }
        let issuer = text(&claims, "iss");
        if let Some(accepted) = self.issuers {
            match &issuer {
                None => return reject("token has no issuer (iss)"),
                Some(iss) if !accepted.contains(iss) => {
                    return reject("token issuer is not accepted");
                }
                Some(_) => {}
            }
        }
        let audience = audience(&claims);
        if !self.audiences.is_empty() {
            if audience.is_empty() {
                return reject("token has no audience (aud)");
            }
            if !audience.iter().any(|a| self.audiences.contains(a)) {
                return reject("token audience is not accepted");
            }
        }
        Ok(VerifiedToken {
            issuer: issuer.unwrap_or_default(),
            subject: text(&claims, "sub"),
            audience,
            scopes: scopes(&claims),
            expires_at,
            issued_at: numeric_date(&claims, "iat").ok().flatten(),
            client_id: text(&claims, "client_id").or_else(|| text(&claims, "azp")),
            claims,
        })
    }
}

/// `scope` is space-separated (RFC 8693 §4.2, RFC 7662); some issuers send an `scp` array.
fn scopes(claims: &Claims) -> Vec<String> {
    let mut scopes = BTreeSet::new();
    if let Some(Value::String(scope)) = claims.get("scope") {
        scopes.extend(scope.split_whitespace().map(str::to_string));
    }
    match claims.get("scp") {
        Some(Value::Array(scp)) => scopes.extend(scp.iter().filter_map(|v| v.as_str().map(str::to_string))),
        Some(Value::String(scp)) => scopes.extend(scp.split_whitespace().map(str::to_string)),
        _ => {}
    }
    scopes.into_iter().collect()
}
