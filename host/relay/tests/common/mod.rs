//! Test support: a relay on a loopback port, an HTTP client, and a device WebSocket client.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Request};
use camara_relay::{DeviceAuthenticator, DeviceIdentity, Relay, RelayConfig};
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const ALICE_TOKEN: &str = "alice-device-token";
/// Same subscriber (phone number) as alice, another subject: not the owner of alice's channels.
pub const ALICE_OTHER_APP_TOKEN: &str = "alice-other-app-token";
pub const BOB_TOKEN: &str = "bob-device-token";
pub const ALICE: &str = "+818000000001";
pub const BOB: &str = "+818000000002";

/// Maps fixed tokens to identities (real token verification is tested in `camara_auth.rs`).
pub struct TestAuth(HashMap<&'static str, DeviceIdentity>);

impl TestAuth {
    pub fn new() -> Self {
        let id = |sub: &str, phone: &str| DeviceIdentity { subject: sub.into(), phone_number: Some(phone.into()) };
        TestAuth(HashMap::from([
            (ALICE_TOKEN, id("alice", ALICE)),
            (ALICE_OTHER_APP_TOKEN, id("alice-other-app", ALICE)),
            (BOB_TOKEN, id("bob", BOB)),
        ]))
    }
}

#[async_trait::async_trait]
impl DeviceAuthenticator for TestAuth {
    async fn authenticate(&self, bearer_token: &str) -> Result<DeviceIdentity, String> {
        self.0.get(bearer_token).cloned().ok_or_else(|| "unknown test token".to_string())
    }
}

/// A relay served on a loopback port (clones share it).
#[derive(Clone)]
pub struct TestRelay {
    pub addr: SocketAddr,
    pub base: String,
    pub relay: Relay,
    client: hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

/// Short waits so that the timeouts are tested in well under a second each.
pub fn fast_config() -> RelayConfig {
    RelayConfig { ack_timeout_ms: 2_000, reconnect_wait_ms: 2_000, retry_after_seconds: 7, ..Default::default() }
}

impl TestRelay {
    pub async fn start(config: RelayConfig) -> Self {
        Self::start_with(config, Arc::new(TestAuth::new())).await
    }

    pub async fn start_with(mut config: RelayConfig, auth: Arc<dyn DeviceAuthenticator>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        config.public_base_url = Some(format!("http://{addr}"));
        let relay = Relay::new(config, auth).expect("relay config");
        tokio::spawn(relay.clone().serve(listener, std::future::pending()));
        TestRelay {
            addr,
            base: format!("http://{addr}/relay"),
            relay,
            client: hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http(),
        }
    }

    /// A request to `url` (absolute, or relative to the relay's base).
    pub async fn request(&self, method: Method, url: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Reply {
        let url = if url.starts_with("http") { url.to_string() } else { format!("{}{url}", self.base) };
        let mut builder = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let response = self.client.request(builder.body(Full::new(body.into())).unwrap()).await.expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("JSON body") };
        Reply { status, headers, body }
    }

    /// `POST /channels` as `token`, expecting 201.
    pub async fn create_channel(&self, token: &str) -> Channel {
        let reply = self.request(Method::POST, "/channels", &[("authorization", &format!("Bearer {token}"))], "").await;
        assert_eq!(reply.status, 201, "{reply:?}");
        Channel::from(reply.body)
    }

    /// The gateway's POST of `event` to `channel`'s sink with its own credential.
    pub async fn post_event(&self, channel: &Channel, event: &Value) -> Reply {
        self.post_event_with(&channel.sink_url, &channel.sink_token, event).await
    }

    pub async fn post_event_with(&self, sink_url: &str, sink_token: &str, event: &Value) -> Reply {
        self.request(
            Method::POST,
            sink_url,
            &[
                ("authorization", &format!("Bearer {sink_token}")),
                ("content-type", "application/cloudevents+json"),
                ("x-correlator", "corr-1"),
            ],
            event.to_string(),
        )
        .await
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

/// What `POST /channels` handed out.
#[derive(Debug, Clone)]
pub struct Channel {
    pub id: String,
    pub sink_url: String,
    pub sink_token: String,
    pub websocket_url: String,
    pub websocket_token: String,
    pub body: Value,
}

impl From<Value> for Channel {
    fn from(body: Value) -> Self {
        let s = |v: &Value| v.as_str().expect("string").to_string();
        Channel {
            id: s(&body["channelId"]),
            sink_url: s(&body["sinkUrl"]),
            sink_token: s(&body["sinkCredential"]["accessToken"]),
            websocket_url: s(&body["websocketUrl"]),
            websocket_token: s(&body["websocketToken"]),
            body,
        }
    }
}

/// A CloudEvent as the gateway sends it.
pub fn cloud_event(id: &str) -> Value {
    json!({
        "specversion": "1.0",
        "id": id,
        "source": "https://gw.test/webrtc-events/v0.2",
        "type": "org.camaraproject.webrtc-events.v0.session-status",
        "time": "2025-01-01T00:00:00Z",
        "datacontenttype": "application/json",
        "data": {"mediaSessionId": format!("session-{id}"), "status": "Connected"},
    })
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A device's WebSocket.
pub struct Device {
    pub ws: Ws,
}

/// How a WebSocket connection attempt was refused.
pub fn refused_status(result: Result<Device, tokio_tungstenite::tungstenite::Error>) -> u16 {
    match result {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("the connection was accepted"),
    }
}

impl Device {
    /// Connects with the channel's websocket token and waits for `ready`.
    pub async fn connect(channel: &Channel) -> Device {
        let url = format!("{}?token={}", channel.websocket_url, channel.websocket_token);
        let mut device = Device::try_connect(&url, None).await.expect("websocket connects");
        device.expect_ready(&channel.id).await;
        device
    }

    pub async fn try_connect(url: &str, bearer: Option<&str>) -> Result<Device, tokio_tungstenite::tungstenite::Error> {
        let mut request = url.into_client_request()?;
        if let Some(token) = bearer {
            request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        let (ws, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Device { ws })
    }

    pub async fn expect_ready(&mut self, channel_id: &str) {
        let frame = self.next_frame().await;
        assert_eq!(frame, json!({"type": "ready", "channelId": channel_id}));
    }

    /// The next text frame, as JSON (pings and pongs skipped); panics on close or after 5 s.
    pub async fn next_frame(&mut self) -> Value {
        match self.next_message(Duration::from_secs(5)).await {
            Some(Message::Text(text)) => serde_json::from_str(&text).expect("JSON frame"),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The next event frame: returns its deliveryId and event.
    pub async fn next_event(&mut self) -> (String, Value) {
        let frame = self.next_frame().await;
        assert_eq!(frame["type"], "event", "{frame}");
        (frame["deliveryId"].as_str().expect("deliveryId").to_string(), frame["event"].clone())
    }

    /// The next message other than ping/pong, or `None` when the socket ends or `wait` passes.
    pub async fn next_message(&mut self, wait: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(Some(Ok(message))) => return Some(message),
                Ok(Some(Err(_)) | None) | Err(_) => return None,
            }
        }
    }

    /// Nothing but keepalives arrives for `wait`.
    pub async fn expect_nothing(&mut self, wait: Duration) {
        if let Some(message) = self.next_message(wait).await {
            panic!("expected nothing, got {message:?}");
        }
    }

    pub async fn ack(&mut self, delivery_id: &str) {
        self.send(json!({"type": "ack", "deliveryId": delivery_id})).await;
    }

    pub async fn send(&mut self, frame: Value) {
        self.ws.send(Message::Text(frame.to_string().into())).await.expect("send");
    }

    /// Waits for the relay's close frame; returns its code.
    pub async fn expect_close(&mut self) -> u16 {
        match self.next_message(Duration::from_secs(5)).await {
            Some(Message::Close(Some(frame))) => u16::from(frame.code),
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// Polls `GET /channels/{id}` until `pendingDeliveries` is `n`.
pub async fn wait_pending(relay: &TestRelay, channel: &Channel, token: &str, n: u64) {
    for _ in 0..200 {
        let reply = relay
            .request(
                Method::GET,
                &format!("/channels/{}", channel.id),
                &[("authorization", &format!("Bearer {token}"))],
                "",
            )
            .await;
        if reply.body["pendingDeliveries"] == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("channel never had {n} pending deliveries");
}
