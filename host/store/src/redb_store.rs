//! The embedded durable backend: one redb file.
//!
//! Records are stored as JSON under their id; secondary indexes are separate tables updated in
//! the same write transaction as the record, so a crash never leaves them out of step. redb
//! commits with `fsync` (`Durability::Immediate`, its default) and a copy-on-write tree, so a
//! process killed at any point reopens on the last committed transaction.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{
    BlockingStore, Committed, DeadLetter, ExpiringSubscription, MediaSession, NewEvent, NewNotification, PendingEvent,
    PendingNotification, Registration, Result, StoreError, Subscription, Undelivered,
};

/// Records by id, as JSON.
type Records = TableDefinition<'static, &'static str, &'static [u8]>;
/// (expiry in nanoseconds since the epoch, id): ordered by time, for the expiry queries.
type ExpiryIndex = TableDefinition<'static, (i64, &'static str), ()>;

const REGISTRATIONS: Records = TableDefinition::new("registrations");
/// (phone number, device id) -> registration id: the uniqueness rule, and `registrations_of`.
const REGISTRATION_BY_DEVICE: TableDefinition<(&str, &str), &str> = TableDefinition::new("registration_by_device");
const REGISTRATION_EXPIRY: ExpiryIndex = TableDefinition::new("registration_expiry");

const SUBSCRIPTIONS: Records = TableDefinition::new("subscriptions");
/// (owner phone number, subscription id).
const SUBSCRIPTION_BY_OWNER: TableDefinition<(&str, &str), ()> = TableDefinition::new("subscription_by_owner");
/// Keyed by `Subscription::ends_at`; subscriptions that never end are not in it.
const SUBSCRIPTION_EXPIRY: ExpiryIndex = TableDefinition::new("subscription_expiry");

const SESSIONS: Records = TableDefinition::new("sessions");
/// SIP Call-ID -> session id, for the sessions that have one.
/// Schema 1's unique index, Call-ID -> session id; migrated to [`SESSIONS_BY_CALL_ID`].
const SESSION_BY_CALL_ID_V1: TableDefinition<&str, &str> = TableDefinition::new("session_by_call_id");
/// (Call-ID, session id): several sessions share a call while it rings several devices.
const SESSIONS_BY_CALL_ID: TableDefinition<(&str, &str), ()> = TableDefinition::new("sessions_by_call_id");

mod outbox;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The layout of the tables above and in `outbox`; bumped (with a migration) when it changes.
/// Tables added since (events, dead letters), and fields added with a default, are read by
/// older builds as they were: no bump.
const SCHEMA_VERSION_KEY: &str = "schema_version";
const SCHEMA_VERSION: u64 = 2;

/// redb keeps a page cache that grows up to this size; its 1 GiB default is far more than the
/// state of a gateway.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// A [`crate::Store`] in a redb file. One process at a time may open it (redb locks the file).
/// Clones share the open database; it closes when the last one is dropped.
#[derive(Clone)]
pub struct RedbStore {
    db: Arc<Database>,
}

impl RedbStore {
    /// Opens the store at `path`, creating the file if it does not exist. A file left by a crash
    /// is repaired by redb on open, back to its last committed transaction.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let db = Database::builder().set_cache_size(CACHE_BYTES).create(path)?;
        let store = Self { db: Arc::new(db) };
        store.init()?;
        Ok(store)
    }

    /// Creates the tables a fresh file lacks (so that readers may assume they exist) and checks
    /// that the file has the layout this build knows.
    fn init(&self) -> Result<()> {
        self.write(|txn| {
            txn.open_table(REGISTRATIONS)?;
            txn.open_table(REGISTRATION_BY_DEVICE)?;
            txn.open_table(REGISTRATION_EXPIRY)?;
            txn.open_table(SUBSCRIPTIONS)?;
            txn.open_table(SUBSCRIPTION_BY_OWNER)?;
            txn.open_table(SUBSCRIPTION_EXPIRY)?;
            txn.open_table(SESSIONS)?;
            txn.open_table(SESSIONS_BY_CALL_ID)?;
            outbox::create_tables(txn)?;
            let mut meta = txn.open_table(META)?;
            let version = meta.get(SCHEMA_VERSION_KEY)?.map(|v| v.value());
            match version {
                None => {
                    meta.insert(SCHEMA_VERSION_KEY, SCHEMA_VERSION)?;
                }
                Some(SCHEMA_VERSION) => {}
                Some(1) => {
                    migrate_call_index(txn)?;
                    meta.insert(SCHEMA_VERSION_KEY, SCHEMA_VERSION)?;
                }
                Some(other) => {
                    return Err(StoreError::Backend(format!(
                        "store schema version {other}, this build reads version {SCHEMA_VERSION}"
                    )));
                }
            }
            Ok(())
        })
    }

    /// Runs `f` in a write transaction, committed if `f` succeeds. On error the transaction is
    /// dropped, which aborts it: a failed operation changes nothing.
    fn write<T>(&self, f: impl FnOnce(&WriteTransaction) -> Result<T>) -> Result<T> {
        let txn = self.db.begin_write()?;
        let out = f(&txn)?;
        txn.commit()?;
        Ok(out)
    }

    /// Runs `f` on a consistent snapshot.
    fn read<T>(&self, f: impl FnOnce(&ReadTransaction) -> Result<T>) -> Result<T> {
        f(&self.db.begin_read()?)
    }
}

/// The key of a time in an expiry index. Nanoseconds cover 1677 to 2262; times outside saturate,
/// which keeps the order (not strictly), and the queries compare the records' exact times.
fn time_key(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(if t.timestamp() < 0 { i64::MIN } else { i64::MAX })
}

fn encode<T: Serialize>(record: &T) -> Result<Vec<u8>> {
    // Cannot fail for these records (string keys, no maps with non-string keys), but say so if
    // it ever does rather than panic.
    serde_json::to_vec(record).map_err(|e| StoreError::Backend(format!("cannot encode record: {e}")))
}

fn decode<T: DeserializeOwned>(what: &str, key: impl std::fmt::Display, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("{what} {key}: {e}")))
}

/// The record stored under `id`.
fn get_record<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    what: &str,
    id: &str,
) -> Result<Option<T>> {
    table.get(id)?.map(|bytes| decode(what, id, bytes.value())).transpose()
}

/// The record an index entry points to; a dangling entry means the file is damaged, since both
/// are written in one transaction.
fn indexed_record<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    what: &str,
    id: &str,
) -> Result<T> {
    get_record(table, what, id)?.ok_or_else(|| StoreError::Corrupt(format!("index names missing {what} {id}")))
}

/// The ids in an expiry index with a time key at or before `t`'s, in index order.
fn ids_due_by(index: &impl ReadableTable<(i64, &'static str), ()>, t: DateTime<Utc>) -> Result<Vec<String>> {
    let limit = time_key(t);
    let mut ids = Vec::new();
    for entry in index.iter()? {
        let (key, _) = entry?;
        let (at, id) = key.value();
        if at > limit {
            break;
        }
        ids.push(id.to_owned());
    }
    Ok(ids)
}

fn registration_not_found(id: &str) -> StoreError {
    StoreError::NotFound(format!("registration {id}"))
}

impl BlockingStore for RedbStore {
    // Writes wait for their `fsync`.
    const OFFLOAD: bool = true;

    fn insert_registration(&self, r: Registration) -> Result<()> {
        self.write(|txn| {
            let mut records = txn.open_table(REGISTRATIONS)?;
            let mut by_device = txn.open_table(REGISTRATION_BY_DEVICE)?;
            if records.get(r.id.as_str())?.is_some() {
                return Err(StoreError::AlreadyExists(format!("registration {}", r.id)));
            }
            if by_device.get((r.phone_number.as_str(), r.device_id.as_str()))?.is_some() {
                return Err(StoreError::AlreadyExists(format!("registration of device {}", r.device_id)));
            }
            records.insert(r.id.as_str(), encode(&r)?.as_slice())?;
            by_device.insert((r.phone_number.as_str(), r.device_id.as_str()), r.id.as_str())?;
            txn.open_table(REGISTRATION_EXPIRY)?.insert((time_key(r.expires_at), r.id.as_str()), ())?;
            Ok(())
        })
    }

    fn registration(&self, id: &str) -> Result<Option<Registration>> {
        self.read(|txn| get_record(&txn.open_table(REGISTRATIONS)?, "registration", id))
    }

    fn registrations_of(&self, phone_number: &str, device_id: Option<&str>) -> Result<Vec<Registration>> {
        self.read(|txn| {
            let records = txn.open_table(REGISTRATIONS)?;
            let by_device = txn.open_table(REGISTRATION_BY_DEVICE)?;
            let mut ids = Vec::new();
            match device_id {
                Some(device_id) => {
                    if let Some(id) = by_device.get((phone_number, device_id))? {
                        ids.push(id.value().to_owned());
                    }
                }
                // The index is ordered by phone number, then device id: the phone number's
                // entries are one run, starting at the smallest device id "".
                None => {
                    for entry in by_device.range::<(&str, &str)>((phone_number, "")..)? {
                        let (key, id) = entry?;
                        if key.value().0 != phone_number {
                            break;
                        }
                        ids.push(id.value().to_owned());
                    }
                }
            }
            ids.iter().map(|id| indexed_record(&records, "registration", id)).collect()
        })
    }

    fn update_registration_expiry(&self, id: &str, expires_at: DateTime<Utc>) -> Result<Registration> {
        self.write(|txn| {
            let mut records = txn.open_table(REGISTRATIONS)?;
            let mut r: Registration =
                get_record(&records, "registration", id)?.ok_or_else(|| registration_not_found(id))?;
            let mut expiry = txn.open_table(REGISTRATION_EXPIRY)?;
            expiry.remove((time_key(r.expires_at), id))?;
            r.expires_at = expires_at;
            expiry.insert((time_key(r.expires_at), id), ())?;
            records.insert(id, encode(&r)?.as_slice())?;
            Ok(r)
        })
    }

    fn move_registration(&self, id: &str, expected: Option<&str>, node: &str) -> Result<Registration> {
        self.write(|txn| {
            let mut records = txn.open_table(REGISTRATIONS)?;
            let mut r: Registration =
                get_record(&records, "registration", id)?.ok_or_else(|| registration_not_found(id))?;
            if r.node.as_deref() != expected {
                return Err(StoreError::Conflict(format!("registration {id} is kept by another node")));
            }
            r.node = Some(node.to_owned());
            records.insert(id, encode(&r)?.as_slice())?;
            Ok(r)
        })
    }

    fn remove_registration(&self, id: &str, events: Vec<NewEvent>) -> Result<Option<Committed<Registration>>> {
        self.write(|txn| {
            let mut records = txn.open_table(REGISTRATIONS)?;
            let Some(r) = get_record::<Registration>(&records, "registration", id)? else {
                return Ok(None);
            };
            records.remove(id)?;
            txn.open_table(REGISTRATION_BY_DEVICE)?.remove((r.phone_number.as_str(), r.device_id.as_str()))?;
            txn.open_table(REGISTRATION_EXPIRY)?.remove((time_key(r.expires_at), id))?;
            Ok(Some(Committed { record: r, events: outbox::insert_events(txn, events)? }))
        })
    }

    fn registrations_expiring_before(&self, t: DateTime<Utc>) -> Result<Vec<Registration>> {
        self.read(|txn| {
            let records = txn.open_table(REGISTRATIONS)?;
            let mut found = Vec::new();
            for id in ids_due_by(&txn.open_table(REGISTRATION_EXPIRY)?, t)? {
                let r: Registration = indexed_record(&records, "registration", &id)?;
                if r.expires_at < t {
                    found.push(r);
                }
            }
            // Already in (time, id) order, except among times that saturated the key.
            found.sort_by(|a, b| a.expires_at.cmp(&b.expires_at).then_with(|| a.id.cmp(&b.id)));
            Ok(found)
        })
    }

    fn insert_subscription(&self, s: Subscription) -> Result<()> {
        self.write(|txn| {
            let mut records = txn.open_table(SUBSCRIPTIONS)?;
            if records.get(s.id.as_str())?.is_some() {
                return Err(StoreError::AlreadyExists(format!("subscription {}", s.id)));
            }
            records.insert(s.id.as_str(), encode(&s)?.as_slice())?;
            index_subscription(txn, &s)
        })
    }

    fn subscription(&self, id: &str) -> Result<Option<Subscription>> {
        self.read(|txn| get_record(&txn.open_table(SUBSCRIPTIONS)?, "subscription", id))
    }

    fn subscriptions_of(&self, owner_phone_number: &str) -> Result<Vec<Subscription>> {
        self.read(|txn| {
            let records = txn.open_table(SUBSCRIPTIONS)?;
            let mut found = Vec::new();
            for entry in txn.open_table(SUBSCRIPTION_BY_OWNER)?.range::<(&str, &str)>((owner_phone_number, "")..)? {
                let (key, _) = entry?;
                let (owner, id) = key.value();
                if owner != owner_phone_number {
                    break;
                }
                found.push(indexed_record(&records, "subscription", id)?);
            }
            crate::sort_subscriptions(&mut found);
            Ok(found)
        })
    }

    fn replace_subscription(&self, expected: &Subscription, new: Subscription) -> Result<Subscription> {
        let id = expected.id.as_str();
        self.write(|txn| {
            let mut records = txn.open_table(SUBSCRIPTIONS)?;
            let old: Subscription = get_record(&records, "subscription", id)?
                .ok_or_else(|| StoreError::NotFound(format!("subscription {id}")))?;
            if old != *expected {
                return Err(StoreError::Conflict(format!("subscription {id} changed")));
            }
            let new = Subscription { id: id.to_owned(), ..new };
            if new != old {
                // Any indexed field may have changed: re-index from scratch.
                unindex_subscription(txn, &old)?;
                index_subscription(txn, &new)?;
                records.insert(id, encode(&new)?.as_slice())?;
            }
            Ok(new)
        })
    }

    fn remove_subscription(&self, id: &str, events: Vec<NewEvent>) -> Result<Option<Committed<Subscription>>> {
        self.write(|txn| {
            let mut records = txn.open_table(SUBSCRIPTIONS)?;
            let Some(s) = get_record::<Subscription>(&records, "subscription", id)? else {
                return Ok(None);
            };
            records.remove(id)?;
            unindex_subscription(txn, &s)?;
            Ok(Some(Committed { record: s, events: outbox::insert_events(txn, events)? }))
        })
    }

    fn subscriptions_expiring_before(&self, t: DateTime<Utc>) -> Result<Vec<ExpiringSubscription>> {
        self.read(|txn| {
            let records = txn.open_table(SUBSCRIPTIONS)?;
            let candidates = ids_due_by(&txn.open_table(SUBSCRIPTION_EXPIRY)?, t)?
                .iter()
                .map(|id| indexed_record(&records, "subscription", id))
                .collect::<Result<Vec<Subscription>>>()?;
            Ok(crate::expiring_subscriptions(candidates, t))
        })
    }

    fn insert_session(&self, mut s: MediaSession, events: Vec<NewEvent>) -> Result<Committed<MediaSession>> {
        s.revision = 1;
        self.write(|txn| {
            let mut records = txn.open_table(SESSIONS)?;
            if records.get(s.id.as_str())?.is_some() {
                return Err(StoreError::AlreadyExists(format!("session {}", s.id)));
            }
            if let Some(call_id) = &s.sip_call_id {
                txn.open_table(SESSIONS_BY_CALL_ID)?.insert((call_id.as_str(), s.id.as_str()), ())?;
            }
            records.insert(s.id.as_str(), encode(&s)?.as_slice())?;
            Ok(Committed { record: s.clone(), events: outbox::insert_events(txn, events)? })
        })
    }

    fn session(&self, id: &str) -> Result<Option<MediaSession>> {
        self.read(|txn| get_record(&txn.open_table(SESSIONS)?, "session", id))
    }

    fn sessions_of_call(&self, call_id: &str) -> Result<Vec<MediaSession>> {
        self.read(|txn| {
            let records = txn.open_table(SESSIONS)?;
            let mut found = Vec::new();
            for entry in txn.open_table(SESSIONS_BY_CALL_ID)?.range((call_id, "")..)? {
                let (key, _) = entry?;
                let (call, id) = key.value();
                if call != call_id {
                    break;
                }
                found.push(indexed_record(&records, "session", id)?);
            }
            crate::sort_sessions(&mut found);
            Ok(found)
        })
    }

    fn sessions_with_call(&self) -> Result<Vec<MediaSession>> {
        self.read(|txn| {
            let records = txn.open_table(SESSIONS)?;
            let mut found = Vec::new();
            for entry in txn.open_table(SESSIONS_BY_CALL_ID)?.iter()? {
                let (key, _) = entry?;
                found.push(indexed_record(&records, "session", key.value().1)?);
            }
            crate::sort_sessions(&mut found);
            Ok(found)
        })
    }

    fn replace_session(&self, new: MediaSession, events: Vec<NewEvent>) -> Result<Committed<MediaSession>> {
        self.write(|txn| replace_session_in(txn, new, events))
    }

    fn remove_session(&self, id: &str) -> Result<Option<MediaSession>> {
        self.write(|txn| {
            let mut records = txn.open_table(SESSIONS)?;
            let Some(s) = get_record::<MediaSession>(&records, "session", id)? else {
                return Ok(None);
            };
            records.remove(id)?;
            if let Some(call_id) = &s.sip_call_id {
                txn.open_table(SESSIONS_BY_CALL_ID)?.remove((call_id.as_str(), id))?;
            }
            Ok(Some(s))
        })
    }

    fn enqueue_notification(&self, n: NewNotification) -> Result<u64> {
        self.outbox_enqueue_notification(n)
    }

    fn pending_notifications(&self, limit: usize) -> Result<Vec<PendingNotification>> {
        self.outbox_pending_notifications(limit)
    }

    fn reschedule_notification(&self, id: u64, attempt: u32, not_before: DateTime<Utc>) -> Result<()> {
        self.outbox_reschedule_notification(id, attempt, not_before)
    }

    fn remove_notification(&self, id: u64) -> Result<Option<PendingNotification>> {
        self.outbox_remove_notification(id)
    }

    fn enqueue_event(&self, event: NewEvent) -> Result<u64> {
        self.outbox_enqueue_event(event)
    }

    fn pending_events(&self, limit: usize) -> Result<Vec<PendingEvent>> {
        self.outbox_pending_events(limit)
    }

    fn reschedule_event(&self, id: u64, attempt: u32, not_before: DateTime<Utc>) -> Result<()> {
        self.outbox_reschedule_event(id, attempt, not_before)
    }

    fn route_event(&self, id: u64, notifications: Vec<NewNotification>) -> Result<Vec<u64>> {
        self.outbox_route_event(id, notifications)
    }

    fn dead_letter(&self, id: u64, last_error: &str, at: DateTime<Utc>) -> Result<DeadLetter> {
        self.outbox_dead_letter(id, last_error, at)
    }

    fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        self.outbox_dead_letters(limit)
    }

    fn replay_dead_letter(&self, id: u64, not_before: DateTime<Utc>) -> Result<Option<Undelivered>> {
        self.outbox_replay_dead_letter(id, not_before)
    }

    fn remove_dead_letter(&self, id: u64) -> Result<Option<DeadLetter>> {
        self.outbox_remove_dead_letter(id)
    }
}

/// [`crate::Store::replace_session`] in the write transaction `txn`.
fn replace_session_in(
    txn: &WriteTransaction,
    mut new: MediaSession,
    events: Vec<NewEvent>,
) -> Result<Committed<MediaSession>> {
    let mut records = txn.open_table(SESSIONS)?;
    let id = new.id.clone();
    let old: MediaSession =
        get_record(&records, "session", &id)?.ok_or_else(|| StoreError::NotFound(format!("session {id}")))?;
    if old.revision != new.revision {
        return Err(StoreError::Conflict(format!("session {id} is at revision {}", old.revision)));
    }
    if new.sip_call_id != old.sip_call_id {
        let mut by_call_id = txn.open_table(SESSIONS_BY_CALL_ID)?;
        if let Some(call_id) = &old.sip_call_id {
            by_call_id.remove((call_id.as_str(), id.as_str()))?;
        }
        if let Some(call_id) = &new.sip_call_id {
            by_call_id.insert((call_id.as_str(), id.as_str()), ())?;
        }
    }
    new.revision += 1;
    records.insert(id.as_str(), encode(&new)?.as_slice())?;
    Ok(Committed { record: new.clone(), events: outbox::insert_events(txn, events)? })
}

/// Schema 1 -> 2: the unique Call-ID index becomes (Call-ID, session id).
fn migrate_call_index(txn: &WriteTransaction) -> Result<()> {
    let mut entries = Vec::new();
    for entry in txn.open_table(SESSION_BY_CALL_ID_V1)?.iter()? {
        let (call_id, id) = entry?;
        entries.push((call_id.value().to_string(), id.value().to_string()));
    }
    let mut by_call_id = txn.open_table(SESSIONS_BY_CALL_ID)?;
    for (call_id, id) in &entries {
        by_call_id.insert((call_id.as_str(), id.as_str()), ())?;
    }
    drop(by_call_id);
    txn.delete_table(SESSION_BY_CALL_ID_V1)?;
    Ok(())
}

/// Adds the index entries of `s`.
fn index_subscription(txn: &WriteTransaction, s: &Subscription) -> Result<()> {
    txn.open_table(SUBSCRIPTION_BY_OWNER)?.insert((s.owner_phone_number.as_str(), s.id.as_str()), ())?;
    if let Some((at, _)) = s.ends_at() {
        txn.open_table(SUBSCRIPTION_EXPIRY)?.insert((time_key(at), s.id.as_str()), ())?;
    }
    Ok(())
}

/// Removes the index entries of `s`, as stored.
fn unindex_subscription(txn: &WriteTransaction, s: &Subscription) -> Result<()> {
    txn.open_table(SUBSCRIPTION_BY_OWNER)?.remove((s.owner_phone_number.as_str(), s.id.as_str()))?;
    if let Some((at, _)) = s.ends_at() {
        txn.open_table(SUBSCRIPTION_EXPIRY)?.remove((time_key(at), s.id.as_str()))?;
    }
    Ok(())
}

// The redb errors, as the store reports them. Damage detected by redb is `Corrupt`; anything
// else (I/O, a file locked by another process, ...) is `Backend`.

impl From<redb::StorageError> for StoreError {
    fn from(e: redb::StorageError) -> Self {
        match e {
            redb::StorageError::Corrupted(message) => StoreError::Corrupt(message),
            other => StoreError::Backend(other.to_string()),
        }
    }
}

macro_rules! from_redb_error {
    ($($error:ident),*) => {$(
        impl From<redb::$error> for StoreError {
            fn from(e: redb::$error) -> Self {
                match e {
                    redb::$error::Storage(e) => e.into(),
                    other => StoreError::Backend(other.to_string()),
                }
            }
        }
    )*};
}

from_redb_error!(DatabaseError, TransactionError, TableError, CommitError);
