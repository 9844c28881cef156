//! `/authorize`: the authorization code grant with PKCE (RFC 6749 §4.1, RFC 7636).
//!
//! GET checks the request and shows the sign-in and consent page; POST checks the same request
//! again (it travels in hidden fields), then the credentials, and redirects (303) back to the
//! client with a code, or with `access_denied`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::grants::{CodeGrant, Grant, new_credential};
use crate::html::{Consent, consent_page, error_page};
use crate::http::{Params, is_form, no_store, parse_scopes, secret_matches};
use crate::{ClientConfig, GrantType, OAuthServer, SubscriberConfig, now_unix};

/// How long a code can be redeemed.
const CODE_TTL: Duration = Duration::from_secs(60);

/// A checked authorization request.
struct AuthorizeRequest<'a> {
    client: &'a ClientConfig,
    redirect_uri: String,
    scopes: Vec<String>,
    state: Option<String>,
    code_challenge: Option<String>,
    nonce: Option<String>,
}

/// A 303 to `redirect_uri` with `params` added to its query (RFC 6749 §4.1.2) and `iss`
/// (RFC 9207, against mix-up attacks).
fn redirect(server: &OAuthServer, redirect_uri: &str, state: Option<&str>, params: &[(&str, &str)]) -> Response {
    // Registered URIs were parsed at start-up, and only registered ones get here.
    let Ok(mut url) = url::Url::parse(redirect_uri) else {
        return error_page("the redirect URI is not a URL");
    };
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in params {
            query.append_pair(name, value);
        }
        if let Some(state) = state {
            query.append_pair("state", state);
        }
        query.append_pair("iss", server.issuer());
    }
    let Ok(location) = HeaderValue::from_str(url.as_str()) else {
        return error_page("the redirect URI cannot be used");
    };
    no_store((StatusCode::SEE_OTHER, [(LOCATION, location)]).into_response())
}

fn redirect_error(server: &OAuthServer, request: (&str, Option<&str>), error: &str, description: &str) -> Response {
    redirect(server, request.0, request.1, &[("error", error), ("error_description", description)])
}

/// `43*128unreserved` (RFC 7636 §4.1); an S256 challenge is exactly 43 base64url characters.
fn is_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43 && challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl OAuthServer {
    /// Checks an authorization request. Errors that cannot go back to the client (unknown
    /// client, unregistered redirect URI) are a page; the others redirect (RFC 6749 §4.1.2.1).
    fn check_authorize(&self, params: &Params) -> Result<AuthorizeRequest<'_>, Box<Response>> {
        let Some(client_id) = params.get("client_id") else {
            return Err(Box::new(error_page("The request has no client_id.")));
        };
        let Some(client) = self.client(client_id) else {
            return Err(Box::new(error_page("The application (client_id) is not known here.")));
        };
        let Some(redirect_uri) = params.get("redirect_uri") else {
            return Err(Box::new(error_page("The request has no redirect_uri.")));
        };
        if !client.redirect_uris.iter().any(|uri| uri == redirect_uri) {
            return Err(Box::new(error_page("The redirect_uri is not registered for this application.")));
        }
        let state = params.get("state");
        let fail = |error: &str, description: &str| {
            Err(Box::new(redirect_error(self, (redirect_uri, state), error, description)))
        };
        if !client.allows(GrantType::AuthorizationCode) {
            return fail("unauthorized_client", "this client may not use the authorization code grant");
        }
        match params.get("response_type") {
            None => return fail("invalid_request", "response_type is missing"),
            Some("code") => {}
            Some(_) => return fail("unsupported_response_type", "only response_type=code is supported"),
        }
        let scopes = match parse_scopes(params.get("scope")) {
            Ok(Some(scopes)) => scopes,
            Ok(None) => client.allowed_scopes.clone(),
            Err(e) => return fail("invalid_scope", &e.description),
        };
        if let Some(scope) = scopes.iter().find(|s| !client.allowed_scopes.contains(s)) {
            return fail("invalid_scope", &format!("scope {scope} is not allowed for this client"));
        }
        let code_challenge = params.get("code_challenge");
        match (code_challenge, params.get("code_challenge_method")) {
            (None, None) if client.is_public() => {
                return fail(
                    "invalid_request",
                    "PKCE is required: send code_challenge with code_challenge_method=S256",
                );
            }
            (None, None) => {}
            (None, Some(_)) => return fail("invalid_request", "code_challenge_method without code_challenge"),
            // RFC 7636 §4.3: a missing method means plain, which is refused like an explicit one.
            (Some(_), None | Some("plain")) => {
                return fail("invalid_request", "code_challenge_method must be S256 (plain is not supported)");
            }
            (Some(_), Some(method)) if method != "S256" => {
                return fail("invalid_request", "unsupported code_challenge_method; use S256");
            }
            (Some(challenge), Some(_)) if !is_s256_challenge(challenge) => {
                return fail("invalid_request", "code_challenge is not a base64url SHA-256 digest");
            }
            (Some(_), Some(_)) => {}
        }
        Ok(AuthorizeRequest {
            client,
            redirect_uri: redirect_uri.to_string(),
            scopes,
            state: state.map(str::to_string),
            code_challenge: code_challenge.map(str::to_string),
            nonce: params.get("nonce").map(str::to_string),
        })
    }

    fn consent(&self, request: &AuthorizeRequest<'_>, username: Option<&str>, error: Option<&str>) -> Response {
        let mut hidden: Vec<(&'static str, String)> = vec![
            ("client_id", request.client.client_id.clone()),
            ("redirect_uri", request.redirect_uri.clone()),
            ("response_type", "code".into()),
            ("scope", request.scopes.join(" ")),
        ];
        if let Some(challenge) = &request.code_challenge {
            hidden.push(("code_challenge", challenge.clone()));
            hidden.push(("code_challenge_method", "S256".into()));
        }
        for (name, value) in [("state", &request.state), ("nonce", &request.nonce)] {
            if let Some(value) = value {
                hidden.push((name, value.clone()));
            }
        }
        let action = format!("{}/authorize", self.issuer.path);
        consent_page(&Consent {
            action: &action,
            client_id: &request.client.client_id,
            scopes: &request.scopes,
            hidden: &hidden,
            username,
            error,
        })
    }

    /// The subscriber with these credentials; the time taken does not tell whether the
    /// username exists.
    fn sign_in(&self, username: &str, password: &str) -> Option<&SubscriberConfig> {
        let subscriber = self.config.subscribers.iter().find(|s| s.username == username);
        let expected = subscriber.map_or("\u{0}no such subscriber", |s| s.password.as_str());
        let matches = secret_matches(password, expected);
        subscriber.filter(|_| matches)
    }

    fn issue_code(&self, request: &AuthorizeRequest<'_>, subscriber: &SubscriberConfig) -> Response {
        let state = request.state.as_deref();
        let (code, digest) = new_credential();
        let grant = CodeGrant {
            grant: Grant {
                client_id: request.client.client_id.clone(),
                subject: subscriber.username.clone(),
                phone_number: Some(subscriber.phone_number.clone()),
                scopes: request.scopes.clone(),
                auth_time: now_unix(),
            },
            redirect_uri: request.redirect_uri.clone(),
            code_challenge: request.code_challenge.clone(),
            nonce: request.nonce.clone(),
        };
        if self.grants().insert_code(digest, grant, Instant::now() + CODE_TTL).is_none() {
            tracing::warn!("too many pending authorization codes");
            let why = "too many pending sign-ins; try again shortly";
            return redirect_error(self, (&request.redirect_uri, state), "temporarily_unavailable", why);
        }
        let (client_id, subscriber) = (&request.client.client_id, &subscriber.username);
        tracing::info!(%client_id, %subscriber, "authorization code issued");
        redirect(self, &request.redirect_uri, state, &[("code", &code)])
    }
}

/// GET `/authorize`: the sign-in and consent page, or an error.
pub(crate) async fn show(State(server): State<Arc<OAuthServer>>, RawQuery(query): RawQuery) -> Response {
    let params = match Params::parse(query.unwrap_or_default().as_bytes()) {
        Ok(params) => params,
        Err(e) => return error_page(&e),
    };
    match server.check_authorize(&params) {
        Ok(request) => server.consent(&request, None, None),
        Err(response) => *response,
    }
}

/// POST `/authorize`: the page's form.
pub(crate) async fn submit(State(server): State<Arc<OAuthServer>>, headers: HeaderMap, body: Bytes) -> Response {
    if !is_form(&headers) {
        return error_page("The form must be sent as application/x-www-form-urlencoded.");
    }
    let params = match Params::parse(&body) {
        Ok(params) => params,
        Err(e) => return error_page(&e),
    };
    let request = match server.check_authorize(&params) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    let username = params.get("username");
    match params.get("decision") {
        Some("deny") => {
            tracing::info!(client_id = %request.client.client_id, "authorization denied by the user");
            let state = request.state.as_deref();
            redirect_error(&server, (&request.redirect_uri, state), "access_denied", "the user denied the request")
        }
        Some("approve") => match (username, params.get("password")) {
            (Some(username), Some(password)) => match server.sign_in(username, password) {
                Some(subscriber) => server.issue_code(&request, subscriber),
                None => {
                    tracing::info!(client_id = %request.client.client_id, "sign-in failed");
                    server.consent(&request, Some(username), Some("The username or password is wrong."))
                }
            },
            _ => server.consent(&request, username, Some("Enter your username and password.")),
        },
        _ => server.consent(&request, username, Some("Choose Approve or Deny.")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_challenges() {
        assert!(is_s256_challenge("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
        assert!(!is_s256_challenge("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM"));
        assert!(!is_s256_challenge("short"));
    }
}
