//! webrtc-call-handling: media sessions (calls).

use std::sync::Arc;

use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};

use super::{CamaraJson, GatewayState, OperationContext, authorize};
use crate::app::Gateway;
use crate::calls;
use crate::error::{ApiError, ErrorInfo};
use crate::model::{MediaSessionCreate, MediaSessionResponse, MediaSessionStatusChange, SdpDescriptor};
use crate::store::MediaSession;
use crate::validate;

const API: &str = "webrtc-call-handling";

pub fn routes() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/sessions", post(create))
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
        status: s.status.clone(),
        offer: SdpDescriptor { sdp: s.offer_sdp.clone() },
        answer: s.answer_sdp.clone().map(|sdp| SdpDescriptor { sdp }),
        call_type: None,
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
    if body.status.is_some() || body.answer.is_some() {
        return Err(ApiError::invalid_argument("status and answer must not be sent when creating a session"));
    }
    Ok(())
}

#[utoipa::path(post, path = "/webrtc-call-handling/v0.3/sessions", tag = "webrtc-call-handling", operation_id = "createSession", params(("x-correlator" = Option<String>, Header, description = "Correlation id, echoed on the response"), ("registrationId" = String, Header, description = "The device registration")), request_body = MediaSessionCreate, responses((status = 201, description = "Created; the call is on its way", body = MediaSessionResponse), (status = 400, description = "Invalid argument", body = ErrorInfo), (status = 401, description = "Unauthenticated", body = ErrorInfo), (status = 403, description = "Permission denied", body = ErrorInfo), (status = 404, description = "Unknown registration", body = ErrorInfo)), security(("openId" = ["webrtc-call-handling:sessions:create"])))]
pub(super) async fn create(
    gw: GatewayState,
    headers: HeaderMap,
    CamaraJson(body): CamaraJson<MediaSessionCreate>,
) -> Result<impl IntoResponse, ApiError> {
    let registration_id = headers
        .get("registrationId")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 256)
        .map(str::to_string)
        .ok_or_else(|| ApiError::invalid_argument("The registrationId header is required"))?;
    check(&body)?;
    let mut op = OperationContext::new(API, "createSession", "POST");
    op.fields.registration_id = Some(registration_id.clone());
    op.fields.addresses = vec![body.originator_address.clone(), body.receiver_address.clone()];
    let caller = authorize(&gw, &headers, op).await?;
    let registration = gw
        .store
        .registration(&registration_id, &caller.phone_number)?
        .ok_or_else(|| ApiError::not_found("registrationId does not name a registration of this subscriber"))?;
    let call_type = body.call_type;
    let session = calls::place_call(&gw, &caller.phone_number, &registration, body).await?;
    let mut body = response(&session);
    body.call_type = call_type;
    Ok((StatusCode::CREATED, Json(body)))
}

#[utoipa::path(get, path = "/webrtc-call-handling/v0.3/sessions/{mediaSessionId}", tag = "webrtc-call-handling", operation_id = "getSessionDetailsById", params(("x-correlator" = Option<String>, Header, description = "Correlation id, echoed on the response"), ("mediaSessionId" = String, Path)), responses((status = 200, description = "The session", body = MediaSessionResponse), (status = 400, description = "Invalid argument", body = ErrorInfo), (status = 401, description = "Unauthenticated", body = ErrorInfo), (status = 403, description = "Permission denied", body = ErrorInfo), (status = 404, description = "Not found", body = ErrorInfo)), security(("openId" = ["webrtc-call-handling:sessions:read"])))]
pub(super) async fn read(
    gw: GatewayState,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let mut op = OperationContext::new(API, "getSessionDetailsById", "GET");
    op.path_ids.push(("mediaSessionId", &id));
    let caller = authorize(&gw, &headers, op).await?;
    let session =
        gw.store.session(&id, &caller.phone_number)?.ok_or_else(|| ApiError::not_found("Session not found"))?;
    Ok(Json(response(&session)))
}

#[utoipa::path(delete, path = "/webrtc-call-handling/v0.3/sessions/{mediaSessionId}", tag = "webrtc-call-handling", operation_id = "deleteSessionById", params(("x-correlator" = Option<String>, Header, description = "Correlation id, echoed on the response"), ("mediaSessionId" = String, Path)), responses((status = 204, description = "Ended (BYE or CANCEL)"), (status = 400, description = "Invalid argument", body = ErrorInfo), (status = 401, description = "Unauthenticated", body = ErrorInfo), (status = 403, description = "Permission denied", body = ErrorInfo), (status = 404, description = "Not found", body = ErrorInfo)), security(("openId" = ["webrtc-call-handling:sessions:delete"])))]
pub(super) async fn remove(
    gw: GatewayState,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let mut op = OperationContext::new(API, "deleteSessionById", "DELETE");
    op.path_ids.push(("mediaSessionId", &id));
    let caller = authorize(&gw, &headers, op).await?;
    let session =
        gw.store.session(&id, &caller.phone_number)?.ok_or_else(|| ApiError::not_found("Session not found"))?;
    calls::end_call(&gw, &session).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(put, path = "/webrtc-call-handling/v0.3/sessions/{mediaSessionId}/status", tag = "webrtc-call-handling", operation_id = "updateSessionStatus", params(("x-correlator" = Option<String>, Header, description = "Correlation id, echoed on the response"), ("mediaSessionId" = String, Path)), request_body = MediaSessionStatusChange, responses((status = 200, description = "The session after the change", body = MediaSessionResponse), (status = 400, description = "Invalid argument", body = ErrorInfo), (status = 401, description = "Unauthenticated", body = ErrorInfo), (status = 403, description = "Permission denied", body = ErrorInfo), (status = 404, description = "Not found", body = ErrorInfo)), security(("openId" = ["webrtc-call-handling:sessions:write"])))]
pub(super) async fn update_status(
    gw: GatewayState,
    headers: HeaderMap,
    Path(id): Path<String>,
    CamaraJson(body): CamaraJson<MediaSessionStatusChange>,
) -> Result<impl IntoResponse, ApiError> {
    if !matches!(body.status.as_str(), "Hold" | "Resume" | "InProgress" | "Ringing" | "Connected" | "Declined") {
        return Err(ApiError::invalid_argument(format!(
            "status {:?} cannot be requested; InProgress, Ringing, Connected, Declined, Hold and Resume can",
            body.status
        )));
    }
    if let Some(answer) = &body.answer {
        validate::max_len("answer.sdp", &answer.sdp, 65536)?;
    }
    let mut op = OperationContext::new(API, "updateSessionStatus", "PUT");
    op.path_ids.push(("mediaSessionId", &id));
    let caller = authorize(&gw, &headers, op).await?;
    let session =
        gw.store.session(&id, &caller.phone_number)?.ok_or_else(|| ApiError::not_found("Session not found"))?;
    let session = match body.status.as_str() {
        "Hold" | "Resume" => calls::hold_or_resume(&gw, &session, body.status == "Hold").await?,
        status if session.direction == crate::store::Direction::Incoming => {
            calls::answer_incoming(&gw, &session, status, body.answer.map(|a| a.sdp)).await?
        }
        status => {
            return Err(ApiError::conflict(
                "CONFLICT",
                format!("An outgoing session is answered by the network; {status} cannot be requested"),
            ));
        }
    };
    Ok(Json(response(&session)))
}
