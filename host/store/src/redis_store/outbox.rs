//! The outbox methods of [`RedisStore`]: events, notifications, dead letters. Each entry's
//! schedule is kept beside its body (`codec::entry_body`), so that the scripts can set it.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;

use super::RedisStore;
use super::codec::{self, Reply, Status, entry_body, time, unexpected};
use crate::{
    DeadLetter, NewEvent, NewNotification, PendingEvent, PendingNotification, Result, StoreError, Undelivered,
};

/// Appends `entries` as the (body, not_before) pairs the scripts queue.
fn push_entries<T: serde::Serialize>(
    args: &mut Vec<String>,
    entries: impl IntoIterator<Item = (T, DateTime<Utc>)>,
) -> Result<()> {
    for (pending, not_before) in entries {
        args.push(entry_body(&pending)?);
        args.push(time(not_before)?);
    }
    Ok(())
}

/// Appends `events` to a script's arguments, for the scripts that queue them with their write.
pub(super) fn push_events(args: &mut Vec<String>, events: &[NewEvent]) -> Result<()> {
    push_entries(args, events.iter().map(|e| (e.clone().pending(0), e.not_before)))
}

/// `events` as queued, from the ids that end `reply`.
pub(super) fn queued(events: Vec<NewEvent>, reply: Reply) -> Result<Vec<PendingEvent>> {
    let ids = reply.ids("event")?;
    if ids.len() != events.len() {
        return Err(StoreError::Backend(format!("{} events queued, {} ids returned", events.len(), ids.len())));
    }
    Ok(events.into_iter().zip(ids).map(|(e, id)| e.pending(id)).collect())
}

/// The inclusive ZRANGE stop that takes `limit` entries, `None` for none (as -1 would mean
/// "to the end").
fn last_rank(limit: usize) -> Option<String> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    (limit > 0).then(|| (limit - 1).to_string())
}

pub(super) async fn enqueue_notification(store: &RedisStore, notification: NewNotification) -> Result<u64> {
    let mut args = vec!["notification".into()];
    let not_before = notification.not_before;
    push_entries(&mut args, [(notification.pending(0), not_before)])?;
    enqueue(store, args).await
}

pub(super) async fn enqueue_event(store: &RedisStore, event: NewEvent) -> Result<u64> {
    let mut args = vec!["event".into()];
    push_events(&mut args, std::slice::from_ref(&event))?;
    enqueue(store, args).await
}

async fn enqueue(store: &RedisStore, args: Vec<String>) -> Result<u64> {
    let mut reply = store.run(|s| &s.enqueue, args).await?;
    match reply.status {
        Status::Ok => codec::parse_id("outbox entry", &reply.string("outbox entry id")?),
        status => Err(unexpected("enqueue", status)),
    }
}

/// Up to `limit` outbox entries of `kind`, in id order.
pub(super) async fn pending<T: DeserializeOwned>(store: &RedisStore, kind: &str, limit: usize) -> Result<Vec<T>> {
    let Some(stop) = last_rank(limit) else { return Ok(Vec::new()) };
    let mut reply = store.run(|s| &s.pending, vec![kind.into(), stop]).await?;
    if reply.status != Status::Ok {
        return Err(unexpected("pending", reply.status));
    }
    let mut found = Vec::new();
    while !reply.is_empty() {
        found.push(reply.entry(kind)?);
    }
    Ok(found)
}

pub(super) async fn reschedule(
    store: &RedisStore,
    kind: &str,
    id: u64,
    attempt: u32,
    not_before: DateTime<Utc>,
) -> Result<()> {
    let args = vec![kind.into(), id.to_string(), attempt.to_string(), time(not_before)?];
    let reply = store.run(|s| &s.reschedule, args).await?;
    match reply.status {
        Status::Ok => Ok(()),
        Status::NotFound => Err(StoreError::NotFound(format!("{kind} {id}"))),
        status => Err(unexpected("reschedule", status)),
    }
}

pub(super) async fn remove_notification(store: &RedisStore, id: u64) -> Result<Option<PendingNotification>> {
    let mut reply = store.run(|s| &s.remove_entry, vec!["notification".into(), id.to_string()]).await?;
    match reply.status {
        Status::Ok => Ok(Some(reply.entry("notification")?)),
        Status::None => Ok(None),
        status => Err(unexpected("remove_notification", status)),
    }
}

pub(super) async fn route_event(store: &RedisStore, id: u64, notifications: Vec<NewNotification>) -> Result<Vec<u64>> {
    let count = notifications.len();
    let mut args = vec![id.to_string()];
    push_entries(&mut args, notifications.into_iter().map(|n| (n.clone().pending(0), n.not_before)))?;
    let reply = store.run(|s| &s.route_event, args).await?;
    match reply.status {
        Status::Ok => {
            let ids = reply.ids("notification")?;
            if ids.len() != count {
                return Err(StoreError::Backend(format!("{count} notifications queued, {} ids returned", ids.len())));
            }
            Ok(ids)
        }
        Status::NotFound => Err(StoreError::NotFound(format!("event {id}"))),
        status => Err(unexpected("route_event", status)),
    }
}

/// An outbox entry of `kind` from its id, body and schedule.
fn undelivered(kind: &str, id: &str, body: &str, schedule: [&str; 3]) -> Result<Undelivered> {
    Ok(match kind {
        "notification" => Undelivered::Notification(codec::entry(kind, id, body, schedule)?),
        "event" => Undelivered::Event(codec::entry(kind, id, body, schedule)?),
        other => return Err(StoreError::Corrupt(format!("outbox entry {id} of kind {other:?}"))),
    })
}

pub(super) async fn adopt(store: &RedisStore, node: &str) -> Result<Vec<Undelivered>> {
    let mut reply = store.run(|s| &s.adopt_outbox, vec![node.into()]).await?;
    if reply.status != Status::Ok {
        return Err(unexpected("adopt_outbox", reply.status));
    }
    let mut adopted = Vec::new();
    while !reply.is_empty() {
        const WHAT: &str = "adopted entry";
        let kind = reply.string(WHAT)?;
        let id = reply.string(WHAT)?;
        let body = reply.string(WHAT)?;
        let schedule = [reply.string(WHAT)?, reply.string(WHAT)?, reply.string(WHAT)?];
        adopted.push(undelivered(&kind, &id, &body, [&schedule[0], &schedule[1], &schedule[2]])?);
    }
    // The script answers the notifications, then the events.
    adopted.sort_by_key(Undelivered::id);
    Ok(adopted)
}

/// The next dead letter in `reply`: its id, then the fields the scripts' `dead` appends.
fn dead_letter_of(reply: &mut Reply) -> Result<DeadLetter> {
    const WHAT: &str = "dead letter";
    let id = reply.string(WHAT)?;
    let kind = reply.string(WHAT)?;
    let body = reply.string(WHAT)?;
    let schedule = [reply.string(WHAT)?, reply.string(WHAT)?, reply.string(WHAT)?];
    let entry = undelivered(&kind, &id, &body, [&schedule[0], &schedule[1], &schedule[2]])?;
    let last_error = reply.string(WHAT)?;
    let dead_at = codec::decode_time(WHAT, &reply.string(WHAT)?)?;
    Ok(DeadLetter { entry, last_error, dead_at })
}

pub(super) async fn dead_letter(
    store: &RedisStore,
    id: u64,
    last_error: &str,
    at: DateTime<Utc>,
) -> Result<DeadLetter> {
    let mut reply = store.run(|s| &s.dead_letter, vec![id.to_string(), last_error.into(), time(at)?]).await?;
    match reply.status {
        Status::Ok => dead_letter_of(&mut reply),
        Status::NotFound => Err(StoreError::NotFound(format!("outbox entry {id}"))),
        status => Err(unexpected("dead_letter", status)),
    }
}

pub(super) async fn dead_letters(store: &RedisStore, limit: usize) -> Result<Vec<DeadLetter>> {
    let Some(stop) = last_rank(limit) else { return Ok(Vec::new()) };
    let mut reply = store.run(|s| &s.dead_letters, vec![stop]).await?;
    if reply.status != Status::Ok {
        return Err(unexpected("dead_letters", reply.status));
    }
    let mut found = Vec::new();
    while !reply.is_empty() {
        found.push(dead_letter_of(&mut reply)?);
    }
    Ok(found)
}

pub(super) async fn replay_dead_letter(
    store: &RedisStore,
    id: u64,
    not_before: DateTime<Utc>,
) -> Result<Option<Undelivered>> {
    let not_before = time(not_before)?;
    let mut reply = store.run(|s| &s.replay_dead_letter, vec![id.to_string(), not_before.clone()]).await?;
    match reply.status {
        Status::Ok => {
            let kind = reply.string("dead letter")?;
            let body = reply.string("dead letter")?;
            let new_id = reply.string("dead letter")?;
            // As the script queued it: no attempt yet, first due when it is due now.
            Ok(Some(undelivered(&kind, &new_id, &body, ["0", &not_before, &not_before])?))
        }
        Status::None => Ok(None),
        status => Err(unexpected("replay_dead_letter", status)),
    }
}

pub(super) async fn remove_dead_letter(store: &RedisStore, id: u64) -> Result<Option<DeadLetter>> {
    let mut reply = store.run(|s| &s.remove_dead_letter, vec![id.to_string()]).await?;
    match reply.status {
        Status::Ok => Ok(Some(dead_letter_of(&mut reply)?)),
        Status::None => Ok(None),
        status => Err(unexpected("remove_dead_letter", status)),
    }
}
