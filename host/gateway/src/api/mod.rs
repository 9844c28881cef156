//! The HTTP API: the three CAMARA WebRTC APIs under their configured base paths.
//!
//! Every response, errors included, carries the request's `x-correlator`; every error is a
//! CAMARA `ErrorInfo` body.

mod call_handling;
mod events;
pub mod openapi;
mod registration;

use std::sync::Arc;

use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use camara_plugin_host::authorization::{AuthorizationRequest, Decision, Operation, RequestFields, TokenClaims};
use camara_plugin_host::mapping::CamaraError;
use serde::de::DeserializeOwned;

use crate::app::Gateway;
use crate::error::ApiError;
use crate::validate;

pub fn router(gw: Arc<Gateway>) -> Router {
    let api = &gw.config.api;
    Router::new()
        .nest(&api.registration_base, registration::routes())
        .nest(&api.call_handling_base, call_handling::routes())
        .nest(&api.events_base, events::routes())
        .route("/health", get(|| async { Json(serde_json::json!({"status": "ok"})) }))
        .route(openapi::PATH, get(openapi::serve))
        .fallback(|| async { ApiError::not_found("The requested resource does not exist") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                "The method is not allowed on this resource",
            )
        })
        .layer(middleware::from_fn(correlator))
        .with_state(gw)
}

/// Validates `x-correlator` and echoes it on the response.
async fn correlator(request: Request, next: Next) -> Response {
    let value = request.headers().get("x-correlator").cloned();
    if let Some(v) = &value
        && !v.to_str().is_ok_and(validate::correlator_is_valid)
    {
        return ApiError::invalid_argument("x-correlator does not match ^[a-zA-Z0-9-_:;.\\/<>{}]{0,256}$")
            .into_response();
    }
    let mut response = next.run(request).await;
    if let Some(v) = value {
        response.headers_mut().insert("x-correlator", v);
    }
    response
}

/// `Json` whose rejections are CAMARA errors.
pub struct CamaraJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for CamaraJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        use axum::extract::rejection::JsonRejection;
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(CamaraJson(v)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                "The request body must be application/json",
            )),
            Err(e) => Err(ApiError::invalid_argument(format!("Invalid request body: {}", e.body_text()))),
        }
    }
}

/// The caller, once the token is verified and the policy allowed the operation.
pub struct Caller {
    pub phone_number: String,
}

/// What an operation tells the policy.
pub struct OperationContext<'a> {
    pub api: &'static str,
    pub operation_id: &'static str,
    pub method: &'static str,
    pub path_ids: Vec<(&'static str, &'a str)>,
    pub fields: RequestFields,
}

impl OperationContext<'_> {
    pub fn new(api: &'static str, operation_id: &'static str, method: &'static str) -> Self {
        OperationContext {
            api,
            operation_id,
            method,
            path_ids: Vec::new(),
            fields: RequestFields {
                device_id: None,
                registration_id: None,
                addresses: Vec::new(),
                event_types: Vec::new(),
            },
        }
    }
}

/// Verifies the bearer token and asks the authorization plugin.
pub async fn authorize(gw: &Gateway, headers: &HeaderMap, op: OperationContext<'_>) -> Result<Caller, ApiError> {
    let token = headers
        .get("authorization")
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::unauthenticated("Request not authenticated due to missing, invalid, or expired credentials.")
        })?;
    let verified = gw.verifier.verify(token).await.map_err(|e| match e {
        camara_auth::AuthError::KeySource(why) => {
            tracing::warn!("tokens cannot be verified: {why}");
            ApiError::unavailable("The access token cannot be verified now; retry later")
        }
        camara_auth::AuthError::Config(why) => {
            tracing::error!("token verification misconfigured: {why}");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "Token verification is misconfigured")
        }
        e => {
            tracing::debug!("token refused: {e}");
            ApiError::unauthenticated(format!("Request not authenticated: {e}"))
        }
    })?;
    let claims = TokenClaims {
        issuer: verified.issuer,
        subject: verified.subject,
        audience: verified.audience,
        scopes: verified.scopes,
        expires_at: verified.expires_at,
        issued_at: verified.issued_at,
        client_id: verified.client_id,
        all_claims_json: serde_json::Value::Object(verified.claims).to_string(),
    };
    let client = claims.client_id.clone().or_else(|| claims.subject.clone()).unwrap_or_default();
    if gw.rate_limiter.check_key(&format!("{}|{client}", claims.issuer)).is_err() {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TOO_MANY_REQUESTS",
            "Rate limit reached for this client; retry later",
        ));
    }
    let request = AuthorizationRequest {
        operation: Operation {
            api: op.api.into(),
            operation_id: op.operation_id.into(),
            method: op.method.into(),
            path_ids: op
                .path_ids
                .iter()
                .map(|(name, value)| camara_plugin_host::authorization::camara::gateway::types::Pair {
                    name: name.to_string(),
                    value: value.to_string(),
                })
                .collect(),
        },
        claims,
        request: op.fields,
    };
    match gw.plugins.authorization.authorize(&request).await? {
        Decision::Allow(subscriber) => match subscriber.phone_number {
            Some(phone_number) => Ok(Caller { phone_number }),
            None => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "INVALID_TOKEN_CONTEXT",
                "The access token does not identify a subscriber phone number",
            )),
        },
        Decision::Deny(CamaraError { status, code, message }) => {
            Err(ApiError::from_plugin_decision(status, code, message))
        }
    }
}

pub type GatewayState = State<Arc<Gateway>>;
