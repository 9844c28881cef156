//! Request parameters, RFC 6749 §5.2 error answers and client authentication (§2.3.1), shared by
//! `/token` and `/introspect`.

use axum::Json;
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, PRAGMA, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::grants::digest;
use crate::{ClientConfig, OAuthServer};

/// Longest value accepted for any parameter (tokens, URIs, state).
const MAX_PARAM: usize = 8 * 1024;

/// Form or query parameters: each at most once (RFC 6749 §3.1, §3.2), empty ones dropped as if
/// omitted.
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub(crate) fn parse(input: &[u8]) -> Result<Params, String> {
        let mut params: Vec<(String, String)> = Vec::new();
        for (name, value) in form_urlencoded::parse(input) {
            if value.is_empty() {
                continue;
            }
            if value.len() > MAX_PARAM {
                return Err(format!("parameter {name} is too long"));
            }
            if params.iter().any(|(n, _)| *n == name) {
                return Err(format!("parameter {name} is given more than once"));
            }
            params.push((name.into_owned(), value.into_owned()));
        }
        Ok(Params(params))
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Whether the body is declared as `application/x-www-form-urlencoded`.
pub(crate) fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
}

/// Compares a presented secret with the expected one in constant time (over their digests, so
/// not even the length leaks).
pub(crate) fn secret_matches(presented: &str, expected: &str) -> bool {
    digest(presented).ct_eq(&digest(expected)).into()
}

/// Answers that must not be cached (RFC 6749 §5.1).
pub(crate) fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

pub(crate) fn json_no_store(body: Value) -> Response {
    no_store(Json(body).into_response())
}

/// An RFC 6749 §5.2 error.
#[derive(Debug)]
pub(crate) struct OAuthErrorResponse {
    pub(crate) status: StatusCode,
    pub(crate) error: &'static str,
    pub(crate) description: String,
}

impl OAuthErrorResponse {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        OAuthErrorResponse { status, error, description: description.into() }
    }

    pub(crate) fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    pub(crate) fn invalid_client(description: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
    }

    pub(crate) fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }

    pub(crate) fn unauthorized_client(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unauthorized_client", description)
    }

    pub(crate) fn unsupported_grant_type(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unsupported_grant_type", description)
    }

    pub(crate) fn invalid_scope(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope", description)
    }

    pub(crate) fn server_error(description: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", description)
    }
}

impl IntoResponse for OAuthErrorResponse {
    fn into_response(self) -> Response {
        let body = json!({"error": self.error, "error_description": self.description});
        let mut response = json_no_store(body);
        *response.status_mut() = self.status;
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 7235 §3.1: a 401 names the scheme to use.
            response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"oauth\""));
        }
        response
    }
}

/// RFC 6749 §2.3.1 / appendix B: the id and secret are form-urlencoded inside HTTP Basic.
fn form_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn basic_credentials(header: &HeaderValue) -> Result<(String, String), OAuthErrorResponse> {
    let malformed = || OAuthErrorResponse::invalid_client("malformed Authorization header");
    let text = header.to_str().map_err(|_| malformed())?;
    let (scheme, encoded) = text.trim().split_once(' ').ok_or_else(malformed)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthErrorResponse::invalid_client(format!("unsupported authentication scheme {scheme}")));
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| malformed())?;
    let pair = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = pair.split_once(':').ok_or_else(malformed)?;
    Ok((form_decode(id).ok_or_else(malformed)?, form_decode(secret).ok_or_else(malformed)?))
}

impl OAuthServer {
    /// Authenticates the calling client: `client_secret_basic`, `client_secret_post`, or `none`
    /// (a public client naming itself with `client_id`). Only one method per request.
    pub(crate) fn authenticate_client(
        &self,
        headers: &HeaderMap,
        params: &Params,
    ) -> Result<&ClientConfig, OAuthErrorResponse> {
        let basic = headers.get(AUTHORIZATION).map(basic_credentials).transpose()?;
        let form_id = params.get("client_id");
        let form_secret = params.get("client_secret");
        let (client_id, secret) = match basic {
            Some(_) if form_secret.is_some() => {
                return Err(OAuthErrorResponse::invalid_request("use one client authentication method, not two"));
            }
            Some((id, _)) if form_id.is_some_and(|f| f != id) => {
                return Err(OAuthErrorResponse::invalid_request("client_id differs from the authenticated client"));
            }
            Some((id, secret)) => (id, Some(secret)),
            None => match form_id {
                Some(id) => (id.to_string(), form_secret.map(str::to_string)),
                None => return Err(OAuthErrorResponse::invalid_client("client authentication is missing")),
            },
        };
        let Some(client) = self.client(&client_id) else {
            return Err(OAuthErrorResponse::invalid_client("unknown client"));
        };
        match (&client.client_secret, secret.as_deref()) {
            (Some(expected), Some(given)) if secret_matches(given, expected) => Ok(client),
            (Some(_), _) => Err(OAuthErrorResponse::invalid_client("client authentication failed")),
            // A public client has no secret; some libraries send Basic with an empty one.
            (None, None | Some("")) => Ok(client),
            (None, Some(_)) => Err(OAuthErrorResponse::invalid_client("this public client has no secret")),
        }
    }
}

/// Parses a `scope` parameter (space-separated, RFC 6749 §3.3), deduplicated in order.
pub(crate) fn parse_scopes(text: Option<&str>) -> Result<Option<Vec<String>>, OAuthErrorResponse> {
    let Some(text) = text else { return Ok(None) };
    let mut scopes: Vec<String> = Vec::new();
    for scope in text.split(' ').filter(|s| !s.is_empty()) {
        if !crate::config::is_scope_token(scope) {
            return Err(OAuthErrorResponse::invalid_scope(format!("{scope:?} is not a valid scope")));
        }
        if !scopes.iter().any(|s| s == scope) {
            scopes.push(scope.to_string());
        }
    }
    Ok(if scopes.is_empty() { None } else { Some(scopes) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_refuse_duplicates_and_drop_empty_values() {
        assert!(Params::parse(b"a=1&a=2").is_err());
        let params = Params::parse(b"a=&a=2&b=x%20y+z").unwrap();
        assert_eq!(params.get("a"), Some("2"));
        assert_eq!(params.get("b"), Some("x y z"));
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let header =
            HeaderValue::from_str(&format!("Basic {}", STANDARD.encode("gate%3Away:s3cret%3A%26%3D+x"))).unwrap();
        assert_eq!(basic_credentials(&header).unwrap(), ("gate:way".into(), "s3cret:&= x".into()));
        assert!(basic_credentials(&HeaderValue::from_static("Basic !!!")).is_err());
        assert!(basic_credentials(&HeaderValue::from_static("Bearer abc")).is_err());
        let bad_escape = HeaderValue::from_str(&format!("Basic {}", STANDARD.encode("a:%zz"))).unwrap();
        assert!(basic_credentials(&bad_escape).is_err());
    }

    #[test]
    fn scopes() {
        assert_eq!(parse_scopes(Some("a  b a")).unwrap(), Some(vec!["a".into(), "b".into()]));
        assert_eq!(parse_scopes(Some(" ")).unwrap(), None);
        assert!(parse_scopes(Some("a\\b")).is_err());
    }
}
