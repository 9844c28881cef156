//! webrtc-registration: device registrations.

use camara_plugin_host::authorization::{Api, HttpMethod};
use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use camara_plugin_host::mapping::RegistrationRequest as MappingRequest;
use chrono::{Duration, Utc};

use super::{
    Authenticated, CamaraJson, CommonErrors, CorrelatorHeader, GatewayState, OperationContext, PathId, QueryPairs,
    authorize, missing_id,
};
use crate::app::Gateway;
use crate::config::RegistrationPolicy;
use crate::error::{ApiError, ErrorInfo};
use crate::model::{RegistrationInfo, RegistrationRequest, RegistrationResponse, RegistrationUpdate};
use crate::store::Registration;
use crate::validate;

const API: Api = Api::WebrtcRegistration;

pub fn routes() -> Router<Arc<Gateway>> {
    let missing = missing_id("registrationId");
    Router::new()
        .route("/sessions", get(list).post(create).put(missing.clone()).delete(missing.clone()))
        .route("/sessions/", get(missing.clone()).put(missing.clone()).delete(missing))
        .route("/sessions/{registrationId}", get(read).put(update).delete(remove))
}

fn response(r: &Registration) -> RegistrationResponse {
    RegistrationResponse {
        registration_id: r.id.clone(),
        reg_info: RegistrationInfo { phone_number: r.phone_number.clone(), reg_status: "Registered" },
        expires_at: validate::format_time(r.expires_at),
    }
}

#[utoipa::path(
    post,
    path = "/webrtc-registration/v0.3/sessions",
    tag = "webrtc-registration",
    operation_id = "createRegistration",
    params(CorrelatorHeader),
    request_body = RegistrationRequest,
    responses(
        (status = 201, description = "Registered", body = RegistrationResponse),
        CommonErrors,
        (status = 409, description = "Already registered (ALREADY_EXISTS)", body = ErrorInfo),
        (status = 415, description = "The body is not JSON", body = ErrorInfo),
    ),
    security(("openId" = ["webrtc-registration:sessions:create"]))
)]
pub(super) async fn create(
    gw: GatewayState,
    auth: Authenticated,
    CamaraJson(body): CamaraJson<RegistrationRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let device_id = validate::uuid("deviceId", &body.device_id)?;
    let requested = body
        .registration_expire_time
        .as_deref()
        .map(|t| validate::date_time("registrationExpireTime", t))
        .transpose()?;
    let mut op = OperationContext::new(API, "createRegistration", HttpMethod::Post);
    op.fields.device_id = Some(device_id.clone());
    let caller = authorize(&gw, auth, op).await?;

    let expires_at = expiry(&gw.config.registration, requested)?;
    let registration = Registration {
        id: uuid::Uuid::new_v4().to_string(),
        device_id,
        phone_number: caller.phone_number,
        expires_at,
        created_at: Utc::now(),
        node: Some(gw.store.node().to_owned()),
    };
    let plan = gw
        .plugins
        .get()
        .mapping
        .map_registration(
            &MappingRequest {
                phone_number: registration.phone_number.clone(),
                device_id: registration.device_id.clone(),
                registration_id: registration.id.clone(),
            },
            &gw.network,
        )
        .await?
        .map_err(|e| ApiError::from_plugin_decision(e.status, e.code, e.message))?;
    // Refused before anything is sent to the network.
    if !gw.store.registrations_of(&registration.phone_number, Some(&registration.device_id)).await?.is_empty() {
        return Err(ApiError::conflict(
            "ALREADY_EXISTS",
            "An active registration already exists for this deviceId and phone number",
        ));
    }
    if plan.send_register {
        crate::bindings::bind(&gw, &registration, &plan).await?;
    }
    if let Err(e) = gw.store.insert_registration(registration.clone()).await {
        crate::bindings::unbind(&gw, &registration.id).await;
        return Err(e);
    }
    Ok((StatusCode::CREATED, axum::Json(response(&registration))))
}

/// The operator's lifetime policy applied to a requested expiry: too soon is refused, too late
/// is capped, none gets the default.
fn expiry(
    policy: &RegistrationPolicy,
    requested: Option<chrono::DateTime<Utc>>,
) -> Result<chrono::DateTime<Utc>, ApiError> {
    let now = Utc::now();
    let seconds = |s: u64| Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1000));
    match requested {
        None => Ok(now + seconds(policy.default_ttl_seconds)),
        Some(t) if t < now + seconds(policy.min_ttl_seconds) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "OUT_OF_RANGE",
            format!("registrationExpireTime must be at least {} seconds ahead", policy.min_ttl_seconds),
        )),
        Some(t) => Ok(t.min(now + seconds(policy.max_ttl_seconds))),
    }
}

#[utoipa::path(
    get,
    path = "/webrtc-registration/v0.3/sessions",
    tag = "webrtc-registration",
    operation_id = "getRegistrationsByDeviceId",
    params(CorrelatorHeader, ("deviceId" = String, Query, format = "uuid", max_length = 36, description = "The device")),
    responses(
        (status = 200, description = "The caller's registrations of the device", body = Vec<RegistrationResponse>),
        CommonErrors,
    ),
    security(("openId" = ["webrtc-registration:sessions:read"]))
)]
pub(super) async fn list(
    gw: GatewayState,
    auth: Authenticated,
    query: QueryPairs,
) -> Result<impl IntoResponse, ApiError> {
    let device_id = query
        .single("deviceId")?
        .ok_or_else(|| ApiError::invalid_argument("The deviceId query parameter is required"))?;
    let device_id = validate::uuid("deviceId", device_id)?;
    let mut op = OperationContext::new(API, "getRegistrationsByDeviceId", HttpMethod::Get);
    op.fields.device_id = Some(device_id.clone());
    let caller = authorize(&gw, auth, op).await?;
    let found: Vec<_> =
        gw.store.registrations_of(&caller.phone_number, Some(&device_id)).await?.iter().map(response).collect();
    Ok(axum::Json(found))
}

#[utoipa::path(
    put,
    path = "/webrtc-registration/v0.3/sessions/{registrationId}",
    tag = "webrtc-registration",
    operation_id = "updateRegistrationById",
    params(CorrelatorHeader, ("registrationId" = String, Path, max_length = 256)),
    request_body(content = RegistrationUpdate, description = "Optional (as in the CAMARA file): without a body the operator's default lifetime applies"),
    responses(
        (status = 200, description = "Refreshed", body = RegistrationResponse),
        CommonErrors,
        (status = 404, description = "Not found", body = ErrorInfo),
        (status = 415, description = "The body is not JSON", body = ErrorInfo),
    ),
    security(("openId" = ["webrtc-registration:sessions:write"]))
)]
pub(super) async fn update(
    gw: GatewayState,
    auth: Authenticated,
    PathId(id): PathId,
    body: Option<CamaraJson<RegistrationUpdate>>,
) -> Result<impl IntoResponse, ApiError> {
    let body = body.map(|CamaraJson(b)| b).unwrap_or_default();
    let requested = body
        .registration_expire_time
        .as_deref()
        .map(|t| validate::date_time("registrationExpireTime", t))
        .transpose()?;
    let mut op = OperationContext::new(API, "updateRegistrationById", HttpMethod::Put);
    op.path_ids.push(("registrationId", &id));
    op.fields.registration_id = Some(id.clone());
    let caller = authorize(&gw, auth, op).await?;
    let expires_at = expiry(&gw.config.registration, requested)?;
    let registration = gw
        .store
        .update_registration_expiry(&id, &caller.phone_number, expires_at)
        .await?
        .ok_or_else(|| ApiError::not_found("Registration not found"))?;
    Ok(axum::Json(response(&registration)))
}

#[utoipa::path(
    get,
    path = "/webrtc-registration/v0.3/sessions/{registrationId}",
    tag = "webrtc-registration",
    operation_id = "getRegistrationById",
    params(CorrelatorHeader, ("registrationId" = String, Path, max_length = 256)),
    responses(
        (status = 200, description = "The registration", body = RegistrationResponse),
        CommonErrors,
        (status = 404, description = "Not found", body = ErrorInfo),
    ),
    security(("openId" = ["webrtc-registration:sessions:read"]))
)]
pub(super) async fn read(
    gw: GatewayState,
    auth: Authenticated,
    PathId(id): PathId,
) -> Result<impl IntoResponse, ApiError> {
    let mut op = OperationContext::new(API, "getRegistrationById", HttpMethod::Get);
    op.path_ids.push(("registrationId", &id));
    op.fields.registration_id = Some(id.clone());
    let caller = authorize(&gw, auth, op).await?;
    let registration = gw
        .store
        .registration(&id, &caller.phone_number)
        .await?
        .ok_or_else(|| ApiError::not_found("Registration not found"))?;
    Ok(axum::Json(response(&registration)))
}

#[utoipa::path(
    delete,
    path = "/webrtc-registration/v0.3/sessions/{registrationId}",
    tag = "webrtc-registration",
    operation_id = "deleteRegistrationById",
    params(CorrelatorHeader, ("registrationId" = String, Path, max_length = 256)),
    responses(
        (status = 204, description = "Deleted"),
        CommonErrors,
        (status = 404, description = "Not found", body = ErrorInfo),
    ),
    security(("openId" = ["webrtc-registration:sessions:delete"]))
)]
pub(super) async fn remove(
    gw: GatewayState,
    auth: Authenticated,
    PathId(id): PathId,
) -> Result<impl IntoResponse, ApiError> {
    let mut op = OperationContext::new(API, "deleteRegistrationById", HttpMethod::Delete);
    op.path_ids.push(("registrationId", &id));
    op.fields.registration_id = Some(id.clone());
    let caller = authorize(&gw, auth, op).await?;
    gw.store
        .remove_registration(&id, &caller.phone_number)
        .await?
        .ok_or_else(|| ApiError::not_found("Registration not found"))?;
    crate::bindings::unbind(&gw, &id).await;
    Ok(StatusCode::NO_CONTENT)
}
