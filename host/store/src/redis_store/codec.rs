//! How records, times and outbox entries are written as script arguments, and read back from
//! script replies.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::{Result, StoreError};

/// The fields of an outbox entry that the scripts set themselves (the id from the shared
/// sequence, the schedule on enqueue, reschedule and replay), kept beside its body rather than
/// in it, since Lua cannot edit JSON without re-encoding all of it.
const SCHEDULE_FIELDS: [&str; 4] = ["id", "attempt", "not_before", "first_due"];

pub(super) fn encode<T: Serialize>(record: &T) -> Result<String> {
    serde_json::to_string(record).map_err(|e| StoreError::Backend(format!("cannot encode record: {e}")))
}

pub(super) fn decode<T: DeserializeOwned>(what: &str, json: &str) -> Result<T> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// A member of an expiry index: ordered by time, then id, when compared as bytes
/// (`ZRANGEBYLEX`), since zset scores (f64) cannot hold nanoseconds. The time is its
/// nanoseconds since the epoch with the sign bit flipped, so that times before 1970 sort first,
/// in 20 digits. Nanoseconds cover 1677 to 2262; times outside saturate, which keeps the order
/// (not strictly), and the queries compare the records' exact times.
pub(super) fn expiry_member(t: DateTime<Utc>, id: &str) -> String {
    format!("{:020}:{id}", time_key(t))
}

/// The exclusive `ZRANGEBYLEX` bound below which are the members of times up to `t`'s key,
/// whatever their id (`;` follows `:`); the caller drops those at `t` or after.
pub(super) fn expiry_bound(t: DateTime<Utc>) -> String {
    format!("({:020};", time_key(t))
}

fn time_key(t: DateTime<Utc>) -> u64 {
    let nanos = t.timestamp_nanos_opt().unwrap_or(if t.timestamp() < 0 { i64::MIN } else { i64::MAX });
    nanos.cast_unsigned() ^ (1 << 63)
}

/// A time as the store keeps it beside an outbox entry: its JSON, as in the records.
pub(super) fn time(t: DateTime<Utc>) -> Result<String> {
    encode(&t)
}

pub(super) fn decode_time(what: &str, json: &str) -> Result<DateTime<Utc>> {
    decode(what, json)
}

/// The body of an outbox entry as stored: the record without its [`SCHEDULE_FIELDS`].
pub(super) fn entry_body<T: Serialize>(pending: &T) -> Result<String> {
    let encoded = serde_json::to_value(pending).map_err(|e| StoreError::Backend(format!("cannot encode entry: {e}")));
    let Value::Object(mut fields) = encoded? else {
        return Err(StoreError::Backend("an outbox entry does not encode as an object".into()));
    };
    for field in SCHEDULE_FIELDS {
        fields.remove(field);
    }
    encode(&fields)
}

/// An outbox entry from its body and the fields stored beside it.
pub(super) fn entry<T: DeserializeOwned>(what: &str, id: &str, body: &str, schedule: [&str; 3]) -> Result<T> {
    let corrupt = |e: &dyn std::fmt::Display| StoreError::Corrupt(format!("{what} {id}: {e}"));
    let mut fields: Map<String, Value> = decode(what, body)?;
    let [attempt, not_before, first_due] = schedule;
    fields.insert("id".into(), parse_id(what, id)?.into());
    fields.insert("attempt".into(), attempt.parse::<u32>().map_err(|e| corrupt(&e))?.into());
    fields.insert("not_before".into(), decode::<Value>(what, not_before)?);
    fields.insert("first_due".into(), decode::<Value>(what, first_due)?);
    serde_json::from_value(Value::Object(fields)).map_err(|e| corrupt(&e))
}

pub(super) fn parse_id(what: &str, id: &str) -> Result<u64> {
    id.parse().map_err(|e| StoreError::Corrupt(format!("{what} id {id:?}: {e}")))
}

/// What a script answered: its status, then its values in order.
pub(super) struct Reply {
    pub status: Status,
    values: std::vec::IntoIter<Option<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    Ok,
    /// No such record, for a method that answers `None`.
    None,
    Exists,
    NotFound,
    Conflict,
    Corrupt,
}

impl Reply {
    pub fn new(values: Vec<Option<String>>) -> Result<Self> {
        let mut values = values.into_iter();
        let status = match values.next().flatten().as_deref() {
            Some("ok") => Status::Ok,
            Some("none") => Status::None,
            Some("exists") => Status::Exists,
            Some("not_found") => Status::NotFound,
            Some("conflict") => Status::Conflict,
            Some("corrupt") => Status::Corrupt,
            other => return Err(StoreError::Backend(format!("unexpected script reply {other:?}"))),
        };
        Ok(Reply { status, values })
    }

    /// The next value; a missing one (nil, or past the end) is corrupt data, as the scripts only
    /// answer nil where an index names a record that is not there.
    pub fn string(&mut self, what: &str) -> Result<String> {
        self.values.next().flatten().ok_or_else(|| StoreError::Corrupt(format!("missing {what}")))
    }

    /// The next value, if there is one and it is not nil.
    pub fn optional(&mut self) -> Option<String> {
        self.values.next().flatten()
    }

    pub fn is_empty(&self) -> bool {
        self.values.len() == 0
    }

    /// The remaining values, each a record's JSON.
    pub fn records<T: DeserializeOwned>(self, what: &str) -> Result<Vec<T>> {
        self.values
            .map(|json| {
                decode(what, &json.ok_or_else(|| StoreError::Corrupt(format!("an index names a missing {what}")))?)
            })
            .collect()
    }

    /// The remaining values, each an id.
    pub fn ids(self, what: &str) -> Result<Vec<u64>> {
        self.values.map(|id| parse_id(what, &id.unwrap_or_default())).collect()
    }

    /// The next outbox entry: id, body, attempt, not_before, first_due.
    pub fn entry<T: DeserializeOwned>(&mut self, what: &str) -> Result<T> {
        let id = self.string(what)?;
        let body = self.string(what)?;
        let schedule = [self.string(what)?, self.string(what)?, self.string(what)?];
        entry(what, &id, &body, [&schedule[0], &schedule[1], &schedule[2]])
    }
}

/// A script answered a status its caller does not expect.
pub(super) fn unexpected(script: &str, status: Status) -> StoreError {
    match status {
        Status::Corrupt => StoreError::Corrupt(format!("{script}: damaged data")),
        _ => StoreError::Backend(format!("{script}: unexpected status {status:?}")),
    }
}
