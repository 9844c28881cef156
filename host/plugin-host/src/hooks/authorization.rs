//! The authorization hook: which caller may run which operation, and who the subscriber is.

use serde::{Deserialize, Serialize};

pub use super::{CamaraError, Pair};

/// The CAMARA API an operation belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Api {
    WebrtcRegistration,
    WebrtcCallHandling,
    WebrtcEvents,
}

impl Api {
    pub fn as_str(self) -> &'static str {
        match self {
            Api::WebrtcRegistration => "webrtc-registration",
            Api::WebrtcCallHandling => "webrtc-call-handling",
            Api::WebrtcEvents => "webrtc-events",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Delete => "DELETE",
        }
    }
}

/// The API operation being authorized, named as in the CAMARA OpenAPI documents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    pub api: Api,
    /// The OpenAPI `operationId`, e.g. `createSession`.
    pub operation_id: String,
    pub method: HttpMethod,
    /// Path parameters, e.g. `mediaSessionId`.
    pub path_ids: Vec<Pair>,
}

/// Claims of a token whose signature, expiry and not-before the host has checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenClaims {
    pub issuer: String,
    pub subject: Option<String>,
    pub audience: Vec<String>,
    pub scopes: Vec<String>,
    /// Seconds since the Unix epoch.
    pub expires_at: i64,
    pub issued_at: Option<i64>,
    pub client_id: Option<String>,
    /// Every claim of the token, the typed ones above included.
    pub all_claims: serde_json::Map<String, serde_json::Value>,
}

impl TokenClaims {
    /// The claims the typed fields carry, which 0.2.0 leaves out of `other-claims`.
    pub const TYPED: [&'static str; 8] = ["iss", "sub", "aud", "scope", "scp", "exp", "iat", "client_id"];
}

/// The parts of the request a policy may bind to the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestFields {
    pub device_id: Option<String>,
    pub registration_id: Option<String>,
    /// For `createSession`: originatorAddress then receiverAddress.
    pub addresses: Vec<String>,
    /// Event types requested by a webrtc-events subscription.
    pub event_types: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthorizationRequest {
    pub operation: Operation,
    pub claims: TokenClaims,
    pub request: RequestFields,
}

/// Who the caller is, once allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscriber {
    /// E.164, with `+`.
    pub phone_number: Option<String>,
    pub subject: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    Allow(Subscriber),
    Deny(CamaraError),
}
