//! The shared backend: a Redis server, for several gateway nodes.
//!
//! Every method is one Lua script (`scripts`), which Redis runs alone from start to end: a
//! write that touches several keys, its events included, is all or nothing to every other
//! client. WATCH/MULTI is not used, as the multiplexed connection shares one server connection
//! between all callers and WATCH belongs to the connection. Each script checks everything
//! before its first write, so a refused write changes nothing.
//!
//! # Durability
//!
//! A write is acknowledged once the server has executed it. For "a crash loses no acknowledged
//! write", the server must run with `appendonly yes` and `appendfsync always`: Redis then syncs
//! its append-only file before it answers. With `appendfsync everysec` (Redis' default when the
//! AOF is on) a server crash can lose the last second of acknowledged writes; with RDB
//! snapshots only, everything since the last snapshot. Replicas do not help: replication is
//! asynchronous. Each script is logged as one unit, so a restart never finds half of one.
//! [`RedisStore::durability_gap`] reads the settings back (the gateway warns at start when they
//! fall short).
//!
//! A network error or timeout on a write leaves its outcome unknown (the script may have run):
//! the caller sees [`StoreError::Backend`] and reads again.
//!
//! # Key layout
//!
//! Every key starts with [`RedisConfig::key_prefix`] and `:`. Records are hashes holding their
//! JSON (`json`) and the index entries the scripts need to undo without decoding it:
//!
//! - `registration:{id}` (`json`, `phone`, `device`, `expiry`); `registrations-of:{phone}`, a
//!   hash device id -> registration id (the uniqueness rule); `registration-expiry`.
//! - `subscription:{id}` (`json`, `owner`, `expiry`); `subscriptions-of:{owner}`, a set of ids;
//!   `subscription-expiry`, of the subscriptions that end.
//! - `session:{id}` (`json`, `rev`, `call` when it has a Call-ID); `sessions-of-call:{call-id}`
//!   and `sessions-with-call`, sets of ids.
//! - The expiry indexes are sorted sets, all scores 0, ordered by member
//!   (`{20-digit time key}:{id}`, see `codec::expiry_member`): scores are f64 and cannot hold
//!   nanoseconds.
//! - `next-id`, the counter of the one sequence of outbox ids; `notification:{id}` and
//!   `event:{id}` (`body`, the entry's JSON less the fields below, and `attempt`, `not_before`,
//!   `first_due`, and `node`, the node whose outbox holds it), ordered per node by the sorted
//!   sets `notifications:{node}` and `events:{node}` (score: the id, exact below 2^53);
//!   `dead-letter:{id}` (the entry's fields, plus `kind`, `last_error`, `dead_at`), ordered by
//!   `dead-letters`, of no node.
//! - `nodes`, the set of node ids that sent a heartbeat and were not forgotten; `node:{id}`, its
//!   address, expiring with its lease; `takeover:{id}`, the node that claimed a dead node's
//!   takeover, expiring with the claim.
//!
//! Scripts name keys they find in records, so this is for a single Redis (or a primary with
//! replicas), not Redis Cluster.
//!
//! # Several nodes
//!
//! Every node sees every record, and each delivers its own outbox: an entry is queued under the
//! node whose write queued it ([`RedisConfig::node_id`]), and `pending_*` list that node's
//! entries only, so no two nodes send the same notification. Any node may still remove,
//! reschedule, route or dead-letter an entry by id. A node renews its lease with
//! [`Store::heartbeat`]; once a lease has run out, the survivors race for
//! [`Store::claim_takeover`], and the one that wins adopts the dead node's outbox
//! ([`Store::adopt_outbox`], one script) and forgets it. Registrations name the node that keeps
//! their SIP binding, which [`Store::move_registration`] moves by compare-and-set.
//!
//! Entries queued before nodes were named (one index of no node) become the outbox of the first
//! node that lists its pending entries.

mod codec;
mod outbox;
mod scripts;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::{
    Committed, DeadLetter, ExpiringSubscription, MediaSession, NewEvent, NewNotification, Node, PendingEvent,
    PendingNotification, Registration, Result, Store, StoreError, Subscription, UPDATE_ATTEMPTS, Undelivered,
};
use codec::{Reply, Status, decode, encode, expiry_bound, expiry_member, unexpected};
use outbox::{push_events, queued};
use scripts::Scripts;

/// Where the store lives.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://host:port/db` (or `redis+unix://`), as the `redis` crate reads it.
    pub url: String,
    /// Starts every key, so that several gateways (or tests) share one server apart.
    pub key_prefix: String,
    /// This node's name among those sharing the key prefix: the owner of the outbox entries it
    /// queues. Unique per node, and the same across its restarts, so that a node restarted
    /// under its name delivers what it had left.
    pub node_id: String,
}

/// A [`Store`] in Redis. Clones share one multiplexed connection, which reconnects on its own
/// after a failure (the calls made meanwhile fail with [`StoreError::Backend`]).
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    /// `ARGV[1]` of every script: the node id and the key prefix (see `scripts`).
    scope: Arc<str>,
    scripts: Arc<Scripts>,
}

/// How long a call waits for the server's answer. Longer than the client's default (500 ms), as
/// with `appendfsync always` an answer waits for the disk, and a timed-out write may still have
/// been made.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

fn backend(e: redis::RedisError) -> StoreError {
    StoreError::Backend(format!("redis: {e}"))
}

impl RedisStore {
    /// Connects to the server; fails if it cannot be reached.
    pub async fn connect(config: RedisConfig) -> Result<Self> {
        let client = redis::Client::open(config.url.as_str()).map_err(backend)?;
        let manager_config = ConnectionManagerConfig::new().set_response_timeout(Some(RESPONSE_TIMEOUT));
        let connection = ConnectionManager::new_with_config(client, manager_config).await.map_err(backend)?;
        let scope = format!("{}:{}{}", config.node_id.len(), config.node_id, config.key_prefix);
        Ok(RedisStore { connection, scope: scope.into(), scripts: Arc::new(Scripts::new()) })
    }

    /// Why the server may lose a write it acknowledged, `None` when it syncs each one before
    /// answering (`appendonly yes`, `appendfsync always`), as the module docs require. `Err`
    /// when it does not say (a managed Redis may refuse `CONFIG`).
    pub async fn durability_gap(&self) -> Result<Option<String>> {
        let mut connection = self.connection.clone();
        let settings: std::collections::HashMap<String, String> =
            redis::cmd("CONFIG").arg("GET").arg("append*").query_async(&mut connection).await.map_err(backend)?;
        let setting = |name: &str| settings.get(name).map_or("unknown", String::as_str).to_owned();
        let (appendonly, appendfsync) = (setting("appendonly"), setting("appendfsync"));
        Ok((appendonly != "yes" || appendfsync != "always")
            .then(|| format!("appendonly is {appendonly} and appendfsync {appendfsync}, not yes and always")))
    }

    /// Runs `script` with the node id and key prefix, then `args`, as its `ARGV`.
    async fn run(&self, script: impl FnOnce(&Scripts) -> &Script, args: Vec<String>) -> Result<Reply> {
        let mut invocation = script(&self.scripts).prepare_invoke();
        invocation.arg(&*self.scope);
        for arg in &args {
            invocation.arg(arg);
        }
        let mut connection = self.connection.clone();
        let values: Vec<Option<String>> = invocation.invoke_async(&mut connection).await.map_err(backend)?;
        Reply::new(values)
    }

    /// The JSON of the record of `kind` stored under `id`.
    async fn raw_record(&self, kind: &str, id: &str) -> Result<Option<String>> {
        let mut reply = self.run(|s| &s.get_record, vec![kind.into(), id.into()]).await?;
        match reply.status {
            Status::Ok => Ok(reply.optional()),
            status => Err(unexpected("get", status)),
        }
    }

    async fn record<T: serde::de::DeserializeOwned>(&self, kind: &str, id: &str) -> Result<Option<T>> {
        self.raw_record(kind, id).await?.map(|json| decode(kind, &json)).transpose()
    }

    /// The records of `kind` whose ids are in the set `set`.
    async fn set_records<T: serde::de::DeserializeOwned>(&self, kind: &str, set: Vec<String>) -> Result<Vec<T>> {
        let reply = self.run(|s| &s.set_records, [vec![kind.into()], set].concat()).await?;
        match reply.status {
            Status::Ok => reply.records(kind),
            status => Err(unexpected("set_records", status)),
        }
    }

    /// The records of `kind` whose expiry index entry is at or before `t`'s time key (the
    /// caller compares exactly).
    async fn expiring<T: serde::de::DeserializeOwned>(&self, kind: &str, t: DateTime<Utc>) -> Result<Vec<T>> {
        let reply = self.run(|s| &s.expiring, vec![kind.into(), expiry_bound(t)]).await?;
        match reply.status {
            Status::Ok => reply.records(kind),
            status => Err(unexpected("expiring", status)),
        }
    }

    /// Applies `change` to registration `id` and writes it, unless `change` refuses.
    async fn change_registration(
        &self,
        id: &str,
        change: impl Fn(&mut Registration) -> Result<()>,
    ) -> Result<Registration> {
        let not_found = || StoreError::NotFound(format!("registration {id}"));
        // Lua cannot edit the JSON, so this is a compare-and-set on the bytes read, as
        // `update_session` is on the revision.
        for _ in 0..UPDATE_ATTEMPTS {
            let stored = self.raw_record("registration", id).await?.ok_or_else(not_found)?;
            let mut registration: Registration = decode("registration", &stored)?;
            change(&mut registration)?;
            let member = expiry_member(registration.expires_at, id);
            let args = vec![id.into(), stored, encode(&registration)?, member];
            let reply = self.run(|s| &s.replace_registration, args).await?;
            match reply.status {
                Status::Ok => return Ok(registration),
                Status::NotFound => return Err(not_found()),
                Status::Conflict => tokio::task::yield_now().await,
                status => return Err(unexpected("replace_registration", status)),
            }
        }
        Err(StoreError::Conflict(format!("registration {id}: still changing after {UPDATE_ATTEMPTS} attempts")))
    }
}

/// The session scripts' has-call flag and Call-ID: a flag, as `Some("")` is a Call-ID too.
fn call_args(call_id: &Option<String>) -> [String; 2] {
    match call_id {
        Some(call_id) => ["1".into(), call_id.clone()],
        None => ["0".into(), String::new()],
    }
}

#[async_trait::async_trait]
impl Store for RedisStore {
    async fn insert_registration(&self, r: Registration) -> Result<()> {
        let member = expiry_member(r.expires_at, &r.id);
        let args = vec![r.id.clone(), r.phone_number.clone(), r.device_id.clone(), encode(&r)?, member];
        let mut reply = self.run(|s| &s.insert_registration, args).await?;
        match reply.status {
            Status::Ok => Ok(()),
            Status::Exists => Err(StoreError::AlreadyExists(match reply.optional().as_deref() {
                Some("device") => format!("registration of device {}", r.device_id),
                _ => format!("registration {}", r.id),
            })),
            status => Err(unexpected("insert_registration", status)),
        }
    }

    async fn registration(&self, id: &str) -> Result<Option<Registration>> {
        self.record("registration", id).await
    }

    async fn registrations_of(&self, phone_number: &str, device_id: Option<&str>) -> Result<Vec<Registration>> {
        let args = [phone_number].into_iter().chain(device_id).map(str::to_owned).collect();
        let reply = self.run(|s| &s.registrations_of, args).await?;
        if reply.status != Status::Ok {
            return Err(unexpected("registrations_of", reply.status));
        }
        let mut found: Vec<Registration> = reply.records("registration")?;
        found.sort_by(|a, b| a.device_id.cmp(&b.device_id));
        Ok(found)
    }

    async fn update_registration_expiry(&self, id: &str, expires_at: DateTime<Utc>) -> Result<Registration> {
        self.change_registration(id, |r| {
            r.expires_at = expires_at;
            Ok(())
        })
        .await
    }

    async fn move_registration(&self, id: &str, expected: Option<&str>, node: &str) -> Result<Registration> {
        // Compared on the record read, and the write is over its bytes: a node that moved it
        // meanwhile makes this read again and see the new node.
        self.change_registration(id, |r| {
            if r.node.as_deref() != expected {
                return Err(StoreError::Conflict(format!("registration {id} is kept by another node")));
            }
            r.node = Some(node.to_owned());
            Ok(())
        })
        .await
    }

    async fn remove_registration(&self, id: &str, events: Vec<NewEvent>) -> Result<Option<Committed<Registration>>> {
        let mut args = vec![id.to_owned()];
        push_events(&mut args, &events)?;
        let mut reply = self.run(|s| &s.remove_registration, args).await?;
        match reply.status {
            Status::Ok => {
                let record = decode("registration", &reply.string("registration")?)?;
                Ok(Some(Committed { record, events: queued(events, reply)? }))
            }
            Status::None => Ok(None),
            status => Err(unexpected("remove_registration", status)),
        }
    }

    async fn registrations_expiring_before(&self, t: DateTime<Utc>) -> Result<Vec<Registration>> {
        let mut found: Vec<Registration> = self.expiring("registration", t).await?;
        found.retain(|r| r.expires_at < t);
        found.sort_by(|a, b| a.expires_at.cmp(&b.expires_at).then_with(|| a.id.cmp(&b.id)));
        Ok(found)
    }

    async fn insert_subscription(&self, s: Subscription) -> Result<()> {
        let member = s.ends_at().map(|(at, _)| expiry_member(at, &s.id)).unwrap_or_default();
        let args = vec![s.id.clone(), s.owner_phone_number.clone(), encode(&s)?, member];
        let reply = self.run(|s| &s.insert_subscription, args).await?;
        match reply.status {
            Status::Ok => Ok(()),
            Status::Exists => Err(StoreError::AlreadyExists(format!("subscription {}", s.id))),
            status => Err(unexpected("insert_subscription", status)),
        }
    }

    async fn subscription(&self, id: &str) -> Result<Option<Subscription>> {
        self.record("subscription", id).await
    }

    async fn subscriptions_of(&self, owner_phone_number: &str) -> Result<Vec<Subscription>> {
        let set = vec!["subscriptions-of".into(), owner_phone_number.into()];
        let mut found = self.set_records("subscription", set).await?;
        crate::sort_subscriptions(&mut found);
        Ok(found)
    }

    async fn replace_subscription(&self, expected: &Subscription, new: Subscription) -> Result<Subscription> {
        let id = &expected.id;
        let new = Subscription { id: id.clone(), ..new };
        let member = new.ends_at().map(|(at, _)| expiry_member(at, id)).unwrap_or_default();
        let new_json = encode(&new)?;
        let mut expected_json = encode(expected)?;
        // The stored bytes may encode the expected record otherwise (a float in `config_json`
        // read back a hair different, say): on a conflict, compare the records, and if they are
        // equal, try once more over the bytes the server holds.
        for _ in 0..2 {
            let args =
                vec![id.clone(), expected_json, new_json.clone(), new.owner_phone_number.clone(), member.clone()];
            let mut reply = self.run(|s| &s.replace_subscription, args).await?;
            match reply.status {
                Status::Ok => return Ok(new),
                Status::NotFound => return Err(StoreError::NotFound(format!("subscription {id}"))),
                Status::Conflict => {
                    let stored_json = reply.string("subscription")?;
                    if decode::<Subscription>("subscription", &stored_json)? != *expected {
                        break;
                    }
                    expected_json = stored_json;
                }
                status => return Err(unexpected("replace_subscription", status)),
            }
        }
        Err(StoreError::Conflict(format!("subscription {id} changed")))
    }

    async fn remove_subscription(&self, id: &str, events: Vec<NewEvent>) -> Result<Option<Committed<Subscription>>> {
        let mut args = vec![id.to_owned()];
        push_events(&mut args, &events)?;
        let mut reply = self.run(|s| &s.remove_subscription, args).await?;
        match reply.status {
            Status::Ok => {
                let record = decode("subscription", &reply.string("subscription")?)?;
                Ok(Some(Committed { record, events: queued(events, reply)? }))
            }
            Status::None => Ok(None),
            status => Err(unexpected("remove_subscription", status)),
        }
    }

    async fn subscriptions_expiring_before(&self, t: DateTime<Utc>) -> Result<Vec<ExpiringSubscription>> {
        let found: Vec<Subscription> = self.expiring("subscription", t).await?;
        Ok(crate::expiring_subscriptions(found, t))
    }

    async fn insert_session(
        &self,
        mut session: MediaSession,
        events: Vec<NewEvent>,
    ) -> Result<Committed<MediaSession>> {
        session.revision = 1;
        let mut args = vec![session.id.clone(), encode(&session)?];
        args.extend(call_args(&session.sip_call_id));
        push_events(&mut args, &events)?;
        let reply = self.run(|s| &s.insert_session, args).await?;
        match reply.status {
            Status::Ok => Ok(Committed { record: session, events: queued(events, reply)? }),
            Status::Exists => Err(StoreError::AlreadyExists(format!("session {}", session.id))),
            status => Err(unexpected("insert_session", status)),
        }
    }

    async fn session(&self, id: &str) -> Result<Option<MediaSession>> {
        self.record("session", id).await
    }

    async fn sessions_of_call(&self, call_id: &str) -> Result<Vec<MediaSession>> {
        let mut found = self.set_records("session", vec!["sessions-of-call".into(), call_id.into()]).await?;
        crate::sort_sessions(&mut found);
        Ok(found)
    }

    async fn sessions_with_call(&self) -> Result<Vec<MediaSession>> {
        let mut found = self.set_records("session", vec!["sessions-with-call".into()]).await?;
        crate::sort_sessions(&mut found);
        Ok(found)
    }

    async fn replace_session(
        &self,
        mut session: MediaSession,
        events: Vec<NewEvent>,
    ) -> Result<Committed<MediaSession>> {
        let expected = session.revision;
        session.revision += 1;
        let mut args = vec![session.id.clone(), expected.to_string(), session.revision.to_string(), encode(&session)?];
        args.extend(call_args(&session.sip_call_id));
        push_events(&mut args, &events)?;
        let mut reply = self.run(|s| &s.replace_session, args).await?;
        let id = &session.id;
        match reply.status {
            Status::Ok => Ok(Committed { events: queued(events, reply)?, record: session }),
            Status::NotFound => Err(StoreError::NotFound(format!("session {id}"))),
            Status::Conflict => {
                let stored = reply.optional().unwrap_or_default();
                Err(StoreError::Conflict(format!("session {id} is at revision {stored}")))
            }
            status => Err(unexpected("replace_session", status)),
        }
    }

    async fn remove_session(&self, id: &str) -> Result<Option<MediaSession>> {
        let mut reply = self.run(|s| &s.remove_session, vec![id.into()]).await?;
        match reply.status {
            Status::Ok => Ok(Some(decode("session", &reply.string("session")?)?)),
            Status::None => Ok(None),
            status => Err(unexpected("remove_session", status)),
        }
    }

    async fn enqueue_notification(&self, notification: NewNotification) -> Result<u64> {
        outbox::enqueue_notification(self, notification).await
    }

    async fn pending_notifications(&self, limit: usize) -> Result<Vec<PendingNotification>> {
        outbox::pending(self, "notification", limit).await
    }

    async fn reschedule_notification(&self, id: u64, attempt: u32, not_before: DateTime<Utc>) -> Result<()> {
        outbox::reschedule(self, "notification", id, attempt, not_before).await
    }

    async fn remove_notification(&self, id: u64) -> Result<Option<PendingNotification>> {
        outbox::remove_notification(self, id).await
    }

    async fn enqueue_event(&self, event: NewEvent) -> Result<u64> {
        outbox::enqueue_event(self, event).await
    }

    async fn pending_events(&self, limit: usize) -> Result<Vec<PendingEvent>> {
        outbox::pending(self, "event", limit).await
    }

    async fn reschedule_event(&self, id: u64, attempt: u32, not_before: DateTime<Utc>) -> Result<()> {
        outbox::reschedule(self, "event", id, attempt, not_before).await
    }

    async fn route_event(&self, id: u64, notifications: Vec<NewNotification>) -> Result<Vec<u64>> {
        outbox::route_event(self, id, notifications).await
    }

    async fn dead_letter(&self, id: u64, last_error: &str, at: DateTime<Utc>) -> Result<DeadLetter> {
        outbox::dead_letter(self, id, last_error, at).await
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        outbox::dead_letters(self, limit).await
    }

    async fn replay_dead_letter(&self, id: u64, not_before: DateTime<Utc>) -> Result<Option<Undelivered>> {
        outbox::replay_dead_letter(self, id, not_before).await
    }

    async fn remove_dead_letter(&self, id: u64) -> Result<Option<DeadLetter>> {
        outbox::remove_dead_letter(self, id).await
    }

    async fn heartbeat(&self, address: &str, ttl: Duration) -> Result<()> {
        let reply = self.run(|s| &s.heartbeat, vec![address.into(), lease_millis(ttl)]).await?;
        match reply.status {
            Status::Ok => Ok(()),
            status => Err(unexpected("heartbeat", status)),
        }
    }

    async fn nodes(&self) -> Result<Vec<Node>> {
        let mut reply = self.run(|s| &s.nodes, vec![]).await?;
        if reply.status != Status::Ok {
            return Err(unexpected("nodes", reply.status));
        }
        let mut found = Vec::new();
        while !reply.is_empty() {
            found.push(Node { id: reply.string("node id")?, address: reply.optional() });
        }
        found.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(found)
    }

    async fn claim_takeover(&self, node: &str, ttl: Duration) -> Result<bool> {
        let reply = self.run(|s| &s.claim_takeover, vec![node.into(), lease_millis(ttl)]).await?;
        match reply.status {
            Status::Ok => Ok(true),
            Status::Conflict => Ok(false),
            status => Err(unexpected("claim_takeover", status)),
        }
    }

    async fn adopt_outbox(&self, node: &str) -> Result<Vec<Undelivered>> {
        outbox::adopt(self, node).await
    }

    async fn forget_node(&self, node: &str) -> Result<()> {
        let reply = self.run(|s| &s.forget_node, vec![node.into()]).await?;
        match reply.status {
            Status::Ok => Ok(()),
            status => Err(unexpected("forget_node", status)),
        }
    }
}

/// A lease as `PX` takes it: whole milliseconds, at least one (Redis refuses 0).
fn lease_millis(ttl: Duration) -> String {
    ttl.as_millis().max(1).to_string()
}
