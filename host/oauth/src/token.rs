//! `/token` (RFC 6749 §4.1.3, §4.4, §6) and `/introspect` (RFC 7662).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::grants::{Grant, Refused, digest, new_credential};
use crate::http::{OAuthErrorResponse, Params, is_form, json_no_store, parse_scopes};
use crate::{ClientConfig, GrantType, OAuthServer, now_unix};

type Outcome = Result<Value, OAuthErrorResponse>;

/// `code_verifier = 43*128unreserved` (RFC 7636 §4.1).
fn is_code_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// `BASE64URL(SHA256(code_verifier)) == code_challenge` (RFC 7636 §4.6).
fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    computed.as_bytes().ct_eq(challenge.as_bytes()).into()
}

fn form_params(headers: &HeaderMap, body: &[u8]) -> Result<Params, OAuthErrorResponse> {
    if !is_form(headers) {
        return Err(OAuthErrorResponse::invalid_request("the body must be application/x-www-form-urlencoded"));
    }
    Params::parse(body).map_err(OAuthErrorResponse::invalid_request)
}

fn refused_grant(refused: Refused, what: &str) -> OAuthErrorResponse {
    match refused {
        Refused::Unknown => OAuthErrorResponse::invalid_grant(format!("the {what} is unknown, expired or revoked")),
        Refused::Replayed => OAuthErrorResponse::invalid_grant(format!(
            "the {what} was used before; the tokens issued from it are revoked"
        )),
    }
}

impl OAuthServer {
    fn token_response(
        &self,
        client: &ClientConfig,
        grant: &Grant,
        refresh: Option<(&Grant, Option<u64>)>,
        nonce: Option<&str>,
    ) -> Outcome {
        let access_token = self.access_token(grant).map_err(OAuthErrorResponse::server_error)?;
        let mut body = json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": self.config.access_token_ttl_seconds,
            "scope": grant.scopes.join(" "),
        });
        if let Some((refresh_grant, family)) = refresh
            && client.allows(GrantType::RefreshToken)
        {
            let (token, digest) = new_credential();
            let expires = Instant::now() + Duration::from_secs(self.config.refresh_token_ttl_seconds);
            self.grants().insert_refresh(digest, refresh_grant.clone(), family, expires);
            body["refresh_token"] = json!(token);
        }
        if grant.scopes.iter().any(|s| s == "openid") {
            body["id_token"] = json!(self.id_token(grant, nonce).map_err(OAuthErrorResponse::server_error)?);
        }
        Ok(body)
    }

    fn authorization_code(&self, client: &ClientConfig, params: &Params) -> Outcome {
        let Some(code) = params.get("code") else {
            return Err(OAuthErrorResponse::invalid_request("code is missing"));
        };
        let Some(redirect_uri) = params.get("redirect_uri") else {
            return Err(OAuthErrorResponse::invalid_request("redirect_uri is missing"));
        };
        let verifier = params.get("code_verifier");
        if verifier.is_some_and(|v| !is_code_verifier(v)) {
            return Err(OAuthErrorResponse::invalid_request("code_verifier must be 43 to 128 unreserved characters"));
        }
        let (code, family) = self
            .grants()
            .redeem_code(&digest(code), |code| {
                if code.grant.client_id != client.client_id {
                    return Err(OAuthErrorResponse::invalid_grant("the code was issued to another client"));
                }
                if code.redirect_uri != redirect_uri {
                    return Err(OAuthErrorResponse::invalid_grant(
                        "redirect_uri differs from the authorization request",
                    ));
                }
                match (&code.code_challenge, verifier) {
                    (Some(challenge), Some(verifier)) if pkce_matches(verifier, challenge) => Ok(()),
                    (Some(_), Some(_)) => Err(OAuthErrorResponse::invalid_grant("code_verifier does not match")),
                    (Some(_), None) => Err(OAuthErrorResponse::invalid_grant("code_verifier is missing")),
                    (None, Some(_)) => Err(OAuthErrorResponse::invalid_grant("this code has no code_challenge")),
                    (None, None) => Ok(()),
                }
            })
            .map_err(|refused| refused_grant(refused, "code"))??;
        tracing::info!(client_id = %client.client_id, subject = %code.grant.subject, "tokens issued for a code");
        self.token_response(client, &code.grant, Some((&code.grant, Some(family))), code.nonce.as_deref())
    }

    fn client_credentials(&self, client: &ClientConfig, params: &Params) -> Outcome {
        if client.is_public() {
            return Err(OAuthErrorResponse::unauthorized_client("client_credentials needs a confidential client"));
        }
        let scopes = match parse_scopes(params.get("scope"))? {
            Some(scopes) => scopes,
            // `openid` means a user; there is none here.
            None => client.allowed_scopes.iter().filter(|s| *s != "openid").cloned().collect(),
        };
        if let Some(scope) = scopes.iter().find(|s| !client.allowed_scopes.contains(s)) {
            return Err(OAuthErrorResponse::invalid_scope(format!("scope {scope} is not allowed for this client")));
        }
        let grant = Grant {
            client_id: client.client_id.clone(),
            // RFC 9068 §2.2: without a resource owner, the subject is the client.
            subject: client.client_id.clone(),
            phone_number: client.phone_number.clone(),
            scopes: scopes.into_iter().filter(|s| s != "openid").collect(),
            auth_time: now_unix(),
        };
        // RFC 6749 §4.4.3: no refresh token for client credentials.
        self.token_response(client, &grant, None, None)
    }

    fn refresh_token(&self, client: &ClientConfig, params: &Params) -> Outcome {
        let Some(token) = params.get("refresh_token") else {
            return Err(OAuthErrorResponse::invalid_request("refresh_token is missing"));
        };
        let requested = parse_scopes(params.get("scope"))?;
        let (grant, family) = self
            .grants()
            .use_refresh(&digest(token), |grant| {
                if grant.client_id != client.client_id {
                    return Err(OAuthErrorResponse::invalid_grant("the refresh token was issued to another client"));
                }
                match requested.iter().flatten().find(|s| !grant.scopes.contains(s)) {
                    Some(scope) => Err(OAuthErrorResponse::invalid_scope(format!("scope {scope} was not granted"))),
                    None => Ok(()),
                }
            })
            .map_err(|refused| refused_grant(refused, "refresh token"))??;
        // RFC 6749 §6: the new access token may be narrowed; the new refresh token keeps the
        // scope of the old one.
        let access = Grant { scopes: requested.unwrap_or_else(|| grant.scopes.clone()), ..grant.clone() };
        self.token_response(client, &access, Some((&grant, Some(family))), None)
    }

    fn token_request(&self, headers: &HeaderMap, body: &[u8]) -> Outcome {
        let params = form_params(headers, body)?;
        let grant_type = match params.get("grant_type") {
            None => return Err(OAuthErrorResponse::invalid_request("grant_type is missing")),
            Some("authorization_code") => GrantType::AuthorizationCode,
            Some("client_credentials") => GrantType::ClientCredentials,
            Some("refresh_token") => GrantType::RefreshToken,
            Some(other) => {
                return Err(OAuthErrorResponse::unsupported_grant_type(format!("grant_type {other} is not supported")));
            }
        };
        let client = self.authenticate_client(headers, &params)?;
        if !client.allows(grant_type) {
            return Err(OAuthErrorResponse::unauthorized_client(format!(
                "this client may not use {}",
                grant_type.as_str()
            )));
        }
        match grant_type {
            GrantType::AuthorizationCode => self.authorization_code(client, &params),
            GrantType::ClientCredentials => self.client_credentials(client, &params),
            GrantType::RefreshToken => self.refresh_token(client, &params),
        }
    }

    /// The claims of an active access token issued here; `None` for anything else.
    fn active_claims(&self, token: &str) -> Option<serde_json::Map<String, Value>> {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        // Checked below without leeway: this server's clock is the one that set them.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let claims = self.key.verify(token, "at+jwt", validation).ok()?;
        let now = now_unix();
        let date = |name: &str| claims.get(name).and_then(Value::as_i64);
        let live = date("exp").is_some_and(|exp| now < exp) && date("nbf").is_none_or(|nbf| nbf <= now);
        live.then_some(claims)
    }

    fn introspection_request(&self, headers: &HeaderMap, body: &[u8]) -> Outcome {
        let params = form_params(headers, body)?;
        let client = self.authenticate_client(headers, &params)?;
        if client.is_public() {
            return Err(OAuthErrorResponse::invalid_client("introspection needs a confidential client"));
        }
        let Some(token) = params.get("token") else {
            return Err(OAuthErrorResponse::invalid_request("token is missing"));
        };
        // Only access tokens are introspected; refresh tokens and anything else are inactive.
        Ok(match self.active_claims(token) {
            Some(claims) => {
                let mut answer = serde_json::Map::new();
                answer.insert("active".into(), json!(true));
                answer.insert("token_type".into(), json!("Bearer"));
                answer.extend(claims);
                Value::Object(answer)
            }
            None => json!({"active": false}),
        })
    }
}

fn respond(outcome: Outcome) -> Response {
    match outcome {
        Ok(body) => json_no_store(body),
        Err(error) => error.into_response(),
    }
}

/// POST `/token`.
pub(crate) async fn token(State(server): State<Arc<OAuthServer>>, headers: HeaderMap, body: Bytes) -> Response {
    respond(server.token_request(&headers, &body))
}

/// POST `/introspect`.
pub(crate) async fn introspect(State(server): State<Arc<OAuthServer>>, headers: HeaderMap, body: Bytes) -> Response {
    respond(server.introspection_request(&headers, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(is_code_verifier(verifier));
        assert!(pkce_matches(verifier, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
        assert!(!pkce_matches(verifier, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"));
        assert!(!is_code_verifier("short"));
        assert!(!is_code_verifier(&"a".repeat(129)));
    }
}
