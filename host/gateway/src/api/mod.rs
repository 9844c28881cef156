//! The HTTP API: the three CAMARA WebRTC APIs under their configured base paths.
//!
//! Every response, errors included, carries the request's `x-correlator`; every error is a
//! CAMARA `ErrorInfo` body.

mod call_handling;
mod client_slots;
mod events;
pub mod openapi;
mod registration;

pub use client_slots::{ClientSlot, ClientSlots};

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequest, Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use camara_plugin_host::authorization::{
    Api, AuthorizationRequest, Decision, HttpMethod, Operation, Pair, RequestFields, TokenClaims,
};
use camara_plugin_host::mapping::CamaraError;
use serde::de::DeserializeOwned;

use crate::app::Gateway;
use crate::error::{ApiError, ErrorInfo};
use crate::validate;

pub fn router(gw: Arc<Gateway>) -> Router {
    let api = &gw.config.api;
    Router::new()
        .nest(&api.registration_base, registration::routes())
        .nest(
            &api.call_handling_base,
            call_handling::routes()
                .route_layer(middleware::from_fn_with_state(gw.clone(), crate::cluster::forward::calls_held_elsewhere)),
        )
        .nest(&api.events_base, events::routes())
        .merge(crate::health::routes())
        .route(openapi::PATH, get(openapi::serve))
        .route(crate::metrics::PATH, get(crate::metrics::serve))
        .fallback(|| async { ApiError::not_found("The requested resource does not exist") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                "The method is not allowed on this resource",
            )
        })
        .layer(middleware::from_fn(bearer_challenge))
        .layer(middleware::from_fn(correlator))
        .route_layer(middleware::from_fn(crate::metrics::track_http))
        .with_state(gw)
}

/// Validates `x-correlator` and echoes it on the response (the admin API's too).
pub(crate) async fn correlator(request: Request, next: Next) -> Response {
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

/// `Json` whose rejections are CAMARA errors: no body (an empty one, whatever its declared
/// type) is `400`, a body that is not `application/json` (or `+json`) is `415`, one that does
/// not parse into `T` is `400`.
pub struct CamaraJson<T>(pub T);

/// The body of a request, read once: whether it was declared JSON, and its bytes.
async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<(Option<bool>, axum::body::Bytes), ApiError> {
    use axum::http::header::CONTENT_TYPE;
    let declared = req.headers().get(CONTENT_TYPE).map(|v| {
        let essence = v.to_str().unwrap_or_default().split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
    });
    let bytes = axum::body::Bytes::from_request(req, state).await.map_err(|e| {
        ApiError::new(
            e.status(),
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE { "PAYLOAD_TOO_LARGE" } else { "INVALID_ARGUMENT" },
            e.body_text(),
        )
    })?;
    Ok((declared, bytes))
}

fn parse_body<T: DeserializeOwned>(declared: Option<bool>, bytes: &[u8]) -> Result<T, ApiError> {
    match declared {
        _ if bytes.is_empty() => Err(ApiError::invalid_argument("A JSON request body is required")),
        None | Some(false) => Err(ApiError::unsupported_media_type()),
        Some(true) => {
            let Json(value) = Json::<serde_json::Value>::from_bytes(bytes)
                .map_err(|e| ApiError::invalid_argument(format!("Invalid request body: {}", e.body_text())))?;
            if let Some(member) = null_member(&value, "") {
                return Err(ApiError::invalid_argument(format!("{member} must not be null")));
            }
            serde_json::from_value(value).map_err(|e| ApiError::invalid_argument(format!("Invalid request body: {e}")))
        }
    }
}

/// The first member of `value` that is `null`, as a path. No CAMARA schema is nullable, while
/// serde reads `null` as an absent optional member: refused here, once for every body.
fn null_member(value: &serde_json::Value, path: &str) -> Option<String> {
    match value {
        serde_json::Value::Object(members) => members.iter().find_map(|(name, member)| {
            let path = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
            if member.is_null() { Some(path) } else { null_member(member, &path) }
        }),
        serde_json::Value::Array(items) => {
            items.iter().enumerate().find_map(|(i, item)| null_member(item, &format!("{path}[{i}]")))
        }
        _ => None,
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for CamaraJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let (declared, bytes) = read_body(req, state).await?;
        parse_body(declared, &bytes).map(CamaraJson)
    }
}

/// For an operation whose request body is optional: no body is `None`, with or without a
/// `Content-Type` (clients send `application/json` on every request).
impl<S: Send + Sync, T: DeserializeOwned> OptionalFromRequest<S> for CamaraJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, ApiError> {
        let (declared, bytes) = read_body(req, state).await?;
        if bytes.is_empty() {
            return Ok(None);
        }
        parse_body(declared, &bytes).map(|v| Some(CamaraJson(v)))
    }
}

/// An identifier from the path (`registrationId`, `mediaSessionId`, `subscriptionId`): at most
/// 256 characters, as the schemas say; a malformed path is a CAMARA error too.
pub struct PathId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(id) = axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::invalid_argument(format!("Invalid path: {}", e.body_text())))?;
        validate::id("The identifier in the path", &id)?;
        Ok(PathId(id))
    }
}

/// The handler of a path whose resource identifier is missing or empty (`DELETE .../sessions`,
/// `GET .../sessions/`): `400 INVALID_ARGUMENT`, as CAMARA's own tests expect (not 404 or 405),
/// once the token is verified like on every operation.
pub fn missing_id(
    name: &'static str,
) -> impl Fn(Authenticated) -> std::future::Ready<ApiError> + Clone + Send + Sync + 'static {
    move |_: Authenticated| {
        std::future::ready(ApiError::invalid_argument(format!("Expected property is missing: {name}")))
    }
}

/// The query string as name-value pairs (a malformed one is a CAMARA error, not axum's text).
pub struct QueryPairs(pub Vec<(String, String)>);

impl QueryPairs {
    /// The only value of `name`: `None` when absent, an error when given twice.
    pub fn single(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let mut values = self.0.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str());
        let first = values.next();
        if values.next().is_some() {
            return Err(ApiError::invalid_argument(format!("The {name} query parameter is given more than once")));
        }
        Ok(first)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        Ok(QueryPairs(url::form_urlencoded::parse(query.as_bytes()).into_owned().collect()))
    }
}

/// The `x-correlator` request header of every operation, for the OpenAPI document.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct CorrelatorHeader {
    /// Correlation id for the different services; echoed on the response.
    #[param(rename = "x-correlator", pattern = r"^[a-zA-Z0-9-_:;.\/<>{}]{0,256}$", max_length = 256)]
    x_correlator: Option<String>,
}

/// The error answers every operation may give, for the OpenAPI document.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum CommonErrors {
    /// Invalid argument (`INVALID_ARGUMENT`, `OUT_OF_RANGE`, or a code of the operation)
    #[response(status = 400)]
    BadRequest(ErrorInfo),
    /// Unauthenticated: missing, invalid or expired access token
    #[response(status = 401)]
    Unauthenticated(ErrorInfo),
    /// Permission denied, or a token inconsistent with the request
    #[response(status = 403)]
    Forbidden(ErrorInfo),
    /// Too many requests from this client
    #[response(status = 429)]
    TooManyRequests(ErrorInfo),
}

/// The caller, once the token is verified and the policy allowed the operation.
pub struct Caller {
    pub phone_number: String,
    /// Held until the request is answered.
    _slot: ClientSlot,
}

/// What an operation tells the policy.
pub struct OperationContext<'a> {
    pub api: Api,
    pub operation_id: &'static str,
    pub method: HttpMethod,
    pub path_ids: Vec<(&'static str, &'a str)>,
    pub fields: RequestFields,
}

impl OperationContext<'_> {
    pub fn new(api: Api, operation_id: &'static str, method: HttpMethod) -> Self {
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

/// A request whose bearer token is verified and within its client's rate limit. An operation
/// takes it before its body, so that a request without a valid token is `401` whatever it
/// carries, and nothing of it is read or checked first.
pub struct Authenticated {
    claims: TokenClaims,
    slot: ClientSlot,
}

impl FromRequestParts<Arc<Gateway>> for Authenticated {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, gw: &Arc<Gateway>) -> Result<Self, Response> {
        authenticate(gw, &parts.headers).await
    }
}

/// The token of an `Authorization: Bearer <token>` header; the scheme is case-insensitive
/// (RFC 7235 §2.1).
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION).and_then(|v: &HeaderValue| v.to_str().ok())?;
    let (scheme, token) = value.trim_start().split_once(' ')?;
    Some(token.trim()).filter(|t| scheme.eq_ignore_ascii_case("bearer") && !t.is_empty())
}

/// The challenge of a `401` that refused a token (RFC 6750 §3.1); a `401` without a token gets
/// the bare challenge from [`bearer_challenge`].
const INVALID_TOKEN_CHALLENGE: &str = "Bearer error=\"invalid_token\"";

/// Every `401` names the scheme it wants (RFC 6750 §3: `WWW-Authenticate: Bearer`).
async fn bearer_challenge(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    if response.status() == StatusCode::UNAUTHORIZED {
        response.headers_mut().entry(WWW_AUTHENTICATE).or_insert(HeaderValue::from_static("Bearer"));
    }
    response
}

/// Verifies the bearer token and applies the client's rate limit.
async fn authenticate(gw: &Gateway, headers: &HeaderMap) -> Result<Authenticated, Response> {
    let token = bearer_token(headers).ok_or_else(|| {
        ApiError::unauthenticated("Request not authenticated due to missing, invalid, or expired credentials.")
            .into_response()
    })?;
    let verified = gw.verifier.verify(token).await.map_err(|e| {
        match e {
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
                let mut response = ApiError::unauthenticated(format!("Request not authenticated: {e}")).into_response();
                response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static(INVALID_TOKEN_CHALLENGE));
                return response;
            }
        }
        .into_response()
    })?;
    let claims = TokenClaims {
        issuer: verified.issuer,
        subject: verified.subject,
        audience: verified.audience,
        scopes: verified.scopes,
        expires_at: verified.expires_at,
        issued_at: verified.issued_at,
        client_id: verified.client_id,
        all_claims: verified.claims,
    };
    let client = claims.client_id.clone().or_else(|| claims.subject.clone()).unwrap_or_default();
    let key = format!("{}|{client}", claims.issuer);
    let too_many = |message: &str| {
        let mut refused = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "TOO_MANY_REQUESTS", message);
        refused.retry_after = Some(1);
        refused.into_response()
    };
    if gw.rate_limiter.check_key(&key).is_err() {
        return Err(too_many("Rate limit reached for this client; retry later"));
    }
    let Some(slot) = gw.client_slots.take(&key) else {
        return Err(too_many("Too many requests of this client in progress; retry once some are answered"));
    };
    Ok(Authenticated { claims, slot })
}

/// Asks the authorization plugin whether the authenticated caller may do `op`.
pub async fn authorize(gw: &Gateway, auth: Authenticated, op: OperationContext<'_>) -> Result<Caller, ApiError> {
    let request = AuthorizationRequest {
        operation: Operation {
            api: op.api,
            operation_id: op.operation_id.into(),
            method: op.method,
            path_ids: op.path_ids.iter().map(|(name, value)| Pair::new(*name, *value)).collect(),
        },
        claims: auth.claims,
        request: op.fields,
    };
    match gw.plugins.get().authorization.authorize(&request).await? {
        Decision::Allow(subscriber) => match subscriber.phone_number {
            Some(phone_number) => Ok(Caller { phone_number, _slot: auth.slot }),
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
