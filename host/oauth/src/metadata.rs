//! OIDC discovery / RFC 8414 metadata and the JWKS.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::http::header::CACHE_CONTROL;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::{CAMARA_WEBRTC_SCOPES, OAuthServer};

const CLIENT_AUTH_METHODS: &[&str] = &["client_secret_basic", "client_secret_post"];

impl OAuthServer {
    /// `openid`, the CAMARA WebRTC scopes, then any other scope a client is allowed.
    fn scopes_supported(&self) -> Vec<&str> {
        let mut scopes: Vec<&str> = std::iter::once("openid").chain(CAMARA_WEBRTC_SCOPES.iter().copied()).collect();
        for scope in self.config.clients.iter().flat_map(|c| &c.allowed_scopes) {
            if !scopes.contains(&scope.as_str()) {
                scopes.push(scope);
            }
        }
        scopes
    }

    /// The discovery document (OpenID Connect Discovery 1.0 §3, RFC 8414 §2).
    pub fn metadata(&self) -> Value {
        let mut token_auth: Vec<&str> = CLIENT_AUTH_METHODS.to_vec();
        token_auth.push("none");
        json!({
            "issuer": self.config.issuer,
            "authorization_endpoint": self.endpoint("authorize"),
            "token_endpoint": self.endpoint("token"),
            "jwks_uri": self.endpoint("jwks"),
            "introspection_endpoint": self.endpoint("introspect"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": token_auth,
            "introspection_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
            "scopes_supported": self.scopes_supported(),
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "claims_supported": [
                "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "azp",
                "phone_number", "phone_number_verified",
            ],
            "authorization_response_iss_parameter_supported": true,
        })
    }
}

pub(crate) async fn discovery(State(server): State<Arc<OAuthServer>>) -> Json<Value> {
    Json(server.metadata())
}

pub(crate) async fn jwks(State(server): State<Arc<OAuthServer>>) -> Response {
    let mut response = Json(server.jwks()).into_response();
    // The key changes only with a restart, and verifiers refetch on an unknown `kid`.
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    response
}
