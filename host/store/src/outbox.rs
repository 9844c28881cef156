//! The records of the notification outbox: events waiting to be routed, notifications waiting
//! to be delivered, and the dead letters of either.
//!
//! An event is stored before the routing plugin sees it, so that a routing failure is retried
//! like a delivery failure; routing then replaces it with its notifications in one atomic step
//! ([`Store::route_event`](crate::Store::route_event)). Events and notifications draw their ids
//! from one sequence, so an id names one entry of the outbox or of the dead letters, whichever
//! holds it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A notification to put in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotification {
    pub subscription_id: String,
    pub sink: String,
    pub headers: Vec<(String, String)>,
    pub payload: String,
    /// Not to be sent before this time (usually now).
    pub not_before: DateTime<Utc>,
}

/// A notification in the outbox, not yet delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingNotification {
    /// Assigned by the store, increasing in enqueue order and never reused.
    pub id: u64,
    pub subscription_id: String,
    pub sink: String,
    pub headers: Vec<(String, String)>,
    pub payload: String,
    /// Delivery attempts made so far (0 when enqueued).
    pub attempt: u32,
    pub not_before: DateTime<Utc>,
    /// The `not_before` it was enqueued with: the deliverer's retry horizon counts from here. An
    /// entry written by an older build, without it, gets a full horizon from when it is read.
    #[serde(default = "Utc::now")]
    pub first_due: DateTime<Utc>,
}

/// An event to put in the outbox before it is routed. The payload is the gateway's own
/// serialisation (the event and the subscriptions it may go to); the store does not read it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub payload: String,
    pub not_before: DateTime<Utc>,
}

/// An event in the outbox, not yet routed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingEvent {
    /// From the same sequence as notification ids.
    pub id: u64,
    pub payload: String,
    /// Routing attempts made so far.
    pub attempt: u32,
    pub not_before: DateTime<Utc>,
    pub first_due: DateTime<Utc>,
}

/// What an outbox entry is, wherever it waits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Undelivered {
    Notification(PendingNotification),
    Event(PendingEvent),
}

impl Undelivered {
    pub fn id(&self) -> u64 {
        match self {
            Undelivered::Notification(n) => n.id,
            Undelivered::Event(e) => e.id,
        }
    }
}

/// An entry that exhausted its delivery schedule (or was refused for good), kept until an
/// operator replays or purges it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The entry as it was last in the outbox; its id is the dead letter's id.
    pub entry: Undelivered,
    /// Why the last attempt failed.
    pub last_error: String,
    pub dead_at: DateTime<Utc>,
}

impl DeadLetter {
    pub fn id(&self) -> u64 {
        self.entry.id()
    }
}

impl NewNotification {
    /// As it is first stored, under `id`.
    pub fn pending(self, id: u64) -> PendingNotification {
        PendingNotification {
            id,
            subscription_id: self.subscription_id,
            sink: self.sink,
            headers: self.headers,
            payload: self.payload,
            attempt: 0,
            not_before: self.not_before,
            first_due: self.not_before,
        }
    }
}

impl NewEvent {
    /// As it is first stored, under `id`.
    pub fn pending(self, id: u64) -> PendingEvent {
        PendingEvent { id, payload: self.payload, attempt: 0, not_before: self.not_before, first_due: self.not_before }
    }
}

/// What a replayed dead letter puts back in the outbox.
pub(crate) enum Requeued {
    Notification(NewNotification),
    Event(NewEvent),
}

impl Undelivered {
    /// This entry as new, due at `not_before`.
    pub(crate) fn requeued(self, not_before: DateTime<Utc>) -> Requeued {
        match self {
            Undelivered::Notification(n) => Requeued::Notification(NewNotification {
                subscription_id: n.subscription_id,
                sink: n.sink,
                headers: n.headers,
                payload: n.payload,
                not_before,
            }),
            Undelivered::Event(e) => Requeued::Event(NewEvent { payload: e.payload, not_before }),
        }
    }
}
