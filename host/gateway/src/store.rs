//! The API-visible state, over a [`camara_store::Store`] backend (redb on disk, or memory).
//!
//! Adds what the backend deliberately leaves out: a caller only ever reaches their own records,
//! and storage failures become CAMARA errors.

use std::sync::Arc;

pub use camara_store::{Committed, Direction, MediaSession, Registration, SessionStatus, SinkCredential, Subscription};
use camara_store::{NewEvent, Store as Backend, StoreError};

use crate::error::ApiError;

/// A storage failure as the API answers it (logged; no internals in the body).
pub(crate) fn internal(e: StoreError) -> ApiError {
    tracing::error!("storage failed: {e}");
    ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "The gateway could not access its storage")
}

/// The node of a gateway that names none, and of the records written before nodes were named.
pub const DEFAULT_NODE: &str = "node-1";

/// Whether a record naming `node` (a session's or a registration's; `None` in records older than
/// node names) is held by node `id`.
pub fn held_by(node: Option<&str>, id: &str) -> bool {
    node.unwrap_or(DEFAULT_NODE) == id
}

#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    /// This gateway's `[storage] node_id`.
    node: Arc<str>,
}

impl Store {
    pub fn new(backend: Arc<dyn Backend>, node: &str) -> Self {
        Store { backend, node: node.into() }
    }

    /// This gateway's node, for the sessions whose call it holds.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The sessions whose call is in progress on this node (`sip_call_id` set), oldest first. The
    /// others belong to other nodes sharing the store: this one has neither their dialogs nor
    /// their media.
    pub async fn calls_here(&self) -> Result<Vec<MediaSession>, StoreError> {
        let mut sessions = self.backend.sessions_with_call().await?;
        sessions.retain(|s| held_by(s.node.as_deref(), &self.node));
        Ok(sessions)
    }

    /// The backend itself, for the gateway's own sweeps (expiry, outbox).
    pub fn backend(&self) -> &dyn Backend {
        &*self.backend
    }

    /// `Err(None)`-free insert: an existing device + phone number registration is a conflict.
    pub async fn insert_registration(&self, registration: Registration) -> Result<(), ApiError> {
        self.backend.insert_registration(registration).await.map_err(|e| match e {
            StoreError::AlreadyExists(_) => ApiError::conflict(
                "ALREADY_EXISTS",
                "An active registration already exists for this deviceId and phone number",
            ),
            e => internal(e),
        })
    }

    pub async fn registration(&self, id: &str, owner: &str) -> Result<Option<Registration>, ApiError> {
        Ok(self.backend.registration(id).await.map_err(internal)?.filter(|r| r.phone_number == owner))
    }

    pub async fn registrations_of(&self, owner: &str, device_id: Option<&str>) -> Result<Vec<Registration>, ApiError> {
        self.backend.registrations_of(owner, device_id).await.map_err(internal)
    }

    pub async fn update_registration_expiry(
        &self,
        id: &str,
        owner: &str,
        expires_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<Registration>, ApiError> {
        if self.registration(id, owner).await?.is_none() {
            return Ok(None);
        }
        self.backend.update_registration_expiry(id, expires_at).await.map(Some).map_err(internal)
    }

    pub async fn remove_registration(&self, id: &str, owner: &str) -> Result<Option<Registration>, ApiError> {
        if self.registration(id, owner).await?.is_none() {
            return Ok(None);
        }
        Ok(self.backend.remove_registration(id, Vec::new()).await.map_err(internal)?.map(|c| c.record))
    }

    pub async fn insert_subscription(&self, subscription: Subscription) -> Result<(), ApiError> {
        self.backend.insert_subscription(subscription).await.map_err(internal)
    }

    pub async fn subscription(&self, id: &str, owner: &str) -> Result<Option<Subscription>, ApiError> {
        Ok(self.backend.subscription(id).await.map_err(internal)?.filter(|s| s.owner_phone_number == owner))
    }

    pub async fn subscriptions_of(&self, owner: &str) -> Result<Vec<Subscription>, ApiError> {
        self.backend.subscriptions_of(owner).await.map_err(internal)
    }

    pub async fn update_subscription(
        &self,
        id: &str,
        owner: &str,
        change: &mut (dyn FnMut(&mut Subscription) + Send),
    ) -> Result<Option<Subscription>, ApiError> {
        if self.subscription(id, owner).await?.is_none() {
            return Ok(None);
        }
        self.backend.update_subscription(id, change).await.map(Some).map_err(internal)
    }

    pub async fn insert_session(
        &self,
        session: MediaSession,
        events: Vec<NewEvent>,
    ) -> Result<Committed<MediaSession>, ApiError> {
        self.backend.insert_session(session, events).await.map_err(internal)
    }

    pub async fn session(&self, id: &str, owner: &str) -> Result<Option<MediaSession>, ApiError> {
        Ok(self.backend.session(id).await.map_err(internal)?.filter(|s| s.owner_phone_number == owner))
    }

    /// A session whoever owns it: for the gateway's own events, never for an API caller.
    pub async fn session_by_id(&self, id: &str) -> Result<Option<MediaSession>, ApiError> {
        self.backend.session(id).await.map_err(internal)
    }

    pub async fn sessions_of_call(&self, call_id: &str) -> Result<Vec<MediaSession>, ApiError> {
        self.backend.sessions_of_call(call_id).await.map_err(internal)
    }

    /// Changes a session without an event.
    pub async fn update_session(
        &self,
        id: &str,
        mut change: impl FnMut(&mut MediaSession) + Send,
    ) -> Result<MediaSession, ApiError> {
        let mut quiet = |s: &mut MediaSession| {
            change(s);
            Vec::new()
        };
        Ok(self.backend.update_session(id, &mut quiet).await.map_err(internal)?.record)
    }

    /// Changes a session and queues the events `change` returns, in one write. `change` may run
    /// more than once (see [`camara_store::Store::update_session`]).
    pub async fn update_session_with_events(
        &self,
        id: &str,
        change: &mut (dyn FnMut(&mut MediaSession) -> Vec<NewEvent> + Send),
    ) -> Result<Committed<MediaSession>, ApiError> {
        self.backend.update_session(id, change).await.map_err(internal)
    }
}
