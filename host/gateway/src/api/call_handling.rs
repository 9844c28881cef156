//! webrtc-call-handling: media sessions (calls).

use camara_plugin_host::authorization::{Api, HttpMethod};
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};

use super::{
    Authenticated, CamaraJson, CommonErrors, CorrelatorHeader, GatewayState, OperationContext, PathId, authorize,
    missing_id,
};
use crate::app::Gateway;
use crate::calls;
use crate::error::{ApiError, ErrorInfo};
use crate::model::{MediaSessionCreate, MediaSessionResponse, MediaSessionStatusChange, SdpDescriptor};
use crate::store::{MediaSession, SessionStatus};
use crate::validate;

const API: Api = Api::WebrtcCallHandling;

/// The statuses a device may ask for with `PUT .../status`: hold and resume its call, or
/// answer (or decline) an incoming one.
const REQUESTABLE: [SessionStatus; 6] = [
    SessionStatus::InProgress,
    SessionStatus::Ringing,
    SessionStatus::Connected,
    SessionStatus::Declined,
    SessionStatus::Hold,
    SessionStatus::Resume,
];

pub fn routes() -> Router<Arc<Gateway>> {
    let missing = missing_id("mediaSessionId");
    Router::new()
        .route("/sessions", post(create).get(missing.clone()).delete(missing.clone()))
        .route("/sessions/", get(missing.clone()).delete(missing.clone()))
        .route("/sessions//status", axum::routing::put(missing))
        .route("/sessions/{mediaSessionId}", get(read).delete(remove))
        .route("/sessions/{mediaSessionId}/status", axum::routing::put(update_status))
}

fn response(s: &MediaSession) -> MediaSessionResponse {
    MediaSessionResponse {
        media_session_id: s.id.clone(),
        originator_address: s.originator_address.clone(),
        originator_name: s.originator_name.clone(),
        receiver_address: s.receiver_address.clone(),
        receiver_name: s.receiver_name.clone(),
        status: s.status,
        offer: SdpDescriptor { sdp: s.offer_sdp.clone() },
        answer: s.answer_sdp.clone().map(|sdp| SdpDescriptor { sdp }),
        call_type: None,
        location_details: None,
    }
}

fn check(body: &MediaSessionCreate) -> Result<(), ApiError> {
    validate::address("originatorAddress", &body.originator_address)?;
    validate::address("receiverAddress", &body.receiver_address)?;
    if body.receiver_address == "sip:anonymous@anonymous.invalid" {
        return Err(ApiError::invalid_argument("receiverAddress cannot be the anonymous address"));
    }
    for (field, name) in [("originatorName", &body.originator_name), ("receiverName", &body.receiver_name)] {
        if let Some(name) = name {
            validate::max_len(field, name, 256)?;
        }
    }
    validate::max_len("offer.sdp", &body.offer.sdp, 65536)?;
    if !body.offer.sdp.starts_with("v=0") {
        return Err(ApiError::invalid_argument("offer.sdp is not an SDP session description"));
    }
    if let Some(location) = &body.location_details {
        validate::location_details("locationDetails", location)?;
    }
    if body.status.is_some() || body.answer.is_some() {
        return Err(ApiError::invalid_argument("status and answer must not be sent when creating a session"));
    }
    Ok(())
}

#[utoipa::path(
    post,
    path = "/webrtc-call-handling/v0.3/sessions",
    tag = "webrtc-call-handling",
    operation_id = "createSession",
    params(CorrelatorHeader, ("registrationId" = String, Header, max_length = 256, description = "The device registration")),
    request_body = MediaSessionCreate,
    responses(
        (status = 201, description = "Created; the call is on its way", body = MediaSessionResponse),
        CommonErrors,
        (status = 415, description = "The body is not JSON", body = ErrorInfo),
        (status = 503, description = "The network side cannot take the call now", body = ErrorInfo),
    ),
    security(("openId" = ["webrtc-call-handling:sessions:create"]))
)]
pub(super) async fn create(
    gw: GatewayState,
    auth: Authenticated,
    headers: HeaderMap,
    CamaraJson(body): CamaraJson<MediaSessionCreate>,
) -> Result<impl IntoResponse, ApiError> {
    let registration_id = match headers.get("registrationId") {
        None => return Err(ApiError::invalid_argument("The registrationId header is required")),
        Some(v) => {
            v.to_str().map_err(|_| ApiError::invalid_argument("The registrationId header is not text"))?.to_string()
        }
    };
    validate::id("registrationId", &registration_id)?;
    check(&body)?;
    let mut op = OperationContext::new(API, "createSession", HttpMethod::Post);
    op.fields.registration_id = Some(registration_id.clone());
    op.fields.addresses = vec![body.originator_address.clone(), body.receiver_address.clone()];
    let caller = authorize(&gw, auth, op).await?;
    if gw.drain.is_draining() {
        // Another node (or this one, restarted) takes the call.
        let mut refused = ApiError::unavailable("The gateway is shutting down; retry the session on another node");
        refused.retry_after = Some(u32::try_from(gw.config.shutdown.drain_seconds).unwrap_or(u32::MAX).max(1));
        return Err(refused);
    }
    let registration = gw
        .store
        .registration(&registration_id, &caller.phone_number)
        .await?
        // 400, not 404: the identifier is an argument of the request, not its resource, and
        // the CAMARA file gives createSession no 404.
        .ok_or_else(|| ApiError::invalid_argument("registrationId does not name a registration of this subscriber"))?;
    let (call_type, location_details) = (body.call_type, body.location_details.clone());
    let session = calls::place_call(&gw, &caller.phone_number, &registration, body).await?;
    let mut body = response(&session);
    body.call_type = call_type;
    body.location_details = location_details;
    Ok((StatusCode::CREATED, Json(body)))
}

#[utoipa::path(
    get,
    path = "/webrtc-call-handling/v0.3/sessions/{mediaSessionId}",
    tag = "webrtc-call-handling",
    operation_id = "getSessionDetailsById",
    params(CorrelatorHeader, ("mediaSessionId" = String, Path, max_length = 256)),
    responses(
        (status = 200, description = "The session", body = MediaSessionResponse),
        CommonErrors,
        (status = 404, description = "Not found", body = ErrorInfo),
    ),
    security(("openId" = ["webrtc-call-handling:sessions:read"]))
)]
pub(super) async fn read(
    gw: GatewayState,
    auth: Authenticated,
    PathId(id): PathId,
) -> Result<impl IntoResponse, ApiError> {
    let mut op = OperationContext::new(API, "getSessionDetailsById", HttpMethod::Get);
    op.path_ids.push(("mediaSessionId", &id));
    let caller = authorize(&gw, auth, op).await?;
    let session =
        gw.store.session(&id, &caller.phone_number).await?.ok_or_else(|| ApiError::not_found("Session not found"))?;
    Ok(Json(response(&session)))
}

#[utoipa::path(
    delete,
    path = "/webrtc-call-handling/v0.3/sessions/{mediaSessionId}",
    tag = "webrtc-call-handling",
    operation_id = "deleteSessionById",
    params(CorrelatorHeader, ("mediaSessionId" = String, Path, max_length = 256)),
    responses(
        (status = 204, description = "Ended (BYE or CANCEL)"),
        CommonErrors,
        (status = 404, description = "Not found", body = ErrorInfo),
    ),
    security(("openId" = ["webrtc-call-handling:sessions:delete"]))
)]
pub(super) async fn remove(
    gw: GatewayState,
    auth: Authenticated,
    PathId(id): PathId,
) -> Result<impl IntoResponse, ApiError> {
    let mut op = OperationContext::new(API, "deleteSessionById", HttpMethod::Delete);
    op.path_ids.push(("mediaSessionId", &id));
    let caller = authorize(&gw, auth, op).await?;
    let session =
        gw.store.session(&id, &caller.phone_number).await?.ok_or_else(|| ApiError::not_found("Session not found"))?;
    calls::end_call(&gw, &session).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    put,
    path = "/webrtc-call-handling/v0.3/sessions/{mediaSessionId}/status",
    tag = "webrtc-call-handling",
    operation_id = "updateSessionStatus",
    params(CorrelatorHeader, ("mediaSessionId" = String, Path, max_length = 256)),
    request_body = MediaSessionStatusChange,
    responses(
        (status = 200, description = "The session after the change", body = MediaSessionResponse),
        CommonErrors,
        (status = 404, description = "Not found", body = ErrorInfo),
        (status = 409, description = "INCOMPATIBLE_STATE: the session cannot take this status now", body = ErrorInfo),
        (status = 415, description = "The body is not JSON", body = ErrorInfo),
    ),
    security(("openId" = ["webrtc-call-handling:sessions:write"]))
)]
pub(super) async fn update_status(
    gw: GatewayState,
    auth: Authenticated,
    PathId(id): PathId,
    CamaraJson(body): CamaraJson<MediaSessionStatusChange>,
) -> Result<impl IntoResponse, ApiError> {
    let Some(status) = SessionStatus::parse(&body.status) else {
        return Err(ApiError::invalid_argument(format!(
            "status {} is not a SessionStatus",
            validate::quoted(&body.status)
        )));
    };
    if !REQUESTABLE.contains(&status) {
        let names: Vec<_> = REQUESTABLE.iter().map(|s| s.as_str()).collect();
        return Err(ApiError::invalid_argument(format!(
            "status {:?} cannot be requested; {} can",
            body.status,
            names.join(", ")
        )));
    }
    for (field, sdp) in [("offer.sdp", &body.offer), ("answer.sdp", &body.answer)] {
        if let Some(sdp) = sdp {
            validate::max_len(field, &sdp.sdp, 65536)?;
        }
    }
    if let Some(location) = &body.location_details {
        validate::location_details("locationDetails", location)?;
    }
    let mut op = OperationContext::new(API, "updateSessionStatus", HttpMethod::Put);
    op.path_ids.push(("mediaSessionId", &id));
    let caller = authorize(&gw, auth, op).await?;
    let session =
        gw.store.session(&id, &caller.phone_number).await?.ok_or_else(|| ApiError::not_found("Session not found"))?;
    let session = match status {
        SessionStatus::Hold | SessionStatus::Resume => {
            calls::hold_or_resume(&gw, &session, status == SessionStatus::Hold).await?
        }
        status if session.direction == crate::store::Direction::Incoming => {
            crate::incoming::answer_incoming(&gw, &session, status, body.answer.map(|a| a.sdp)).await?
        }
        status => {
            return Err(ApiError::conflict(
                "INCOMPATIBLE_STATE",
                format!("An outgoing session is answered by the network; {status} cannot be requested"),
            ));
        }
    };
    Ok(Json(response(&session)))
}
