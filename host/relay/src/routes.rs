//! The HTTP side: channel management for devices, the WebSocket upgrade, and the gateway's sink.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Path, Query, Request, State, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::auth::DeviceIdentity;
use crate::channel::{Channel, EventKey};
use crate::{Relay, RelayError};

/// `sinkCredential`: the CAMARA webrtc-events `AccessTokenCredential`, ready to be put in a
/// subscription as it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SinkCredential {
    /// Always `ACCESSTOKEN`.
    pub credential_type: String,
    pub access_token: String,
    /// Always `bearer`.
    pub access_token_type: String,
    pub access_token_expires_utc: chrono::DateTime<chrono::Utc>,
}

/// A channel as its owner sees it (`POST /channels`, `GET /channels/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelInfo {
    pub channel_id: String,
    /// Where the gateway POSTs the events: the subscription's `sink`.
    pub sink_url: String,
    /// The subscription's `sinkCredential`.
    pub sink_credential: SinkCredential,
    /// Where the device connects its WebSocket (`?token=<websocketToken>`).
    pub websocket_url: String,
    /// Authorizes the WebSocket of this channel, and nothing else.
    pub websocket_token: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    /// Whether a device socket is connected now.
    pub connected: bool,
    /// Deliveries in flight or waiting.
    pub pending_deliveries: usize,
}

impl Relay {
    fn info(&self, channel: &Channel) -> ChannelInfo {
        let s = &self.inner.settings;
        ChannelInfo {
            channel_id: channel.id.clone(),
            sink_url: format!("{}/sink/{}", s.http_base, channel.id),
            sink_credential: SinkCredential {
                credential_type: "ACCESSTOKEN".into(),
                access_token: channel.sink_token().to_string(),
                access_token_type: "bearer".into(),
                access_token_expires_utc: channel.expires_at,
            },
            websocket_url: format!("{}/channels/{}/ws", s.ws_base, channel.id),
            websocket_token: channel.ws_token().to_string(),
            created_at: channel.created_at,
            expires_at: channel.expires_at,
            connected: channel.is_connected(),
            pending_deliveries: channel.queued(),
        }
    }

    async fn identify(&self, headers: &HeaderMap) -> Result<DeviceIdentity, RelayError> {
        let token = bearer(headers).ok_or_else(|| RelayError::Unauthenticated("no bearer access token".into()))?;
        self.inner.authenticator.authenticate(token).await.map_err(|why| {
            tracing::debug!("device token refused: {why}");
            RelayError::Unauthenticated(format!("access token refused: {why}"))
        })
    }

    /// The live channel `id` if `owner` owns it; a channel of anyone else does not exist.
    fn owned(&self, id: &str, owner: &DeviceIdentity) -> Result<Arc<Channel>, RelayError> {
        self.live(id).filter(|c| c.owner == *owner).ok_or(RelayError::ChannelNotFound)
    }
}

/// The credential of `Authorization: Bearer <token>`.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

pub(crate) async fn create_channel(State(relay): State<Relay>, headers: HeaderMap) -> Result<Response, RelayError> {
    let owner = relay.identify(&headers).await?;
    let channel = relay.create(owner)?;
    let info = relay.info(&channel);
    tracing::info!(channel = info.channel_id, "relay channel created");
    let location = format!("{}/channels/{}", relay.inner.settings.mount_path, info.channel_id);
    let mut response = (StatusCode::CREATED, Json(info)).into_response();
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

pub(crate) async fn get_channel(
    State(relay): State<Relay>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<ChannelInfo>, RelayError> {
    let owner = relay.identify(&headers).await?;
    let channel = relay.owned(&id, &owner)?;
    Ok(Json(relay.info(&channel)))
}

pub(crate) async fn delete_channel(
    State(relay): State<Relay>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, RelayError> {
    let owner = relay.identify(&headers).await?;
    let channel = relay.owned(&id, &owner)?;
    relay.remove(&channel);
    tracing::info!(channel = id, "relay channel deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub(crate) struct SocketQuery {
    token: Option<String>,
}

pub(crate) async fn channel_socket(
    State(relay): State<Relay>,
    Path(id): Path<String>,
    Query(query): Query<SocketQuery>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, RelayError> {
    let channel = relay.live(&id).ok_or(RelayError::ChannelNotFound)?;
    if let Some(token) = query.token.as_deref() {
        if !channel.is_ws_token(token) {
            return Err(RelayError::Unauthenticated("wrong websocket token".into()));
        }
    } else if bearer(&headers).is_some() {
        // The owner's own access token also works (for clients that can set headers).
        if relay.identify(&headers).await? != channel.owner {
            return Err(RelayError::ChannelNotFound);
        }
    } else {
        return Err(RelayError::Unauthenticated("no websocket token (?token=) and no bearer access token".into()));
    }
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(rejection) => return Ok(rejection.into_response()),
    };
    let ping_interval = relay.inner.settings.ping_interval;
    Ok(upgrade
        .max_message_size(64 * 1024)
        .on_upgrade(move |socket| crate::ws::run(channel, socket, ping_interval))
        .into_response())
}

/// The gateway's delivery of one CloudEvent to the channel's device.
pub(crate) async fn sink(
    State(relay): State<Relay>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, RelayError> {
    let channel = relay.for_sink(&id)?;
    let token = bearer(&headers).ok_or_else(|| RelayError::Unauthenticated("no bearer sink credential".into()))?;
    if !channel.is_sink_token(token) {
        return Err(RelayError::Unauthenticated("wrong sink credential".into()));
    }
    let (event_json, key) = cloud_event(&headers, &body)?;
    let settings = &relay.inner.settings;
    let correlator = headers.get("x-correlator").and_then(|v| v.to_str().ok()).unwrap_or_default();
    match channel.deliver(event_json, key, settings).await {
        Ok(how) => {
            tracing::debug!(channel = id, correlator, ?how, "event delivered to the device");
            Ok(StatusCode::NO_CONTENT)
        }
        Err(e) => {
            tracing::debug!(channel = id, correlator, "event not delivered: {e}");
            Err(e)
        }
    }
}

/// Checks that the body is a structured-mode JSON CloudEvent; returns it and its dedup key.
fn cloud_event<'a>(headers: &HeaderMap, body: &'a Bytes) -> Result<(&'a str, EventKey), RelayError> {
    let invalid = |m: &str| RelayError::InvalidEvent(m.to_string());
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if media_type != "application/cloudevents+json" && media_type != "application/json" {
        return Err(invalid("content-type must be application/cloudevents+json"));
    }
    let text = std::str::from_utf8(body).map_err(|_| invalid("the body is not UTF-8"))?;
    let event: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)
        .map_err(|e| RelayError::InvalidEvent(format!("the body is not a JSON object: {e}")))?;
    let attribute = |name: &str| match event.get(name) {
        Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(RelayError::InvalidEvent(format!("the CloudEvent has no {name}"))),
    };
    attribute("specversion")?;
    attribute("type")?;
    let id = attribute("id")?;
    let source = event.get("source").and_then(|s| s.as_str()).unwrap_or_default().to_string();
    Ok((text, (source, id)))
}

/// Echoes the caller's `x-correlator` on every answer (CAMARA).
pub(crate) async fn correlator(request: Request, next: Next) -> Response {
    let correlator = request.headers().get("x-correlator").cloned();
    let mut response = next.run(request).await;
    if let Some(value) = correlator {
        response.headers_mut().insert("x-correlator", value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (header::HeaderName::from_static(k), HeaderValue::from_static(v))).collect()
    }

    #[test]
    fn bearer_needs_the_scheme_and_a_token() {
        assert_eq!(bearer(&headers(&[("authorization", "Bearer abc")])), Some("abc"));
        assert_eq!(bearer(&headers(&[("authorization", "bearer  abc ")])), Some("abc"));
        assert_eq!(bearer(&headers(&[("authorization", "Basic abc")])), None);
        assert_eq!(bearer(&headers(&[("authorization", "Bearer ")])), None);
        assert_eq!(bearer(&headers(&[])), None);
    }

    #[test]
    fn cloud_events_are_checked() {
        let ce = headers(&[("content-type", "application/cloudevents+json; charset=utf-8")]);
        let ok = Bytes::from_static(br#"{"specversion":"1.0","id":"1","type":"t","source":"/s"}"#);
        let (_, key) = cloud_event(&ce, &ok).unwrap();
        assert_eq!(key, ("/s".to_string(), "1".to_string()));
        assert!(cloud_event(&headers(&[("content-type", "application/json")]), &ok).is_ok());
        assert!(cloud_event(&headers(&[("content-type", "text/plain")]), &ok).is_err());
        assert!(cloud_event(&headers(&[]), &ok).is_err());
        for bad in [&b"[1]"[..], b"{", br#"{"specversion":"1.0","type":"t"}"#, br#"{"id":"1","type":"t"}"#] {
            assert!(cloud_event(&ce, &Bytes::copy_from_slice(bad)).is_err(), "{bad:?}");
        }
    }
}
