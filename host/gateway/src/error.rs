//! The CAMARA error body, and how every failure becomes one.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use camara_plugin_host::{PluginError, PluginFailureKind};

/// An API error: HTTP status, CAMARA code and message (`ErrorInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    /// Seconds for a `Retry-After` header (overload answers).
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError { status, code: code.into(), message: message.into(), retry_after: None }
    }

    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message)
    }

    /// A value outside the range a field allows.
    pub fn out_of_range(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "OUT_OF_RANGE", message)
    }

    /// `422`: a well-formed request the service cannot apply (`SERVICE_NOT_APPLICABLE`,
    /// `MISSING_IDENTIFIER`...: the codes of the CAMARA `Generic422`).
    pub fn unprocessable(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "The request body must be application/json",
        )
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }

    pub fn conflict(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", message)
    }

    /// A status and code that came from a plugin's decision.
    pub fn from_plugin_decision(status: u16, code: String, message: String) -> Self {
        match StatusCode::from_u16(status) {
            Ok(s) if s.is_client_error() || s.is_server_error() => {
                ApiError { status: s, code, message, retry_after: None }
            }
            _ => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                format!("a plugin answered with an invalid error status {status} ({code}: {message})"),
            ),
        }
    }
}

/// How long an overloaded plugin asks clients to wait: its calls last one deadline at most.
const PLUGIN_OVERLOAD_RETRY_AFTER_SECONDS: u32 = 1;

/// A failing plugin fails only the request that called it, with a body that names the plugin and
/// the kind of failure; the details (backtrace, guest source paths) are in the log.
impl From<PluginError> for ApiError {
    fn from(e: PluginError) -> Self {
        let message = e.public_message();
        match e.kind() {
            PluginFailureKind::Deadline => Self::new(StatusCode::GATEWAY_TIMEOUT, "TIMEOUT", message),
            PluginFailureKind::Overload => {
                ApiError { retry_after: Some(PLUGIN_OVERLOAD_RETRY_AFTER_SECONDS), ..Self::unavailable(message) }
            }
            _ => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", message),
        }
    }
}

/// The CAMARA `ErrorInfo` body.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorInfo {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorInfo { status: self.status.as_u16(), code: self.code, message: self.message };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}
