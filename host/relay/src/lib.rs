//! The Notification Relay of the CAMARA WebRTC gateway.
//!
//! A browser device application cannot host the HTTP endpoint that webrtc-events subscriptions
//! POST their CloudEvents to. It asks the relay for a *channel* instead and puts the channel's
//! `sinkUrl` and `sinkCredential` in its subscription; the relay receives the gateway's POSTs
//! there and pushes each event to the device over the channel's WebSocket.
//!
//! This crate owns:
//! - **channels**: created by a device (identified by its access token through a
//!   [`DeviceAuthenticator`]), visible to their owner only, expiring after a configured time,
//!   each with its own random sink credential and WebSocket token;
//! - **device sockets**: at most one live WebSocket per channel (a new one replaces the old),
//!   with keepalive;
//! - **delivery handshakes**: a sink POST is answered `204` only once the device has acknowledged
//!   the event (`504` when it does not, `503` when no device connects in time), one delivery in
//!   flight per channel so that order holds, a bounded queue behind it, and deduplication of
//!   events already acknowledged. A channel's sink delivers to that channel's socket and no other.
//!
//! It does not own token issuing or verification (the [`DeviceAuthenticator`] does: the gateway's
//! verifier, or [`TokenVerifierAuthenticator`] over `camara-auth`), the creation of CloudEvents,
//! nor retries and their backoff: the gateway retries what the relay answers with `429`, `5xx` or
//! not at all. Nothing is persisted: channels live in memory.
//!
//! Routes, relative to [`RelayConfig::mount_path`] (default `/relay`):
//!
//! | route | who | what |
//! |---|---|---|
//! | `POST /channels` | device (`Authorization: Bearer <access token>`) | creates a channel: `201` [`ChannelInfo`] |
//! | `GET /channels/{id}` | its owner | [`ChannelInfo`] (`404` for anyone else) |
//! | `DELETE /channels/{id}` | its owner | `204`; its socket closes, waiting deliveries get `404` |
//! | `GET /channels/{id}/ws?token=<websocketToken>` | device | WebSocket (or the owner's `Authorization: Bearer`); see [`protocol`] |
//! | `POST /sink/{id}` | gateway (`Authorization: Bearer <sinkCredential.accessToken>`) | one CloudEvent: `204` once acknowledged |

mod auth;
mod channel;
mod config;
mod error;
pub mod protocol;
mod routes;
mod ws;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use tokio::net::TcpListener;

pub use auth::{DeviceAuthenticator, DeviceIdentity, TokenVerifierAuthenticator};
pub use config::RelayConfig;
pub use error::RelayError;
pub use routes::{ChannelInfo, SinkCredential};

use channel::{Channel, Ended};
use config::Settings;

/// An expired channel's sink keeps answering `401` (rather than `404`) this long.
const EXPIRED_REMEMBERED: chrono::TimeDelta = chrono::TimeDelta::hours(1);
/// How often expired channels are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// The relay: cheap to clone, every clone is the same relay.
#[derive(Clone)]
pub struct Relay {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    authenticator: Arc<dyn DeviceAuthenticator>,
    channels: Mutex<HashMap<String, Arc<Channel>>>,
    /// Channels that expired, and when.
    expired: Mutex<HashMap<String, DateTime<Utc>>>,
    sweeping: AtomicBool,
}

impl Relay {
    /// Checks `config` (`public_base_url` is required here); contacts nothing.
    pub fn new(config: RelayConfig, authenticator: Arc<dyn DeviceAuthenticator>) -> Result<Self, RelayError> {
        Ok(Relay {
            inner: Arc::new(Inner {
                settings: config.settings()?,
                authenticator,
                channels: Mutex::new(HashMap::new()),
                expired: Mutex::new(HashMap::new()),
                sweeping: AtomicBool::new(false),
            }),
        })
    }

    /// The relay's routes, already under `mount_path`: `merge` them into the host's router (do
    /// not `nest` them again). Called inside a tokio runtime, it also starts the sweeper of
    /// expired channels (which stops when the relay is dropped).
    pub fn router(&self) -> Router {
        self.start_sweeper();
        let s = &self.inner.settings;
        let routes = Router::new()
            .route("/channels", post(routes::create_channel))
            .route("/channels/{id}", get(routes::get_channel).delete(routes::delete_channel))
            .route("/channels/{id}/ws", get(routes::channel_socket))
            .route("/sink/{id}", post(routes::sink).layer(DefaultBodyLimit::max(s.max_event_bytes)))
            .layer(axum::middleware::from_fn(routes::correlator))
            .with_state(self.clone());
        if s.mount_path.is_empty() { routes } else { Router::new().nest(&s.mount_path, routes) }
    }

    /// The prefix of every sink URL the relay hands out (`<public base><mount>/sink/`): what the
    /// gateway's sink policy has to accept.
    pub fn sink_url_prefix(&self) -> String {
        format!("{}/sink/", self.inner.settings.http_base)
    }

    /// Serves the relay alone on `listener` until `shutdown` completes.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), RelayError> {
        axum::serve(listener, self.router()).with_graceful_shutdown(shutdown).await?;
        Ok(())
    }

    fn create(&self, owner: DeviceIdentity) -> Result<Arc<Channel>, RelayError> {
        self.expire_due(Utc::now());
        let s = &self.inner.settings;
        let mut channels = self.inner.channels.lock().unwrap_or_else(|e| e.into_inner());
        let subscriber = owner.subscriber_key();
        let owned = channels.values().filter(|c| c.owner.subscriber_key() == subscriber).count();
        if owned >= s.max_channels_per_subscriber {
            return Err(RelayError::TooManyChannels(owned));
        }
        let channel = Arc::new(Channel::new(owner, s));
        channels.insert(channel.id.clone(), channel.clone());
        Ok(channel)
    }

    /// The channel `id` if it exists and has not expired.
    fn live(&self, id: &str) -> Option<Arc<Channel>> {
        let channel = self.inner.channels.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned()?;
        let now = Utc::now();
        if channel.is_expired(now) {
            self.expire_due(now);
            return None;
        }
        Some(channel)
    }

    /// The channel a sink POST is for: `404` when unknown, `401` when it has expired.
    fn for_sink(&self, id: &str) -> Result<Arc<Channel>, RelayError> {
        if let Some(channel) = self.live(id) {
            return Ok(channel);
        }
        if self.inner.expired.lock().unwrap_or_else(|e| e.into_inner()).contains_key(id) {
            return Err(RelayError::CredentialExpired);
        }
        Err(RelayError::ChannelNotFound)
    }

    fn remove(&self, channel: &Channel) {
        self.inner.channels.lock().unwrap_or_else(|e| e.into_inner()).remove(&channel.id);
        channel.end(Ended::Deleted);
    }

    /// Ends the channels that have expired by `now`, and forgets those expired long ago.
    fn expire_due(&self, now: DateTime<Utc>) {
        let due: Vec<Arc<Channel>> = {
            let mut channels = self.inner.channels.lock().unwrap_or_else(|e| e.into_inner());
            let ids: Vec<String> = channels.values().filter(|c| c.is_expired(now)).map(|c| c.id.clone()).collect();
            ids.iter().filter_map(|id| channels.remove(id)).collect()
        };
        let mut expired = self.inner.expired.lock().unwrap_or_else(|e| e.into_inner());
        expired.retain(|_, at| now - *at < EXPIRED_REMEMBERED);
        for channel in due {
            tracing::debug!(channel = channel.id, "relay channel expired");
            expired.insert(channel.id.clone(), channel.expires_at);
            channel.end(Ended::Expired);
        }
    }

    fn start_sweeper(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // expiry still happens on access
        };
        if self.inner.sweeping.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_INTERVAL);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                Relay { inner }.expire_due(Utc::now());
            }
        });
    }
}

/// Runs the relay standalone on `listener`, verifying device tokens with `camara-auth` as
/// `config.auth` says. When `config.public_base_url` is unset it becomes `http://<listener
/// address>` (fine for development; set it behind a proxy or TLS terminator).
pub async fn serve(mut config: RelayConfig, listener: TcpListener) -> Result<(), RelayError> {
    if config.public_base_url.is_none() {
        let addr = listener.local_addr()?;
        if addr.ip().is_unspecified() {
            tracing::warn!("relay public_base_url is unset and the listener is on {addr}: handed-out URLs won't work");
        }
        config.public_base_url = Some(format!("http://{addr}"));
    }
    let verifier =
        camara_auth::TokenVerifier::new(config.auth.clone()).map_err(|e| RelayError::Config(e.to_string()))?;
    if !verifier.is_configured() {
        return Err(RelayError::Config(camara_auth::AuthError::NotConfigured.to_string()));
    }
    if let Err(e) = verifier.preload().await {
        tracing::warn!("token verification is not ready yet (retried per request): {e}");
    }
    let authenticator = TokenVerifierAuthenticator::new(Arc::new(verifier), config.phone_number_claim.clone());
    let relay = Relay::new(config, Arc::new(authenticator))?;
    tracing::info!(sinks = relay.sink_url_prefix(), "notification relay listening on {}", listener.local_addr()?);
    relay.serve(listener, std::future::pending()).await
}
