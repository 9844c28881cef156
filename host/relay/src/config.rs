//! What the operator configures: where the relay is reachable, and the bounds of every wait.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::RelayError;

/// Relay settings (the gateway's `[relay]` section, or the standalone relay's configuration).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    /// Scheme, host and port the devices and the gateway reach the relay at, e.g.
    /// `https://webrtc-gw.operator.example` (no path: `mount_path` follows). Every URL handed out
    /// (`sinkUrl`, `websocketUrl`) starts with it. Required by [`crate::Relay::new`];
    /// [`crate::serve`] fills it from the listener's address when unset.
    pub public_base_url: Option<String>,
    /// The path the relay's routes live under, e.g. `/relay`; `""` for the root.
    pub mount_path: String,
    /// How long a channel (and its sink credential and WebSocket token) lives.
    pub channel_ttl_seconds: u64,
    /// How long a forwarded event waits for the device's ack before the sink answers `504`.
    pub ack_timeout_ms: u64,
    /// How long an event waits for a device to (re)connect before the sink answers `503`.
    pub reconnect_wait_ms: u64,
    /// `Retry-After` of the `503` (no device) and `429` (queue full) answers.
    pub retry_after_seconds: u64,
    /// Deliveries that may wait behind the one in flight on a channel; beyond it the sink
    /// answers `429`.
    pub max_queued_per_channel: usize,
    /// Live channels per subscriber (the phone number of the token, else its subject); beyond
    /// it `POST /channels` answers `429`.
    pub max_channels_per_subscriber: usize,
    /// An event id the device has acknowledged is answered `204` without a second push for
    /// this long (the gateway retries a delivery whose answer it did not see).
    pub dedup_window_seconds: u64,
    /// At most this many acknowledged event ids are remembered per channel (oldest go first).
    pub dedup_capacity: usize,
    /// A WebSocket ping goes out this often; a socket silent for two intervals is closed.
    pub ping_interval_seconds: u64,
    /// Largest CloudEvent body the sink accepts (`413` above it).
    pub max_event_bytes: usize,
    /// The claim of a verified access token holding the subscriber's phone number (used by
    /// [`crate::TokenVerifierAuthenticator`]).
    pub phone_number_claim: String,
    /// Token verification for the standalone relay ([`crate::serve`]); a relay mounted in the
    /// gateway uses the gateway's own [`crate::DeviceAuthenticator`] and ignores this.
    pub auth: camara_auth::VerifierConfig,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            public_base_url: None,
            mount_path: "/relay".into(),
            channel_ttl_seconds: 24 * 3600,
            ack_timeout_ms: 5_000,
            reconnect_wait_ms: 10_000,
            retry_after_seconds: 10,
            max_queued_per_channel: 16,
            max_channels_per_subscriber: 8,
            dedup_window_seconds: 3600,
            dedup_capacity: 1024,
            ping_interval_seconds: 25,
            max_event_bytes: 256 * 1024,
            phone_number_claim: "phone_number".into(),
            auth: camara_auth::VerifierConfig::default(),
        }
    }
}

/// The checked form of [`RelayConfig`] that the relay runs on.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// `public_base_url` + `mount_path`, no trailing slash.
    pub http_base: String,
    /// The same with `ws`/`wss`.
    pub ws_base: String,
    pub mount_path: String,
    pub channel_ttl: chrono::Duration,
    pub ack_timeout: Duration,
    pub reconnect_wait: Duration,
    pub retry_after_seconds: u64,
    pub max_queued_per_channel: usize,
    pub max_channels_per_subscriber: usize,
    pub dedup_window: Duration,
    pub dedup_capacity: usize,
    pub ping_interval: Duration,
    pub max_event_bytes: usize,
}

impl RelayConfig {
    pub(crate) fn settings(&self) -> Result<Settings, RelayError> {
        let config = |m: String| RelayError::Config(m);
        let base = self.public_base_url.as_deref().ok_or_else(|| config("public_base_url is not set".into()))?;
        let url = url::Url::parse(base).map_err(|e| config(format!("public_base_url {base:?}: {e}")))?;
        let ws_scheme = match url.scheme() {
            "https" => "wss",
            "http" => "ws",
            other => return Err(config(format!("public_base_url {base:?}: scheme {other} is not http(s)"))),
        };
        if url.host().is_none()
            || !url.username().is_empty()
            || url.password().is_some()
            || url.query().is_some()
            || url.fragment().is_some()
            || url.path() != "/"
        {
            return Err(config(format!("public_base_url {base:?} must be scheme://host[:port] only")));
        }
        let mount = self.mount_path.trim_end_matches('/');
        if !(mount.is_empty() || mount.starts_with('/')) || mount.contains(['?', '#', '{', '}', '*']) {
            return Err(config(format!("mount_path {:?} must be empty or an absolute path", self.mount_path)));
        }
        let origin = url.as_str().trim_end_matches('/');
        let ws_origin = format!("{ws_scheme}{}", &origin[url.scheme().len()..]);
        let positive =
            |name: &str, v: u64| if v == 0 { Err(config(format!("{name} must be positive"))) } else { Ok(v) };
        let ttl = positive("channel_ttl_seconds", self.channel_ttl_seconds)?;
        Ok(Settings {
            http_base: format!("{origin}{mount}"),
            ws_base: format!("{ws_origin}{mount}"),
            mount_path: mount.to_string(),
            channel_ttl: chrono::Duration::seconds(i64::try_from(ttl).unwrap_or(i64::MAX).min(10 * 365 * 86400)),
            ack_timeout: Duration::from_millis(positive("ack_timeout_ms", self.ack_timeout_ms)?),
            reconnect_wait: Duration::from_millis(self.reconnect_wait_ms),
            retry_after_seconds: self.retry_after_seconds.max(1),
            max_queued_per_channel: self.max_queued_per_channel,
            max_channels_per_subscriber: self.max_channels_per_subscriber.max(1),
            dedup_window: Duration::from_secs(self.dedup_window_seconds),
            dedup_capacity: self.dedup_capacity,
            ping_interval: Duration::from_secs(positive("ping_interval_seconds", self.ping_interval_seconds)?),
            max_event_bytes: self.max_event_bytes.max(1024),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(base: &str, mount: &str) -> Result<Settings, RelayError> {
        RelayConfig { public_base_url: Some(base.into()), mount_path: mount.into(), ..Default::default() }.settings()
    }

    #[test]
    fn urls_follow_base_and_mount() {
        let s = with("https://gw.example", "/relay").unwrap();
        assert_eq!(s.http_base, "https://gw.example/relay");
        assert_eq!(s.ws_base, "wss://gw.example/relay");
        let s = with("http://127.0.0.1:8080/", "/relay/").unwrap();
        assert_eq!(s.http_base, "http://127.0.0.1:8080/relay");
        assert_eq!(s.ws_base, "ws://127.0.0.1:8080/relay");
        assert_eq!(s.mount_path, "/relay");
        let s = with("http://localhost:1", "").unwrap();
        assert_eq!(s.http_base, "http://localhost:1");
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(with("ftp://gw.example", "/relay").is_err());
        assert!(with("https://gw.example/path", "/relay").is_err());
        assert!(with("https://gw.example", "relay").is_err());
        assert!(with("https://gw.example", "/re{lay}").is_err());
        assert!(RelayConfig::default().settings().is_err(), "public_base_url is required");
    }

    #[test]
    fn deserializes_with_defaults() {
        let c: RelayConfig = serde_json::from_value(serde_json::json!({"ack_timeout_ms": 50})).unwrap();
        assert_eq!(c.ack_timeout_ms, 50);
        assert_eq!(c.mount_path, "/relay");
        assert_eq!(c.reconnect_wait_ms, 10_000);
        assert!(serde_json::from_value::<RelayConfig>(serde_json::json!({"nope": 1})).is_err());
    }
}
