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
            PluginFailureKind::CircuitOpen => {
                let wait = e.retry_after().map_or(1, |d| d.as_secs_f64().ceil().max(1.0) as u32);
                ApiError { retry_after: Some(wait), ..Self::unavailable(message) }
            }
            _ => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", message),
        }
    }
}

/// The CAMARA `ErrorInfo` body.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorInfo {
    #[schema(minimum = 100, maximum = 599)]
    pub status: u16,
    #[schema(max_length = 96)]
    pub code: String,
    /// At most [`MAX_MESSAGE_CHARS`].
    #[schema(max_length = 512)]
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorInfo { status: self.status.as_u16(), code: self.code, message: within_limit(self.message) };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

/// `ErrorInfo.message` has `maxLength: 512` in the CAMARA files.
pub const MAX_MESSAGE_CHARS: usize = 512;

/// The message cut to [`MAX_MESSAGE_CHARS`], whatever produced it (a plugin's message too).
fn within_limit(mut message: String) -> String {
    if let Some((end, _)) = message.char_indices().nth(MAX_MESSAGE_CHARS) {
        let keep = message[..end].char_indices().nth(MAX_MESSAGE_CHARS - 1).map_or(end, |(i, _)| i);
        message.truncate(keep);
        message.push('…');
    }
    message
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_message_never_exceeds_the_limit() {
        let cut = super::within_limit("é".repeat(10_000));
        assert_eq!(cut.chars().count(), super::MAX_MESSAGE_CHARS);
        assert_eq!(super::within_limit("short".into()), "short");
        assert_eq!(super::within_limit("a".repeat(512)).len(), 512);
    }
}
