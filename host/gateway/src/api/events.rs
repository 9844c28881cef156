//! webrtc-events: notification subscriptions.

use std::sync::Arc;

use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;

use super::{CamaraJson, GatewayState, OperationContext, authorize};
use crate::app::Gateway;
use crate::error::{ApiError, ErrorInfo};
use crate::model::{
    SinkCredential, SubscriptionConfig, SubscriptionDetail, SubscriptionRequest, SubscriptionResponse,
    SubscriptionUpdate,
};
use crate::notify::{GatewayEvent, SUBSCRIBABLE_TYPES};
use crate::store::SinkCredential as StoredCredential;
use crate::store::Subscription;
use crate::validate;

const API: &str = "webrtc-events";

pub fn routes() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/subscriptions", get(list).post(create))
        .route("/subscriptions/{subscriptionId}", get(read).put(update).delete(remove))
}

fn response(s: &Subscription) -> SubscriptionResponse {
    SubscriptionResponse {
        protocol: "HTTP".into(),
        sink: s.sink.clone(),
        types: s.types.clone(),
        config: serde_json::from_value(s.config_json.clone()).unwrap_or_else(|_| SubscriptionConfig {
            subscription_detail: SubscriptionDetail { device_id: s.device_id.clone() },
            subscription_expire_time: None,
            subscription_max_events: None,
            initial_event: None,
        }),
        id: s.id.clone(),
        starts_at: validate::format_time(s.starts_at),
        expires_at: s.expires_at.map(validate::format_time),
        status: "ACTIVE",
    }
}

fn check(body: &SubscriptionRequest) -> Result<Option<chrono::DateTime<Utc>>, ApiError> {
    if body.protocol != "HTTP" {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "INVALID_PROTOCOL", "Only HTTP is supported"));
    }
    validate::max_len("sink", &body.sink, 1024)?;
    if body.types.is_empty() || body.types.len() > 3 {
        return Err(ApiError::invalid_argument("types must list 1 to 3 event types"));
    }
    if let Some(t) = body.types.iter().find(|t| !SUBSCRIBABLE_TYPES.contains(&t.as_str())) {
        return Err(ApiError::invalid_argument(format!("unknown event type {t:?}")));
    }
    validate::uuid("config.subscriptionDetail.deviceId", &body.config.subscription_detail.device_id)?;
    if let Some(c) = &body.sink_credential {
        check_credential(c)?;
    }
    body.config
        .subscription_expire_time
        .as_deref()
        .map(|t| validate::date_time("config.subscriptionExpireTime", t))
        .transpose()
}

fn check_credential(c: &SinkCredential) -> Result<StoredCredential, ApiError> {
    if c.credential_type != "ACCESSTOKEN" {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "INVALID_CREDENTIAL", "Only Access token is supported"));
    }
    if c.access_token_type != "bearer" {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "INVALID_TOKEN", "Only bearer token is supported"));
    }
    validate::max_len("sinkCredential.accessToken", &c.access_token, 8192)?;
    let expires_at = validate::date_time("sinkCredential.accessTokenExpiresUtc", &c.access_token_expires_utc)?;
    Ok(StoredCredential { access_token: c.access_token.clone(), expires_at })
}

#[utoipa::path(get, path = "/webrtc-events/v0.2/subscriptions", tag = "webrtc-events", operation_id = "retrieveNotificationChannelSubscriptionList", params(("x-correlator" = Option<String>, Header, description = "Correlation id, echoed on the response")), responses((status = 200, description = "The caller's subscriptions", body = Vec<SubscriptionResponse>), (status = 400, description = "Invalid argument", body = ErrorInfo), (status = 401, description = "Unauthenticated", body = ErrorInfo), (status = 403, description = "Permission denied", body = ErrorInfo)), security(("openId" = ["webrtc-events:read"])))]
pub(super) async fn list(gw: GatewayState, headers: HeaderMap) -> Result<impl IntoResponse, ApiError> {
    let op = OperationContext::new(API, "retrieveNotificationChannelSubscriptionList", "GET");
    let caller = authorize(&gw, &headers, op).await?;
    let found: Vec<_> = gw.store.subscriptions_of(&caller.phone_number)?.iter().map(response).collect();
    Ok(Json(found))
}

#[utoipa::path(put, path = "/webrtc-events/v0.2/subscriptions/{subscriptionId}", tag = "webrtc-events", operation_id = "updateNotificationChannelSubscription", params(("x-correlator" = Option<String>, Header, description = "Correlation id, echoed on the response"), ("subscriptionId" = String, Path)), request_body = SubscriptionUpdate, responses((status = 200, description = "Refreshed", body = SubscriptionResponse), (status = 400, description = "Invalid argument", body = ErrorInfo), (status = 401, description = "Unauthenticated", body = ErrorInfo), (status = 403, description = "Permission denied", body = ErrorInfo), (status = 404, description = "Not found", body = ErrorInfo)), security(("openId" = ["webrtc-events:update"])))]
pub(super) async fn update(
    gw: GatewayState,
    headers: HeaderMap,
    Path(id): Path<String>,
    CamaraJson(body): CamaraJson<SubscriptionUpdate>,
) -> Result<impl IntoResponse, ApiError> {
    let credential = body.sink_credential.as_ref().map(check_credential).transpose()?;
    let config = body.config.unwrap_or(crate::model::SubscriptionUpdateConfigWithDetail {
        subscription_expire_time: None,
        subscription_detail: None,
    });
    let expires_at = config
        .subscription_expire_time
        .as_deref()
        .map(|t| validate::date_time("config.subscriptionExpireTime", t))
        .transpose()?;
    if body.sink_credential.is_none() && expires_at.is_none() {
        return Err(ApiError::invalid_argument(
            "Nothing to update: give sinkCredential and/or config.subscriptionExpireTime",
        ));
    }
    let mut op = OperationContext::new(API, "updateNotificationChannelSubscription", "PUT");
    op.path_ids.push(("subscriptionId", &id));
    let caller = authorize(&gw, &headers, op).await?;
    let current = gw
        .store
        .subscription(&id, &caller.phone_number)?
        .ok_or_else(|| ApiError::not_found("Subscription not found"))?;
    if config.subscription_detail.as_ref().is_some_and(|d| d.device_id != current.device_id) {
        return Err(ApiError::invalid_argument("config.subscriptionDetail.deviceId cannot be changed"));
    }
    let updated = gw
        .store
        .update_subscription(&id, &caller.phone_number, &mut |s| {
            if let Some(c) = &credential {
                s.sink_credential = Some(c.clone());
            }
            if let Some(t) = expires_at {
                s.expires_at = Some(t);
                s.config_json["subscriptionExpireTime"] = config.subscription_expire_time.clone().into();
            }
        })?
        .ok_or_else(|| ApiError::not_found("Subscription not found"))?;
    Ok(Json(response(&updated)))
}

#[utoipa::path(post, path = "/webrtc-events/v0.2/subscriptions", tag = "webrtc-events", operation_id = "createNotificationChannelSubscription", params(("x-correlator" = Option<String>, Header, description = "Correlation id, echoed on the response")), request_body = SubscriptionRequest, responses((status = 201, description = "Created", body = SubscriptionResponse), (status = 400, description = "Invalid argument", body = ErrorInfo), (status = 401, description = "Unauthenticated", body = ErrorInfo), (status = 403, description = "Permission denied", body = ErrorInfo)), security(("openId" = ["webrtc-events:org.camaraproject.webrtc-events.v0.session-status:create", "webrtc-events:org.camaraproject.webrtc-events.v0.session-invitation:create", "webrtc-events:org.camaraproject.webrtc-events.v0.registration-ends:create"])))]
pub(super) async fn create(
    gw: GatewayState,
    headers: HeaderMap,
    CamaraJson(body): CamaraJson<SubscriptionRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let expires_at = check(&body)?;
    if !gw.notifier.is_own_relay_sink(&body.sink) {
        gw.config
            .notifications
            .sink_policy()
            .check(&body.sink)
            .await
            .map_err(|why| ApiError::new(StatusCode::BAD_REQUEST, "INVALID_SINK", why))?;
    }
    let mut op = OperationContext::new(API, "createNotificationChannelSubscription", "POST");
    op.fields.device_id = Some(body.config.subscription_detail.device_id.clone());
    op.fields.event_types = body.types.clone();
    let caller = authorize(&gw, &headers, op).await?;
    let sink_credential = body.sink_credential.as_ref().map(check_credential).transpose()?;
    let subscription = Subscription {
        id: uuid::Uuid::new_v4().to_string(),
        owner_phone_number: caller.phone_number,
        device_id: body.config.subscription_detail.device_id.clone(),
        sink: body.sink,
        sink_credential,
        types: body.types,
        config_json: serde_json::to_value(&body.config).unwrap_or_default(),
        starts_at: Utc::now(),
        expires_at,
    };
    gw.store.insert_subscription(subscription.clone())?;
    Ok((StatusCode::CREATED, Json(response(&subscription))))
}

#[utoipa::path(get, path = "/webrtc-events/v0.2/subscriptions/{subscriptionId}", tag = "webrtc-events", operation_id = "retrieveNotificationChannelSubscription", params(("x-correlator" = Option<String>, Header, description = "Correlation id, echoed on the response"), ("subscriptionId" = String, Path)), responses((status = 200, description = "The subscription", body = SubscriptionResponse), (status = 400, description = "Invalid argument", body = ErrorInfo), (status = 401, description = "Unauthenticated", body = ErrorInfo), (status = 403, description = "Permission denied", body = ErrorInfo), (status = 404, description = "Not found", body = ErrorInfo)), security(("openId" = ["webrtc-events:read"])))]
pub(super) async fn read(
    gw: GatewayState,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let mut op = OperationContext::new(API, "retrieveNotificationChannelSubscription", "GET");
    op.path_ids.push(("subscriptionId", &id));
    let caller = authorize(&gw, &headers, op).await?;
    let s = gw
        .store
        .subscription(&id, &caller.phone_number)?
        .ok_or_else(|| ApiError::not_found("Subscription not found"))?;
    Ok(Json(response(&s)))
}

#[utoipa::path(delete, path = "/webrtc-events/v0.2/subscriptions/{subscriptionId}", tag = "webrtc-events", operation_id = "deleteNotificationChannelSubscription", params(("x-correlator" = Option<String>, Header, description = "Correlation id, echoed on the response"), ("subscriptionId" = String, Path)), responses((status = 202, description = "Deleted; subscription-ended follows"), (status = 400, description = "Invalid argument", body = ErrorInfo), (status = 401, description = "Unauthenticated", body = ErrorInfo), (status = 403, description = "Permission denied", body = ErrorInfo), (status = 404, description = "Not found", body = ErrorInfo)), security(("openId" = ["webrtc-events:delete"])))]
pub(super) async fn remove(
    gw: GatewayState,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let mut op = OperationContext::new(API, "deleteNotificationChannelSubscription", "DELETE");
    op.path_ids.push(("subscriptionId", &id));
    let caller = authorize(&gw, &headers, op).await?;
    let s = gw
        .store
        .remove_subscription(&id, &caller.phone_number)?
        .ok_or_else(|| ApiError::not_found("Subscription not found"))?;
    let event = GatewayEvent::subscription_ended(&s, "SUBSCRIPTION_DELETED", "Subscription deleted by client request");
    gw.notifier.publish(event, std::slice::from_ref(&s)).await;
    gw.notifier.close(&s.id);
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({ "id": s.id }))))
}
