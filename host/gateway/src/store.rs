//! The API-visible state: registrations, subscriptions and media sessions.
//!
//! In memory for now; every access goes through these methods so that a durable backend can take
//! their place behind a trait without touching the API handlers.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use crate::model::{SdpDescriptor, SinkCredential, SubscriptionConfig};

#[derive(Debug, Clone)]
pub struct Registration {
    pub id: String,
    pub device_id: String,
    pub phone_number: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Subscription {
    pub id: String,
    pub owner_phone_number: String,
    pub sink: String,
    pub sink_credential: Option<SinkCredential>,
    pub types: Vec<String>,
    pub config: SubscriptionConfig,
    pub starts_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Which side placed the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Outgoing,
    Incoming,
}

#[derive(Debug, Clone)]
pub struct MediaSession {
    pub id: String,
    pub owner_phone_number: String,
    pub registration_id: String,
    pub device_id: String,
    pub direction: Direction,
    pub sip_call_id: Option<String>,
    pub originator_address: String,
    pub originator_name: Option<String>,
    pub receiver_address: String,
    pub receiver_name: Option<String>,
    pub offer: SdpDescriptor,
    pub answer: Option<SdpDescriptor>,
    pub status: String,
    /// `sequenceNumber` of the last session-status event.
    pub sequence: u32,
    /// Set by `DELETE`: the SIP method that ends the call (BYE or CANCEL).
    pub local_hangup: Option<&'static str>,
}

/// Statuses after which a session changes no more.
pub fn is_final_status(status: &str) -> bool {
    matches!(
        status,
        "Terminated" | "SessionCancelled" | "Declined" | "Failed" | "NoAnswer" | "NotReachable" | "Busy"
    )
}

#[derive(Default)]
struct Tables {
    registrations: HashMap<String, Registration>,
    subscriptions: HashMap<String, Subscription>,
    sessions: HashMap<String, MediaSession>,
    session_by_call_id: HashMap<String, String>,
}

#[derive(Default)]
pub struct Store {
    tables: Mutex<Tables>,
}

impl Store {
    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Inserts unless the subscriber already registered this device.
    pub fn insert_registration(&self, registration: Registration) -> Result<(), Registration> {
        let mut t = self.tables();
        if let Some(existing) = t
            .registrations
            .values()
            .find(|r| r.device_id == registration.device_id && r.phone_number == registration.phone_number)
        {
            return Err(existing.clone());
        }
        t.registrations.insert(registration.id.clone(), registration);
        Ok(())
    }

    /// The registration `id` if `owner` owns it.
    pub fn registration(&self, id: &str, owner: &str) -> Option<Registration> {
        self.tables().registrations.get(id).filter(|r| r.phone_number == owner).cloned()
    }

    /// Registrations of `owner`, on `device_id` when given, oldest first.
    pub fn registrations_of(&self, owner: &str, device_id: Option<&str>) -> Vec<Registration> {
        let mut found: Vec<_> = self
            .tables()
            .registrations
            .values()
            .filter(|r| r.phone_number == owner && device_id.is_none_or(|d| r.device_id == d))
            .cloned()
            .collect();
        found.sort_by(|a, b| a.expires_at.cmp(&b.expires_at).then_with(|| a.id.cmp(&b.id)));
        found
    }

    pub fn update_registration<R>(&self, id: &str, owner: &str, change: impl FnOnce(&mut Registration) -> R) -> Option<R> {
        self.tables().registrations.get_mut(id).filter(|r| r.phone_number == owner).map(change)
    }

    pub fn update_subscription<R>(&self, id: &str, owner: &str, change: impl FnOnce(&mut Subscription) -> R) -> Option<R> {
        self.tables().subscriptions.get_mut(id).filter(|s| s.owner_phone_number == owner).map(change)
    }

    pub fn remove_registration(&self, id: &str, owner: &str) -> Option<Registration> {
        let mut t = self.tables();
        if t.registrations.get(id).is_some_and(|r| r.phone_number == owner) {
            t.registrations.remove(id)
        } else {
            None
        }
    }

    pub fn insert_subscription(&self, subscription: Subscription) {
        self.tables().subscriptions.insert(subscription.id.clone(), subscription);
    }

    pub fn subscription(&self, id: &str, owner: &str) -> Option<Subscription> {
        self.tables().subscriptions.get(id).filter(|s| s.owner_phone_number == owner).cloned()
    }

    pub fn remove_subscription(&self, id: &str, owner: &str) -> Option<Subscription> {
        let mut t = self.tables();
        if t.subscriptions.get(id).is_some_and(|s| s.owner_phone_number == owner) {
            t.subscriptions.remove(id)
        } else {
            None
        }
    }

    /// Subscriptions of `owner` (every subscriber when `None`).
    pub fn subscriptions_of(&self, owner: Option<&str>) -> Vec<Subscription> {
        let mut subs: Vec<_> = self
            .tables()
            .subscriptions
            .values()
            .filter(|s| owner.is_none_or(|o| s.owner_phone_number == o))
            .cloned()
            .collect();
        subs.sort_by(|a, b| a.starts_at.cmp(&b.starts_at).then_with(|| a.id.cmp(&b.id)));
        subs
    }

    pub fn insert_session(&self, session: MediaSession) {
        let mut t = self.tables();
        if let Some(call_id) = &session.sip_call_id {
            t.session_by_call_id.insert(call_id.clone(), session.id.clone());
        }
        t.sessions.insert(session.id.clone(), session);
    }

    pub fn session(&self, id: &str, owner: &str) -> Option<MediaSession> {
        self.tables().sessions.get(id).filter(|s| s.owner_phone_number == owner).cloned()
    }

    /// Applies `change` to the session of SIP call `call_id` and returns the result.
    pub fn update_session_by_call_id<R>(&self, call_id: &str, change: impl FnOnce(&mut MediaSession) -> R) -> Option<R> {
        let mut t = self.tables();
        let id = t.session_by_call_id.get(call_id)?.clone();
        t.sessions.get_mut(&id).map(change)
    }

    pub fn update_session<R>(&self, id: &str, owner: &str, change: impl FnOnce(&mut MediaSession) -> R) -> Option<R> {
        self.tables().sessions.get_mut(id).filter(|s| s.owner_phone_number == owner).map(change)
    }

    /// Forgets the SIP side of a call that is over.
    pub fn forget_call(&self, call_id: &str) {
        self.tables().session_by_call_id.remove(call_id);
    }
}
