//! webrtc-events: notification subscriptions.

use camara_plugin_host::authorization::{Api, HttpMethod};
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;

use super::{
    Authenticated, CamaraJson, CommonErrors, CorrelatorHeader, GatewayState, OperationContext, PathId, authorize,
    missing_id,
};
use crate::app::Gateway;
use crate::error::{ApiError, ErrorInfo};
use crate::model::{
    MAX_HTTP_SETTINGS_HEADER, SinkCredential, SubscriptionAsync, SubscriptionConfig, SubscriptionDetail,
    SubscriptionRequest, SubscriptionResponse, SubscriptionUpdate,
};
use crate::notify::{SESSION_INVITATION, SESSION_STATUS, SUBSCRIBABLE_TYPES};
use crate::store::SinkCredential as StoredCredential;
use crate::store::Subscription;
use crate::validate;

const API: Api = Api::WebrtcEvents;

/// The most subscriptions a list answer holds (`maxItems` of the CAMARA file).
pub const MAX_LISTED_SUBSCRIPTIONS: usize = 100;

pub fn routes() -> Router<Arc<Gateway>> {
    let missing = missing_id("subscriptionId");
    Router::new()
        .route("/subscriptions", get(list).post(create).put(missing.clone()).delete(missing.clone()))
        .route("/subscriptions/", get(missing.clone()).put(missing.clone()).delete(missing))
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

/// What a subscription request asks for, once its own fields are checked.
struct Checked {
    expires_at: Option<chrono::DateTime<Utc>>,
    sink_credential: Option<StoredCredential>,
    /// `config.subscriptionDetail.deviceId` in its canonical form.
    device_id: String,
}

/// The checks of the request's own fields, before the caller is known. `multi_event`: whether
/// several types may share one subscription (`[api] multi_event_subscriptions`).
fn check(body: &SubscriptionRequest, multi_event: bool) -> Result<Checked, ApiError> {
    if body.protocol != "HTTP" {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "INVALID_PROTOCOL", "Only HTTP is supported"));
    }
    validate::max_len("sink", &body.sink, 1024)?;
    if body.types.is_empty() || body.types.len() > 3 {
        return Err(ApiError::invalid_argument("types must list 1 to 3 event types"));
    }
    if let Some(t) = body.types.iter().find(|t| !SUBSCRIBABLE_TYPES.contains(&t.as_str())) {
        return Err(ApiError::invalid_argument(format!("unknown event type {}", validate::quoted(t))));
    }
    if let Some((i, t)) = body.types.iter().enumerate().find(|(i, t)| body.types[..*i].contains(t)) {
        return Err(ApiError::invalid_argument(format!("types lists {t} twice (at {i})")));
    }
    if body.types.len() > 1 && !multi_event {
        return Err(ApiError::unprocessable(
            "MULTIEVENT_SUBSCRIPTION_NOT_SUPPORTED",
            "Multi event types subscription not managed: one type per subscription",
        ));
    }
    if let Some(settings) = &body.protocol_settings {
        for (name, value) in settings.headers.iter().flatten() {
            validate::max_len(&format!("protocolSettings.headers.{name}"), value, MAX_HTTP_SETTINGS_HEADER)?;
        }
    }
    let device_id = validate::uuid("config.subscriptionDetail.deviceId", &body.config.subscription_detail.device_id)?;
    if let Some(n) = body.config.subscription_max_events
        && !(1..=1_000_000).contains(&n)
    {
        return Err(ApiError::out_of_range("config.subscriptionMaxEvents must be between 1 and 1000000"));
    }
    let sink_credential = body.sink_credential.as_ref().map(check_credential).transpose()?;
    let expires_at = body
        .config
        .subscription_expire_time
        .as_deref()
        .map(|t| validate::future_date_time("config.subscriptionExpireTime", t))
        .transpose()?;
    Ok(Checked { expires_at, sink_credential, device_id })
}

/// `AccessTokenCredential`, in the order of its schema: the credential type (the discriminator)
/// first, then the members it requires.
fn check_credential(c: &SinkCredential) -> Result<StoredCredential, ApiError> {
    if c.credential_type != "ACCESSTOKEN" {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "INVALID_CREDENTIAL", "Only Access token is supported"));
    }
    let required = |name: &str, value: &Option<String>| {
        value.clone().ok_or_else(|| ApiError::invalid_argument(format!("sinkCredential.{name} is required")))
    };
    let access_token = required("accessToken", &c.access_token)?;
    let expires = required("accessTokenExpiresUtc", &c.access_token_expires_utc)?;
    if required("accessTokenType", &c.access_token_type)? != "bearer" {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "INVALID_TOKEN", "Only bearer token is supported"));
    }
    validate::max_len("sinkCredential.accessToken", &access_token, 8192)?;
    // An already expired credential could never authorize a delivery.
    let expires_at = validate::future_date_time("sinkCredential.accessTokenExpiresUtc", &expires)?;
    Ok(StoredCredential { access_token, expires_at })
}

#[utoipa::path(
    get,
    path = "/webrtc-events/v0.2/subscriptions",
    tag = "webrtc-events",
    operation_id = "retrieveNotificationChannelSubscriptionList",
    params(CorrelatorHeader),
    responses((status = 200, description = "The caller's subscriptions", body = Vec<SubscriptionResponse>), CommonErrors),
    security(("openId" = ["webrtc-events:read"]))
)]
pub(super) async fn list(gw: GatewayState, auth: Authenticated) -> Result<impl IntoResponse, ApiError> {
    let op = OperationContext::new(API, "retrieveNotificationChannelSubscriptionList", HttpMethod::Get);
    let caller = authorize(&gw, auth, op).await?;
    // The CAMARA file caps the list (`maxItems`) and defines no paging: the oldest are listed
    // (the store orders them by `starts_at`).
    let found: Vec<_> = gw
        .store
        .subscriptions_of(&caller.phone_number)
        .await?
        .iter()
        .take(MAX_LISTED_SUBSCRIPTIONS)
        .map(response)
        .collect();
    Ok(Json(found))
}

#[utoipa::path(
    put,
    path = "/webrtc-events/v0.2/subscriptions/{subscriptionId}",
    tag = "webrtc-events",
    operation_id = "updateNotificationChannelSubscription",
    params(CorrelatorHeader, ("subscriptionId" = String, Path, max_length = 256)),
    request_body = SubscriptionUpdate,
    responses(
        (status = 200, description = "Refreshed", body = SubscriptionResponse),
        CommonErrors,
        (status = 404, description = "Not found", body = ErrorInfo),
        (status = 422, description = "MISSING_IDENTIFIER: the access token names no phone number", body = ErrorInfo),
        (status = 415, description = "The body is not JSON", body = ErrorInfo),
    ),
    security(("openId" = ["webrtc-events:update"]))
)]
pub(super) async fn update(
    gw: GatewayState,
    auth: Authenticated,
    PathId(id): PathId,
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
        .map(|t| validate::future_date_time("config.subscriptionExpireTime", t))
        .transpose()?;
    let device_id = config
        .subscription_detail
        .as_ref()
        .map(|detail| validate::uuid("config.subscriptionDetail.deviceId", &detail.device_id))
        .transpose()?;
    if body.sink_credential.is_none() && expires_at.is_none() {
        return Err(ApiError::invalid_argument(
            "Nothing to update: give sinkCredential and/or config.subscriptionExpireTime",
        ));
    }
    let mut op = OperationContext::new(API, "updateNotificationChannelSubscription", HttpMethod::Put);
    op.path_ids.push(("subscriptionId", &id));
    let caller = authorize(&gw, auth, op).await?;
    let current = gw
        .store
        .subscription(&id, &caller.phone_number)
        .await?
        .ok_or_else(|| ApiError::not_found("Subscription not found"))?;
    if device_id.is_some_and(|d| d != current.device_id) {
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
        })
        .await?
        .ok_or_else(|| ApiError::not_found("Subscription not found"))?;
    Ok(Json(response(&updated)))
}

/// The event types that need a registration of the device: `WebrtcSubscriptionDetail` says
/// session-invitation and session-status require "a `deviceId` related to a valid
/// registration"; registration-ends does not.
const NEED_REGISTRATION: [&str; 2] = [SESSION_STATUS, SESSION_INVITATION];

#[utoipa::path(
    post,
    path = "/webrtc-events/v0.2/subscriptions",
    tag = "webrtc-events",
    operation_id = "createNotificationChannelSubscription",
    params(CorrelatorHeader),
    request_body = SubscriptionRequest,
    responses(
        (status = 201, description = "Created", body = SubscriptionResponse),
        CommonErrors,
        (status = 415, description = "The body is not JSON", body = ErrorInfo),
        (status = 422, description = "SERVICE_NOT_APPLICABLE: session-status and session-invitation need a registration of the device by the caller; MISSING_IDENTIFIER: the access token names no phone number; MULTIEVENT_SUBSCRIPTION_NOT_SUPPORTED: several types where `[api] multi_event_subscriptions` is off", body = ErrorInfo),
    ),
    security(("openId" = ["webrtc-events:org.camaraproject.webrtc-events.v0.session-status:create", "webrtc-events:org.camaraproject.webrtc-events.v0.session-invitation:create", "webrtc-events:org.camaraproject.webrtc-events.v0.registration-ends:create"]))
)]
pub(super) async fn create(
    gw: GatewayState,
    auth: Authenticated,
    CamaraJson(mut body): CamaraJson<SubscriptionRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let Checked { expires_at, sink_credential, device_id } = check(&body, gw.config.api.multi_event_subscriptions)?;
    body.config.subscription_detail.device_id = device_id.clone();
    let mut op = OperationContext::new(API, "createNotificationChannelSubscription", HttpMethod::Post);
    op.fields.device_id = Some(device_id.clone());
    op.fields.event_types = body.types.clone();
    let caller = authorize(&gw, auth, op).await?;
    // Where the sink resolves is looked up for authorized callers only.
    if !gw.notifier.is_own_relay_sink(&body.sink) {
        gw.config
            .notifications
            .sink_policy()
            .check(&body.sink)
            .await
            .map_err(|why| ApiError::new(StatusCode::BAD_REQUEST, "INVALID_SINK", why))?;
    }
    let now = Utc::now();
    if body.types.iter().any(|t| NEED_REGISTRATION.contains(&t.as_str()))
        && !gw.store.registrations_of(&caller.phone_number, Some(&device_id)).await?.iter().any(|r| r.expires_at > now)
    {
        return Err(ApiError::unprocessable(
            "SERVICE_NOT_APPLICABLE",
            "The service is not available for the provided identifier: \
             session-status and session-invitation need a registration of this deviceId",
        ));
    }
    let subscription = Subscription {
        id: uuid::Uuid::new_v4().to_string(),
        owner_phone_number: caller.phone_number,
        device_id,
        sink: body.sink,
        sink_credential,
        types: body.types,
        config_json: serde_json::to_value(&body.config).unwrap_or_default(),
        starts_at: Utc::now(),
        expires_at,
    };
    gw.store.insert_subscription(subscription.clone()).await?;
    Ok((StatusCode::CREATED, Json(response(&subscription))))
}

#[utoipa::path(
    get,
    path = "/webrtc-events/v0.2/subscriptions/{subscriptionId}",
    tag = "webrtc-events",
    operation_id = "retrieveNotificationChannelSubscription",
    params(CorrelatorHeader, ("subscriptionId" = String, Path, max_length = 256)),
    responses(
        (status = 200, description = "The subscription", body = SubscriptionResponse),
        CommonErrors,
        (status = 404, description = "Not found", body = ErrorInfo),
    ),
    security(("openId" = ["webrtc-events:read"]))
)]
pub(super) async fn read(
    gw: GatewayState,
    auth: Authenticated,
    PathId(id): PathId,
) -> Result<impl IntoResponse, ApiError> {
    let mut op = OperationContext::new(API, "retrieveNotificationChannelSubscription", HttpMethod::Get);
    op.path_ids.push(("subscriptionId", &id));
    let caller = authorize(&gw, auth, op).await?;
    let s = gw
        .store
        .subscription(&id, &caller.phone_number)
        .await?
        .ok_or_else(|| ApiError::not_found("Subscription not found"))?;
    Ok(Json(response(&s)))
}

#[utoipa::path(
    delete,
    path = "/webrtc-events/v0.2/subscriptions/{subscriptionId}",
    tag = "webrtc-events",
    operation_id = "deleteNotificationChannelSubscription",
    params(CorrelatorHeader, ("subscriptionId" = String, Path, max_length = 256)),
    responses(
        (status = 202, description = "Deleted; subscription-ended follows", body = SubscriptionAsync),
        CommonErrors,
        (status = 404, description = "Not found", body = ErrorInfo),
    ),
    security(("openId" = ["webrtc-events:delete"]))
)]
pub(super) async fn remove(
    gw: GatewayState,
    auth: Authenticated,
    PathId(id): PathId,
) -> Result<impl IntoResponse, ApiError> {
    let mut op = OperationContext::new(API, "deleteNotificationChannelSubscription", HttpMethod::Delete);
    op.path_ids.push(("subscriptionId", &id));
    let caller = authorize(&gw, auth, op).await?;
    let not_found = || ApiError::not_found("Subscription not found");
    let s = gw.store.subscription(&id, &caller.phone_number).await?.ok_or_else(not_found)?;
    let description = "Subscription deleted by client request";
    let ended = crate::lifecycle::end_subscription(&gw, &s, "SUBSCRIPTION_DELETED", description)
        .await
        .map_err(crate::store::internal)?;
    if !ended {
        return Err(not_found());
    }
    Ok((StatusCode::ACCEPTED, Json(SubscriptionAsync { id: s.id })))
}
