//! The outbox tables of the redb backend: events before routing, notifications, dead letters.
//! Each table holds JSON records by id; moving an entry between them is one write transaction.

use chrono::{DateTime, Utc};
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{META, RedbStore, decode, encode};
use crate::outbox::Requeued;
use crate::{
    DeadLetter, NewEvent, NewNotification, PendingEvent, PendingNotification, Result, StoreError, Undelivered,
};

type Entries = TableDefinition<'static, u64, &'static [u8]>;

/// Notifications by id: iteration order is delivery order.
pub(super) const NOTIFICATIONS: Entries = TableDefinition::new("notifications");
/// Events not yet routed, by id.
pub(super) const EVENTS: Entries = TableDefinition::new("events");
/// Dead letters by the id their entry had in the outbox.
pub(super) const DEAD_LETTERS: Entries = TableDefinition::new("dead_letters");

/// The last id handed out to a notification or an event. Kept apart from the tables' last keys
/// so that ids are never reused, even once the newest entry is gone: a stale id held by a
/// deliverer must never name another entry.
const LAST_NOTIFICATION_ID_KEY: &str = "last_notification_id";

pub(super) fn create_tables(txn: &WriteTransaction) -> Result<()> {
    txn.open_table(NOTIFICATIONS)?;
    txn.open_table(EVENTS)?;
    txn.open_table(DEAD_LETTERS)?;
    Ok(())
}

fn next_id(txn: &WriteTransaction) -> Result<u64> {
    let mut meta = txn.open_table(META)?;
    let id = meta.get(LAST_NOTIFICATION_ID_KEY)?.map_or(0, |v| v.value()) + 1;
    meta.insert(LAST_NOTIFICATION_ID_KEY, id)?;
    Ok(id)
}

fn get<T: DeserializeOwned>(txn: &WriteTransaction, table: Entries, what: &str, id: u64) -> Result<Option<T>> {
    let table = txn.open_table(table)?;
    let bytes = table.get(id)?;
    bytes.map(|b| decode(what, id, b.value())).transpose()
}

/// Applies `change` to the record `id`; `NotFound` if there is none.
fn update<T: Serialize + DeserializeOwned>(
    txn: &WriteTransaction,
    table: Entries,
    what: &str,
    id: u64,
    change: impl FnOnce(&mut T),
) -> Result<()> {
    let mut record: T = get(txn, table, what, id)?.ok_or_else(|| StoreError::NotFound(format!("{what} {id}")))?;
    change(&mut record);
    put(txn, table, id, &record)
}

fn put<T: Serialize>(txn: &WriteTransaction, table: Entries, id: u64, record: &T) -> Result<()> {
    txn.open_table(table)?.insert(id, encode(record)?.as_slice())?;
    Ok(())
}

fn take<T: DeserializeOwned>(txn: &WriteTransaction, table: Entries, what: &str, id: u64) -> Result<Option<T>> {
    let mut table = txn.open_table(table)?;
    let removed = table.remove(id)?;
    removed.map(|b| decode(what, id, b.value())).transpose()
}

fn list<T: DeserializeOwned>(store: &RedbStore, table: Entries, what: &str, limit: usize) -> Result<Vec<T>> {
    store.read(|txn| {
        let mut found = Vec::new();
        for entry in txn.open_table(table)?.iter()?.take(limit) {
            let (id, bytes) = entry?;
            found.push(decode(what, id.value(), bytes.value())?);
        }
        Ok(found)
    })
}

fn insert_notification(txn: &WriteTransaction, n: NewNotification) -> Result<PendingNotification> {
    let pending = n.pending(next_id(txn)?);
    put(txn, NOTIFICATIONS, pending.id, &pending)?;
    Ok(pending)
}

fn insert_event(txn: &WriteTransaction, e: NewEvent) -> Result<PendingEvent> {
    let pending = e.pending(next_id(txn)?);
    put(txn, EVENTS, pending.id, &pending)?;
    Ok(pending)
}

/// Queues `events` in the transaction of the write that caused them.
pub(super) fn insert_events(txn: &WriteTransaction, events: Vec<NewEvent>) -> Result<Vec<PendingEvent>> {
    events.into_iter().map(|e| insert_event(txn, e)).collect()
}

impl RedbStore {
    pub(super) fn outbox_enqueue_notification(&self, n: NewNotification) -> Result<u64> {
        self.write(|txn| Ok(insert_notification(txn, n)?.id))
    }

    pub(super) fn outbox_pending_notifications(&self, limit: usize) -> Result<Vec<PendingNotification>> {
        list(self, NOTIFICATIONS, "notification", limit)
    }

    pub(super) fn outbox_reschedule_notification(&self, id: u64, attempt: u32, at: DateTime<Utc>) -> Result<()> {
        self.write(|txn| {
            update::<PendingNotification>(txn, NOTIFICATIONS, "notification", id, |n| {
                (n.attempt, n.not_before) = (attempt, at)
            })
        })
    }

    pub(super) fn outbox_remove_notification(&self, id: u64) -> Result<Option<PendingNotification>> {
        self.write(|txn| take(txn, NOTIFICATIONS, "notification", id))
    }

    pub(super) fn outbox_enqueue_event(&self, e: NewEvent) -> Result<u64> {
        self.write(|txn| Ok(insert_event(txn, e)?.id))
    }

    pub(super) fn outbox_pending_events(&self, limit: usize) -> Result<Vec<PendingEvent>> {
        list(self, EVENTS, "event", limit)
    }

    pub(super) fn outbox_reschedule_event(&self, id: u64, attempt: u32, at: DateTime<Utc>) -> Result<()> {
        self.write(|txn| {
            update::<PendingEvent>(txn, EVENTS, "event", id, |e| (e.attempt, e.not_before) = (attempt, at))
        })
    }

    pub(super) fn outbox_route_event(&self, id: u64, notifications: Vec<NewNotification>) -> Result<Vec<u64>> {
        self.write(|txn| {
            take::<PendingEvent>(txn, EVENTS, "event", id)?
                .ok_or_else(|| StoreError::NotFound(format!("event {id}")))?;
            notifications.into_iter().map(|n| Ok(insert_notification(txn, n)?.id)).collect()
        })
    }

    pub(super) fn outbox_dead_letter(&self, id: u64, last_error: &str, at: DateTime<Utc>) -> Result<DeadLetter> {
        self.write(|txn| {
            let entry = match take(txn, NOTIFICATIONS, "notification", id)? {
                Some(n) => Undelivered::Notification(n),
                None => match take(txn, EVENTS, "event", id)? {
                    Some(e) => Undelivered::Event(e),
                    None => return Err(StoreError::NotFound(format!("outbox entry {id}"))),
                },
            };
            let dead = DeadLetter { entry, last_error: last_error.to_owned(), dead_at: at };
            put(txn, DEAD_LETTERS, id, &dead)?;
            Ok(dead)
        })
    }

    pub(super) fn outbox_dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        list(self, DEAD_LETTERS, "dead letter", limit)
    }

    pub(super) fn outbox_replay_dead_letter(&self, id: u64, at: DateTime<Utc>) -> Result<Option<Undelivered>> {
        self.write(|txn| {
            let Some(dead) = take::<DeadLetter>(txn, DEAD_LETTERS, "dead letter", id)? else { return Ok(None) };
            Ok(Some(match dead.entry.requeued(at) {
                Requeued::Notification(n) => Undelivered::Notification(insert_notification(txn, n)?),
                Requeued::Event(e) => Undelivered::Event(insert_event(txn, e)?),
            }))
        })
    }

    pub(super) fn outbox_remove_dead_letter(&self, id: u64) -> Result<Option<DeadLetter>> {
        self.write(|txn| take(txn, DEAD_LETTERS, "dead letter", id))
    }
}
