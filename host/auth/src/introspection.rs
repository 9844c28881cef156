//! RFC 7662 token introspection: asks the authorization server about a token it issued.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use crate::claims::Claims;
use crate::http::HttpClient;
use crate::{AuthError, IntrospectionConfig};

/// POSTs `token` to `endpoint` and returns the answer of an *active* token.
/// A transport or server failure is `KeySource` (503); an inactive token is `Rejected` (401).
pub(crate) async fn introspect(
    http: &HttpClient,
    endpoint: &str,
    settings: &IntrospectionConfig,
    token: &str,
) -> Result<Claims, AuthError> {
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("token", token)
        .append_pair("token_type_hint", "access_token")
        .finish();
    let answer: Claims =
        http.post_form_json(endpoint, &basic_auth(settings), form).await.map_err(AuthError::KeySource)?;
    // RFC 7662 §2.2: anything but `"active": true` means the token must not be honoured.
    if answer.get("active") != Some(&Value::Bool(true)) {
        return Err(AuthError::Rejected("token is not active".into()));
    }
    Ok(answer)
}

/// RFC 6749 §2.3.1: id and secret are form-urlencoded before being joined and base64-encoded.
fn basic_auth(settings: &IntrospectionConfig) -> String {
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", encode(&settings.client_id), encode(&settings.client_secret));
    format!("Basic {}", STANDARD.encode(pair))
}
