//! Every way a relay request fails, and the HTTP answer each one gets.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// A relay failure. As an HTTP answer it is a CAMARA-style `{status, code, message}` body.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("invalid relay configuration: {0}")]
    Config(String),
    /// No usable `Authorization: Bearer` credential (`401`).
    #[error("{0}")]
    Unauthenticated(String),
    /// No such channel, or not the caller's (`404`).
    #[error("channel not found")]
    ChannelNotFound,
    /// The channel, and so its sink credential, has expired (`401` on the sink).
    #[error("the sink credential has expired")]
    CredentialExpired,
    /// The sink was sent something that is not a structured JSON CloudEvent (`400`).
    #[error("{0}")]
    InvalidEvent(String),
    /// Too many deliveries are already waiting on the channel (`429`, `Retry-After`).
    #[error("too many deliveries are waiting for this channel")]
    QueueFull { retry_after_seconds: u64 },
    /// The subscriber already has the most channels allowed (`429`).
    #[error("the subscriber already has {0} channels")]
    TooManyChannels(usize),
    /// No device was connected, nor connected in time (`503`, `Retry-After`: the gateway
    /// retries).
    #[error("no device is connected to this channel")]
    DeviceUnavailable { retry_after_seconds: u64 },
    /// The device did not acknowledge in time (`504`: the gateway retries).
    #[error("the device did not acknowledge the event within {0:?}")]
    AckTimeout(Duration),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl RelayError {
    pub fn status(&self) -> StatusCode {
        match self {
            RelayError::Config(_) | RelayError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
            RelayError::Unauthenticated(_) | RelayError::CredentialExpired => StatusCode::UNAUTHORIZED,
            RelayError::ChannelNotFound => StatusCode::NOT_FOUND,
            RelayError::InvalidEvent(_) => StatusCode::BAD_REQUEST,
            RelayError::QueueFull { .. } | RelayError::TooManyChannels(_) => StatusCode::TOO_MANY_REQUESTS,
            RelayError::DeviceUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            RelayError::AckTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The CAMARA error code of the answer.
    pub fn code(&self) -> &'static str {
        match self {
            RelayError::Config(_) | RelayError::Io(_) => "INTERNAL",
            RelayError::Unauthenticated(_) | RelayError::CredentialExpired => "UNAUTHENTICATED",
            RelayError::ChannelNotFound => "NOT_FOUND",
            RelayError::InvalidEvent(_) => "INVALID_ARGUMENT",
            RelayError::QueueFull { .. } => "TOO_MANY_REQUESTS",
            RelayError::TooManyChannels(_) => "QUOTA_EXCEEDED",
            RelayError::DeviceUnavailable { .. } => "UNAVAILABLE",
            RelayError::AckTimeout(_) => "TIMEOUT",
        }
    }
}

impl IntoResponse for RelayError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::json!({"status": status.as_u16(), "code": self.code(), "message": self.to_string()});
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        match &self {
            RelayError::QueueFull { retry_after_seconds } | RelayError::DeviceUnavailable { retry_after_seconds } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_seconds));
            }
            RelayError::Unauthenticated(_) | RelayError::CredentialExpired => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}
