//! The in-memory backend: for tests, and for a gateway run without a data directory (which
//! then forgets everything on restart).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};

use crate::BlockingStore;
use crate::outbox::Requeued;
use crate::{
    Committed, DeadLetter, ExpiringSubscription, MediaSession, NewEvent, NewNotification, PendingEvent,
    PendingNotification, Registration, Result, StoreError, Subscription, Undelivered,
};

/// Everything in maps behind one lock, which makes every method atomic. Queries scan: fine for
/// the few thousand records of a gateway that has no data directory. Clones share the tables.
#[derive(Default, Clone)]
pub struct MemoryStore {
    tables: Arc<Mutex<Tables>>,
}

#[derive(Default)]
struct Tables {
    registrations: HashMap<String, Registration>,
    subscriptions: HashMap<String, Subscription>,
    sessions: HashMap<String, MediaSession>,
    /// Session ids by Call-ID.
    sessions_by_call_id: HashMap<String, BTreeSet<String>>,
    /// Ordered by id, which is the delivery order.
    notifications: BTreeMap<u64, PendingNotification>,
    events: BTreeMap<u64, PendingEvent>,
    dead_letters: BTreeMap<u64, DeadLetter>,
    /// The last id handed out to a notification or an event; ids are never reused.
    last_notification_id: u64,
}

impl Tables {
    fn unindex_call(&mut self, call_id: &str, session_id: &str) {
        if let Some(ids) = self.sessions_by_call_id.get_mut(call_id) {
            ids.remove(session_id);
            if ids.is_empty() {
                self.sessions_by_call_id.remove(call_id);
            }
        }
    }

    fn next_id(&mut self) -> u64 {
        self.last_notification_id += 1;
        self.last_notification_id
    }

    fn push_notification(&mut self, n: NewNotification) -> u64 {
        let id = self.next_id();
        self.notifications.insert(id, n.pending(id));
        id
    }

    fn push_event(&mut self, e: NewEvent) -> u64 {
        let id = self.next_id();
        self.events.insert(id, e.pending(id));
        id
    }

    /// Queues `events` and returns them with their ids.
    fn push_events(&mut self, events: Vec<NewEvent>) -> Vec<PendingEvent> {
        events
            .into_iter()
            .map(|e| {
                let id = self.push_event(e);
                self.events[&id].clone()
            })
            .collect()
    }

    /// [`crate::Store::replace_session`] under the lock.
    fn replace_session(&mut self, mut updated: MediaSession, events: Vec<NewEvent>) -> Result<Committed<MediaSession>> {
        let id = updated.id.clone();
        let stored = self.sessions.get(&id).ok_or_else(|| StoreError::NotFound(format!("session {id}")))?;
        if stored.revision != updated.revision {
            return Err(StoreError::Conflict(format!("session {id} is at revision {}", stored.revision)));
        }
        if updated.sip_call_id != stored.sip_call_id {
            if let Some(old) = stored.sip_call_id.clone() {
                self.unindex_call(&old, &id);
            }
            if let Some(new) = &updated.sip_call_id {
                self.sessions_by_call_id.entry(new.clone()).or_default().insert(id.clone());
            }
        }
        updated.revision += 1;
        self.sessions.insert(id, updated.clone());
        Ok(Committed { record: updated, events: self.push_events(events) })
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn tables(&self) -> MutexGuard<'_, Tables> {
        // Writes are made whole under the lock, so a panic while it was held left consistent data
        // behind: keep serving it.
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl BlockingStore for MemoryStore {
    const OFFLOAD: bool = false;

    fn insert_registration(&self, registration: Registration) -> Result<()> {
        let mut t = self.tables();
        if t.registrations.contains_key(&registration.id) {
            return Err(StoreError::AlreadyExists(format!("registration {}", registration.id)));
        }
        if t.registrations
            .values()
            .any(|r| r.phone_number == registration.phone_number && r.device_id == registration.device_id)
        {
            return Err(StoreError::AlreadyExists(format!("registration of device {}", registration.device_id)));
        }
        t.registrations.insert(registration.id.clone(), registration);
        Ok(())
    }

    fn registration(&self, id: &str) -> Result<Option<Registration>> {
        Ok(self.tables().registrations.get(id).cloned())
    }

    fn registrations_of(&self, phone_number: &str, device_id: Option<&str>) -> Result<Vec<Registration>> {
        let mut found: Vec<_> = self
            .tables()
            .registrations
            .values()
            .filter(|r| r.phone_number == phone_number && device_id.is_none_or(|d| r.device_id == d))
            .cloned()
            .collect();
        found.sort_by(|a, b| a.device_id.cmp(&b.device_id));
        Ok(found)
    }

    fn update_registration_expiry(&self, id: &str, expires_at: DateTime<Utc>) -> Result<Registration> {
        let mut t = self.tables();
        let registration =
            t.registrations.get_mut(id).ok_or_else(|| StoreError::NotFound(format!("registration {id}")))?;
        registration.expires_at = expires_at;
        Ok(registration.clone())
    }

    fn move_registration(&self, id: &str, expected: Option<&str>, node: &str) -> Result<Registration> {
        let mut t = self.tables();
        let registration =
            t.registrations.get_mut(id).ok_or_else(|| StoreError::NotFound(format!("registration {id}")))?;
        if registration.node.as_deref() != expected {
            return Err(StoreError::Conflict(format!("registration {id} is kept by another node")));
        }
        registration.node = Some(node.to_owned());
        Ok(registration.clone())
    }

    fn remove_registration(&self, id: &str, events: Vec<NewEvent>) -> Result<Option<Committed<Registration>>> {
        let mut t = self.tables();
        Ok(t.registrations.remove(id).map(|record| Committed { record, events: t.push_events(events) }))
    }

    fn registrations_expiring_before(&self, t: DateTime<Utc>) -> Result<Vec<Registration>> {
        let mut found: Vec<_> = self.tables().registrations.values().filter(|r| r.expires_at < t).cloned().collect();
        found.sort_by(|a, b| a.expires_at.cmp(&b.expires_at).then_with(|| a.id.cmp(&b.id)));
        Ok(found)
    }

    fn insert_subscription(&self, subscription: Subscription) -> Result<()> {
        let mut t = self.tables();
        if t.subscriptions.contains_key(&subscription.id) {
            return Err(StoreError::AlreadyExists(format!("subscription {}", subscription.id)));
        }
        t.subscriptions.insert(subscription.id.clone(), subscription);
        Ok(())
    }

    fn subscription(&self, id: &str) -> Result<Option<Subscription>> {
        Ok(self.tables().subscriptions.get(id).cloned())
    }

    fn subscriptions_of(&self, owner_phone_number: &str) -> Result<Vec<Subscription>> {
        let mut found: Vec<_> = self
            .tables()
            .subscriptions
            .values()
            .filter(|s| s.owner_phone_number == owner_phone_number)
            .cloned()
            .collect();
        crate::sort_subscriptions(&mut found);
        Ok(found)
    }

    fn replace_subscription(&self, expected: &Subscription, new: Subscription) -> Result<Subscription> {
        let mut t = self.tables();
        let id = &expected.id;
        let stored = t.subscriptions.get_mut(id).ok_or_else(|| StoreError::NotFound(format!("subscription {id}")))?;
        if stored != expected {
            return Err(StoreError::Conflict(format!("subscription {id} changed")));
        }
        *stored = Subscription { id: id.clone(), ..new };
        Ok(stored.clone())
    }

    fn remove_subscription(&self, id: &str, events: Vec<NewEvent>) -> Result<Option<Committed<Subscription>>> {
        let mut t = self.tables();
        Ok(t.subscriptions.remove(id).map(|record| Committed { record, events: t.push_events(events) }))
    }

    fn subscriptions_expiring_before(&self, t: DateTime<Utc>) -> Result<Vec<ExpiringSubscription>> {
        let all: Vec<_> = self.tables().subscriptions.values().cloned().collect();
        Ok(crate::expiring_subscriptions(all, t))
    }

    fn insert_session(&self, mut session: MediaSession, events: Vec<NewEvent>) -> Result<Committed<MediaSession>> {
        let mut t = self.tables();
        if t.sessions.contains_key(&session.id) {
            return Err(StoreError::AlreadyExists(format!("session {}", session.id)));
        }
        if let Some(call_id) = &session.sip_call_id {
            t.sessions_by_call_id.entry(call_id.clone()).or_default().insert(session.id.clone());
        }
        session.revision = 1;
        t.sessions.insert(session.id.clone(), session.clone());
        Ok(Committed { record: session, events: t.push_events(events) })
    }

    fn session(&self, id: &str) -> Result<Option<MediaSession>> {
        Ok(self.tables().sessions.get(id).cloned())
    }

    fn sessions_of_call(&self, call_id: &str) -> Result<Vec<MediaSession>> {
        let t = self.tables();
        let ids = t.sessions_by_call_id.get(call_id).into_iter().flatten();
        let mut found: Vec<_> = ids.filter_map(|id| t.sessions.get(id)).cloned().collect();
        crate::sort_sessions(&mut found);
        Ok(found)
    }

    fn sessions_with_call(&self) -> Result<Vec<MediaSession>> {
        let mut found: Vec<_> = self.tables().sessions.values().filter(|s| s.sip_call_id.is_some()).cloned().collect();
        crate::sort_sessions(&mut found);
        Ok(found)
    }

    fn replace_session(&self, updated: MediaSession, events: Vec<NewEvent>) -> Result<Committed<MediaSession>> {
        self.tables().replace_session(updated, events)
    }

    fn remove_session(&self, id: &str) -> Result<Option<MediaSession>> {
        let mut t = self.tables();
        let removed = t.sessions.remove(id);
        if let Some(call_id) = removed.as_ref().and_then(|s| s.sip_call_id.clone()) {
            t.unindex_call(&call_id, id);
        }
        Ok(removed)
    }

    fn enqueue_notification(&self, n: NewNotification) -> Result<u64> {
        Ok(self.tables().push_notification(n))
    }

    fn pending_notifications(&self, limit: usize) -> Result<Vec<PendingNotification>> {
        Ok(self.tables().notifications.values().take(limit).cloned().collect())
    }

    fn reschedule_notification(&self, id: u64, attempt: u32, not_before: DateTime<Utc>) -> Result<()> {
        let mut t = self.tables();
        let n = t.notifications.get_mut(&id).ok_or_else(|| StoreError::NotFound(format!("notification {id}")))?;
        n.attempt = attempt;
        n.not_before = not_before;
        Ok(())
    }

    fn remove_notification(&self, id: u64) -> Result<Option<PendingNotification>> {
        Ok(self.tables().notifications.remove(&id))
    }

    fn enqueue_event(&self, e: NewEvent) -> Result<u64> {
        Ok(self.tables().push_event(e))
    }

    fn pending_events(&self, limit: usize) -> Result<Vec<PendingEvent>> {
        Ok(self.tables().events.values().take(limit).cloned().collect())
    }

    fn reschedule_event(&self, id: u64, attempt: u32, not_before: DateTime<Utc>) -> Result<()> {
        let mut t = self.tables();
        let e = t.events.get_mut(&id).ok_or_else(|| StoreError::NotFound(format!("event {id}")))?;
        e.attempt = attempt;
        e.not_before = not_before;
        Ok(())
    }

    fn route_event(&self, id: u64, notifications: Vec<NewNotification>) -> Result<Vec<u64>> {
        let mut t = self.tables();
        t.events.remove(&id).ok_or_else(|| StoreError::NotFound(format!("event {id}")))?;
        Ok(notifications.into_iter().map(|n| t.push_notification(n)).collect())
    }

    fn dead_letter(&self, id: u64, last_error: &str, at: DateTime<Utc>) -> Result<DeadLetter> {
        let mut t = self.tables();
        let entry = match (t.notifications.remove(&id), t.events.remove(&id)) {
            (Some(n), _) => Undelivered::Notification(n),
            (None, Some(e)) => Undelivered::Event(e),
            (None, None) => return Err(StoreError::NotFound(format!("outbox entry {id}"))),
        };
        let dead = DeadLetter { entry, last_error: last_error.to_owned(), dead_at: at };
        t.dead_letters.insert(id, dead.clone());
        Ok(dead)
    }

    fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        Ok(self.tables().dead_letters.values().take(limit).cloned().collect())
    }

    fn replay_dead_letter(&self, id: u64, not_before: DateTime<Utc>) -> Result<Option<Undelivered>> {
        let mut t = self.tables();
        let Some(dead) = t.dead_letters.remove(&id) else { return Ok(None) };
        Ok(Some(match dead.entry.requeued(not_before) {
            Requeued::Notification(n) => {
                let id = t.push_notification(n);
                Undelivered::Notification(t.notifications[&id].clone())
            }
            Requeued::Event(e) => {
                let id = t.push_event(e);
                Undelivered::Event(t.events[&id].clone())
            }
        }))
    }

    fn remove_dead_letter(&self, id: u64) -> Result<Option<DeadLetter>> {
        Ok(self.tables().dead_letters.remove(&id))
    }
}
