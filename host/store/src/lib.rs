//! Durable state of the CAMARA WebRTC gateway, behind the [`Store`] trait.
//!
//! This crate owns the API-visible state that must outlive the process: registrations,
//! event subscriptions, the API-visible part of media sessions, the outbox of events not yet
//! routed and notifications not yet delivered to their sinks, and the dead letters of both. A
//! gateway killed with `kill -9` reopens its store and finds every committed write; the expiry queries let it re-arm its timers (registration,
//! subscription and sink-credential expiry) without keeping them anywhere else.
//!
//! It does not own HTTP, SIP or policy: it does not know who may see what (the gateway filters by
//! owner before answering a caller), which session statuses are final, or how and when a
//! notification is delivered. It stores and indexes records by the keys it is given.
//!
//! Three backends: [`MemoryStore`] (tests, and a gateway without a data directory),
//! [`RedbStore`] (an embedded, crash-safe file, the default) and [`RedisStore`] (shared by
//! several gateway nodes; crash-safe when its server syncs every write, see its docs). All pass
//! the same test suite (`conformance`).
//!
//! # Changes and their events commit together
//!
//! A write that causes CloudEvents takes them as `events` ([`NewEvent`]s, already serialised by
//! the gateway) and queues them in the outbox in the same transaction, returning them with their
//! ids ([`Committed`]): a crash between "the registration ended" and "its `registration-ends` is
//! queued" cannot happen. A write that is refused (not found, already exists, changed meanwhile)
//! queues nothing.
//!
//! # Compare-and-set, not closures, on the backend's side
//!
//! Sessions carry a `revision` that the store sets on every write; [`Store::replace_session`]
//! writes only over the revision it was given. Subscriptions, rarely written, are compared whole
//! ([`Store::replace_subscription`]). Read-modify-writes ([`Store::update_session`],
//! [`Store::update_subscription`]) are provided methods on top that read again when they lose a
//! race, so a backend implements a compare-and-set (a Lua script in Redis), never a closure that
//! would have to run inside its transaction.
//!
//! # Async, with local backends on blocking threads
//!
//! [`Store`] is async, so a networked backend ([`RedisStore`]) waits for its server without
//! holding a runtime thread. The embedded backends implement the synchronous [`BlockingStore`]
//! instead (every call is one short transaction on local data), and a blanket implementation
//! makes them a [`Store`]: redb runs on tokio's blocking threads (it waits for its `fsync`),
//! memory runs inline. Every method is one self-contained operation; none hands out locks or
//! transactions.
//!
//! # Several nodes
//!
//! A shared backend keeps each node's outbox apart (a node delivers what it queued), records
//! which nodes said they are alive ([`Store::heartbeat`], [`Store::nodes`]), and hands a dead
//! node's outbox to the one survivor that claims it ([`Store::claim_takeover`],
//! [`Store::adopt_outbox`]). It does not decide which node holds a call or keeps a SIP binding:
//! the records name their node ([`MediaSession::node`], [`Registration::node`]), and the
//! gateway decides.

mod blocking;
mod memory;
mod outbox;
mod redb_store;
mod redis_store;
mod status;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use blocking::BlockingStore;
pub use memory::MemoryStore;
pub use outbox::{DeadLetter, NewEvent, NewNotification, PendingEvent, PendingNotification, Undelivered};
pub use redb_store::RedbStore;
pub use redis_store::{RedisConfig, RedisStore};
pub use status::SessionStatus;

/// A registration of a device (`RegSessionResponse`), unique per phone number and device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    pub id: String,
    pub device_id: String,
    pub phone_number: String,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// The gateway node that keeps the registration's SIP binding (`sip-account` mode), when
    /// several share the store; `None` in records written before nodes were named.
    #[serde(default)]
    pub node: Option<String>,
}

/// The token the gateway presents to a subscription's sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SinkCredential {
    pub access_token: String,
    pub expires_at: DateTime<Utc>,
}

/// An event subscription (CAMARA `Subscription`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: String,
    pub owner_phone_number: String,
    pub device_id: String,
    pub sink: String,
    pub sink_credential: Option<SinkCredential>,
    pub types: Vec<String>,
    /// The request's `config` object, kept as sent so that it is echoed back unchanged.
    pub config_json: serde_json::Value,
    pub starts_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Why a subscription ends on its own; the CAMARA `terminationReason` of its
/// `subscription-ends` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SubscriptionEnd {
    /// `SUBSCRIPTION_EXPIRED`: the subscription's own `expiresAt` is reached.
    Expired,
    /// `ACCESS_TOKEN_EXPIRED`: the sink credential expires first.
    AccessTokenExpired,
}

impl Subscription {
    /// When and why this subscription ends unless it is updated: the earlier of its expiry and
    /// its sink credential's expiry. On a tie the subscription expiry wins, as it ends the
    /// subscription whatever the credential.
    pub fn ends_at(&self) -> Option<(DateTime<Utc>, SubscriptionEnd)> {
        let own = self.expires_at.map(|t| (t, SubscriptionEnd::Expired));
        let credential = self.sink_credential.as_ref().map(|c| (c.expires_at, SubscriptionEnd::AccessTokenExpired));
        match (own, credential) {
            (Some(o), Some(c)) => Some(if c.0 < o.0 { c } else { o }),
            (o, c) => o.or(c),
        }
    }
}

/// A subscription that ends before the time asked about, with when and why.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpiringSubscription {
    pub subscription: Subscription,
    pub at: DateTime<Utc>,
    pub reason: SubscriptionEnd,
}

/// Which side placed the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    Outgoing,
    Incoming,
}

/// The API-visible state of a media session. The SIP dialog lives in the process, with a
/// snapshot here (`sip_dialog`): after a restart the gateway finds the sessions whose call was in
/// progress with [`Store::sessions_with_call`] and ends them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaSession {
    pub id: String,
    pub owner_phone_number: String,
    pub registration_id: String,
    pub device_id: String,
    pub direction: Direction,
    /// The SIP Call-ID while the call is in progress; indexed by [`Store::sessions_of_call`].
    /// Several sessions share one while an incoming call rings several devices (forking).
    pub sip_call_id: Option<String>,
    pub originator_address: String,
    pub originator_name: Option<String>,
    pub receiver_address: String,
    pub receiver_name: Option<String>,
    pub offer_sdp: String,
    pub answer_sdp: Option<String>,
    /// The SDP the gateway last offered on the SIP side (re-offered, changed, for hold/resume).
    #[serde(default)]
    pub sip_local_sdp: Option<String>,
    pub status: SessionStatus,
    /// `sequenceNumber` of the last session-status event.
    pub sequence: u32,
    /// What the SIP side needs to end the call after a restart (dialog identifiers, route set,
    /// remote target, CSeq), opaque to the store; set once the dialog is confirmed.
    #[serde(default)]
    pub sip_dialog: Option<serde_json::Value>,
    /// Set by `DELETE`: the SIP method that ends the call (BYE or CANCEL).
    pub local_hangup: Option<String>,
    /// The gateway node that holds the call (its SIP dialog and media), when several share the
    /// store; `None` in records written before nodes were named.
    #[serde(default)]
    pub node: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Set by the store on every write; [`Store::replace_session`] writes only over the
    /// revision it is given (compare-and-set).
    #[serde(default)]
    pub revision: u64,
}

/// A gateway node sharing the store, as [`Store::nodes`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub id: String,
    /// Where it said it is reachable (its internal base URL); `None` once its lease has run out
    /// without a new heartbeat: it is dead, and its work may be taken over.
    pub address: Option<String>,
}

/// A write committed with the events it caused: the events are in the outbox if and only if
/// the write is, so a crash between the two cannot lose an event or announce a change that was
/// not made.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed<T> {
    pub record: T,
    /// The events as queued, in the order given.
    pub events: Vec<PendingEvent>,
}

impl<T> Committed<T> {
    /// A write that queued no event.
    pub fn alone(record: T) -> Self {
        Committed { record, events: Vec::new() }
    }
}

/// How many times [`Store::update_session`] and [`Store::update_subscription`] read again after
/// losing a compare-and-set race.
const UPDATE_ATTEMPTS: usize = 64;

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The id, or a unique key (phone number + device, SIP Call-ID), is already taken.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The record to update does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The record changed since it was read: its revision is not the one the write expected.
    #[error("changed meanwhile: {0}")]
    Conflict(String),
    /// The storage failed (I/O, file locked by another process, ...).
    #[error("storage backend: {0}")]
    Backend(String),
    /// Stored data cannot be read back.
    #[error("corrupt store: {0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The gateway's durable state.
///
/// Each method is atomic: it sees and leaves every record and index consistent, and a write is
/// durable when it returns (for a durable backend). Lookups take the keys the gateway has
/// already checked the caller may use; nothing here filters by ownership.
///
/// Times are compared exactly; "before `t`" means strictly earlier than `t`. Lists come back in
/// a stable order, stated per method, the same for every backend.
///
/// Read-modify-writes ([`Store::update_subscription`], [`Store::update_session`]) are provided
/// methods over a compare-and-set ([`Store::replace_subscription`], [`Store::replace_session`]):
/// a backend never runs a caller's closure inside its own transaction.
#[async_trait::async_trait]
pub trait Store: Send + Sync {
    // --- registrations -------------------------------------------------------------------

    /// Adds a registration. `AlreadyExists` if its id is taken or its phone number already
    /// registered the same device.
    async fn insert_registration(&self, registration: Registration) -> Result<()>;

    async fn registration(&self, id: &str) -> Result<Option<Registration>>;

    /// The registrations of `phone_number`, of one device if `device_id` is given; ordered by
    /// device id.
    async fn registrations_of(&self, phone_number: &str, device_id: Option<&str>) -> Result<Vec<Registration>>;

    /// Sets a registration's expiry and returns the updated record; `NotFound` if it is gone.
    async fn update_registration_expiry(&self, id: &str, expires_at: DateTime<Utc>) -> Result<Registration>;

    /// Sets the node that keeps a registration's SIP binding if it is still `expected` (a
    /// compare-and-set, for the one node that takes over a dead node's bindings) and returns the
    /// updated record. `NotFound` if it is gone, `Conflict` if another node is set.
    async fn move_registration(&self, id: &str, expected: Option<&str>, node: &str) -> Result<Registration>;

    /// Removes a registration and returns it with `events` queued, `None` (and nothing queued)
    /// if there was none.
    async fn remove_registration(&self, id: &str, events: Vec<NewEvent>) -> Result<Option<Committed<Registration>>>;

    /// The registrations whose `expires_at` is before `t`, earliest first (then by id).
    async fn registrations_expiring_before(&self, t: DateTime<Utc>) -> Result<Vec<Registration>>;

    // --- subscriptions -------------------------------------------------------------------

    /// Adds a subscription; `AlreadyExists` if its id is taken.
    async fn insert_subscription(&self, subscription: Subscription) -> Result<()>;

    async fn subscription(&self, id: &str) -> Result<Option<Subscription>>;

    /// The subscriptions of `owner_phone_number`, ordered by `starts_at`, then id.
    async fn subscriptions_of(&self, owner_phone_number: &str) -> Result<Vec<Subscription>>;

    /// Writes `new` over the stored subscription of its id if the stored one is still
    /// `expected` (compare-and-set on the whole record) and returns it. `NotFound` if it is
    /// gone, `Conflict` if it changed since it was read; each changes nothing.
    async fn replace_subscription(&self, expected: &Subscription, new: Subscription) -> Result<Subscription>;

    /// Applies `change` to a subscription (typically a new sink credential and/or expiry, and
    /// the echoed `config_json`) and returns the updated record; `NotFound` if it is gone. The id
    /// cannot be changed. Read, change, [`Store::replace_subscription`], read again on a
    /// conflict: `change` may run more than once, each time on a fresh copy.
    async fn update_subscription(
        &self,
        id: &str,
        change: &mut (dyn for<'s> FnMut(&'s mut Subscription) + Send),
    ) -> Result<Subscription> {
        for _ in 0..UPDATE_ATTEMPTS {
            let stored =
                self.subscription(id).await?.ok_or_else(|| StoreError::NotFound(format!("subscription {id}")))?;
            let mut updated = stored.clone();
            change(&mut updated);
            updated.id.clone_from(&stored.id);
            if updated == stored {
                return Ok(stored);
            }
            match self.replace_subscription(&stored, updated).await {
                Err(StoreError::Conflict(_)) => tokio::task::yield_now().await,
                other => return other,
            }
        }
        Err(StoreError::Conflict(format!("subscription {id}: still changing after {UPDATE_ATTEMPTS} attempts")))
    }

    /// Removes a subscription and returns it with `events` queued, `None` (and nothing queued)
    /// if there was none. Its pending notifications stay in the outbox (a `subscription-ends`
    /// event may be among them).
    async fn remove_subscription(&self, id: &str, events: Vec<NewEvent>) -> Result<Option<Committed<Subscription>>>;

    /// The subscriptions that end before `t`, by their own expiry or their sink credential's,
    /// whichever comes first ([`Subscription::ends_at`]); earliest first, then by id.
    async fn subscriptions_expiring_before(&self, t: DateTime<Utc>) -> Result<Vec<ExpiringSubscription>>;

    // --- media sessions ------------------------------------------------------------------

    /// Adds a session at revision 1 with `events` queued; `AlreadyExists` (and nothing queued)
    /// if its id is taken.
    async fn insert_session(&self, session: MediaSession, events: Vec<NewEvent>) -> Result<Committed<MediaSession>>;

    async fn session(&self, id: &str) -> Result<Option<MediaSession>>;

    /// The sessions whose `sip_call_id` is `call_id`, ordered by `created_at`, then id: one for
    /// an outgoing or answered call, one per device while an incoming call rings several.
    async fn sessions_of_call(&self, call_id: &str) -> Result<Vec<MediaSession>>;

    /// The sessions that still have a SIP call (`sip_call_id` set), ordered by `created_at`,
    /// then id. After a restart those calls are lost, and the gateway ends them.
    async fn sessions_with_call(&self) -> Result<Vec<MediaSession>>;

    /// Writes `session` over the stored session of its id, with `events` queued, if the stored
    /// revision is `session.revision` (compare-and-set); returns the record as written, at the
    /// next revision. `NotFound` if it is gone, `Conflict` if it changed since it was read; each
    /// changes nothing.
    async fn replace_session(&self, session: MediaSession, events: Vec<NewEvent>) -> Result<Committed<MediaSession>>;

    /// Applies `change` to a session and queues the events it returns, in one write, and
    /// returns the updated record: read, change, [`Store::replace_session`], read again on a
    /// conflict. So `change` may run more than once, each time on a fresh copy; it must not
    /// have effects of its own. A `change` that changes nothing and returns no event writes
    /// nothing. `NotFound` if the session is gone.
    async fn update_session(
        &self,
        id: &str,
        change: &mut (dyn for<'s> FnMut(&'s mut MediaSession) -> Vec<NewEvent> + Send),
    ) -> Result<Committed<MediaSession>> {
        for _ in 0..UPDATE_ATTEMPTS {
            let stored = self.session(id).await?.ok_or_else(|| StoreError::NotFound(format!("session {id}")))?;
            let Some((updated, events)) = changed_copy(&stored, change) else {
                return Ok(Committed::alone(stored));
            };
            match self.replace_session(updated, events).await {
                // Another writer won the race: read again, after letting it finish.
                Err(StoreError::Conflict(_)) => tokio::task::yield_now().await,
                other => return other,
            }
        }
        Err(StoreError::Conflict(format!("session {id}: still changing after {UPDATE_ATTEMPTS} attempts")))
    }

    /// Removes a session and returns it, `None` if there was none.
    async fn remove_session(&self, id: &str) -> Result<Option<MediaSession>>;

    // --- nodes sharing the store --------------------------------------------------------
    //
    // A backend that one process holds (memory, redb) has one node, which is always alive: it
    // keeps the defaults below. A shared one knows which node it is (its configuration) and
    // keeps each node's outbox apart, so that a node delivers what it queued and a survivor
    // adopts what a dead node left.

    /// Says this node is alive for `ttl` from now, reachable at `address`.
    async fn heartbeat(&self, _address: &str, _ttl: std::time::Duration) -> Result<()> {
        Ok(())
    }

    /// The nodes that said they were alive and have not been forgotten, by id.
    async fn nodes(&self) -> Result<Vec<Node>> {
        Ok(Vec::new())
    }

    /// Claims the takeover of dead node `node` for `ttl`: `true` for the one node that gets it
    /// while the claim holds.
    async fn claim_takeover(&self, _node: &str, _ttl: std::time::Duration) -> Result<bool> {
        Ok(false)
    }

    /// Moves the outbox entries (events and notifications) of node `node` to this node,
    /// atomically, and returns them in id order.
    async fn adopt_outbox(&self, _node: &str) -> Result<Vec<Undelivered>> {
        Ok(Vec::new())
    }

    /// Forgets dead node `node`, once its work is taken over; nothing if it is alive again.
    async fn forget_node(&self, _node: &str) -> Result<()> {
        Ok(())
    }

    // --- notification outbox -------------------------------------------------------------

    /// Puts a notification in the outbox with `attempt` 0 and returns its id.
    async fn enqueue_notification(&self, notification: NewNotification) -> Result<u64>;

    /// Up to `limit` pending notifications of this node (queued or adopted by it) in id
    /// (enqueue) order, due or not: the deliverer keeps the order per sink and computes its next
    /// wake-up from `not_before`.
    async fn pending_notifications(&self, limit: usize) -> Result<Vec<PendingNotification>>;

    /// Records a failed attempt: sets `attempt` and `not_before`; `NotFound` if it is gone.
    async fn reschedule_notification(&self, id: u64, attempt: u32, not_before: DateTime<Utc>) -> Result<()>;

    /// Removes a notification (delivered) and returns it, `None` if there was none.
    async fn remove_notification(&self, id: u64) -> Result<Option<PendingNotification>>;

    // --- events before routing ---------------------------------------------------------------

    /// Puts an event in the outbox with `attempt` 0 and returns its id (from the notifications'
    /// sequence).
    async fn enqueue_event(&self, event: NewEvent) -> Result<u64>;

    /// Up to `limit` events of this node not yet routed, in id order.
    async fn pending_events(&self, limit: usize) -> Result<Vec<PendingEvent>>;

    /// Records a failed routing attempt; `NotFound` if the event is gone.
    async fn reschedule_event(&self, id: u64, attempt: u32, not_before: DateTime<Utc>) -> Result<()>;

    /// Replaces a routed event by its notifications, atomically, and returns their ids in the
    /// order given. `NotFound` (and nothing enqueued) if the event is gone: it was routed already.
    async fn route_event(&self, id: u64, notifications: Vec<NewNotification>) -> Result<Vec<u64>>;

    // --- dead letters ------------------------------------------------------------------------

    /// Moves the outbox entry `id` (notification or event) to the dead letters, atomically, and
    /// returns the dead letter; `NotFound` if the outbox has no such entry.
    async fn dead_letter(&self, id: u64, last_error: &str, at: DateTime<Utc>) -> Result<DeadLetter>;

    /// Up to `limit` dead letters in id order.
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>>;

    /// Puts a dead letter's entry back in the outbox, atomically: a new id, `attempt` 0,
    /// `not_before` and `first_due` set to `not_before`. Returns the new entry, `None` if there
    /// was no such dead letter.
    async fn replay_dead_letter(&self, id: u64, not_before: DateTime<Utc>) -> Result<Option<Undelivered>>;

    /// Removes a dead letter for good and returns it, `None` if there was none.
    async fn remove_dead_letter(&self, id: u64) -> Result<Option<DeadLetter>>;
}

/// `stored` with `change` applied (the id and the revision kept), and the events `change`
/// returned; `None` when it changes nothing and returns no event, which writes nothing.
fn changed_copy(
    stored: &MediaSession,
    change: &mut (dyn for<'s> FnMut(&'s mut MediaSession) -> Vec<NewEvent> + Send),
) -> Option<(MediaSession, Vec<NewEvent>)> {
    let mut updated = stored.clone();
    let events = change(&mut updated);
    updated.id.clone_from(&stored.id);
    updated.revision = stored.revision;
    (updated != *stored || !events.is_empty()).then_some((updated, events))
}

/// Orders subscriptions as [`Store::subscriptions_of`] promises.
fn sort_subscriptions(subscriptions: &mut [Subscription]) {
    subscriptions.sort_by(|a, b| a.starts_at.cmp(&b.starts_at).then_with(|| a.id.cmp(&b.id)));
}

/// Orders sessions as [`Store::sessions_with_call`] promises.
fn sort_sessions(sessions: &mut [MediaSession]) {
    sessions.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
}

/// The subscriptions among `subscriptions` that end before `t`, ordered as
/// [`Store::subscriptions_expiring_before`] promises.
fn expiring_subscriptions(
    subscriptions: impl IntoIterator<Item = Subscription>,
    t: DateTime<Utc>,
) -> Vec<ExpiringSubscription> {
    let mut expiring: Vec<_> = subscriptions
        .into_iter()
        .filter_map(|subscription| {
            let (at, reason) = subscription.ends_at().filter(|(at, _)| *at < t)?;
            Some(ExpiringSubscription { subscription, at, reason })
        })
        .collect();
    expiring.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.subscription.id.cmp(&b.subscription.id)));
    expiring
}

#[cfg(test)]
mod tests;
