//! The Lua scripts behind every [`RedisStore`](super::RedisStore) method.
//!
//! Redis runs a script alone, start to end, so each one is an atomic read or write of several
//! keys; the caller's data arrives as `ARGV`, never as code. Keys are named here and only here:
//! `ARGV[1]` carries this node's id and the key prefix, as `{byte length of the id}:{id}{prefix}`
//! (so that either may hold any byte); [`PRELUDE`] splits it into `N` and `P`, and its
//! `key(...)` joins the prefix to the rest with `:`. A script's own arguments start at `ARGV[2]`.
//!
//! Outbox entries are queued under this node (`N`): their hash names it (`node`), and it indexes
//! them. A script that takes an entry out of the outbox by id finds its index through the entry's
//! `node`, so that any node may remove, reschedule, dead-letter or route an entry of another.
//!
//! Every script answers a flat array: a status (`ok`, `none`, `exists`, `not_found`, `conflict`)
//! and then strings, `false` (read as nil) where a record an index names is missing. Ids are
//! kept as strings throughout: a Lua number turned into a string by Redis has 14 significant
//! digits, so `INCR`'s answer goes through `string.format('%d')` once and stays a string.

use redis::Script;

/// Prepended to every script.
const PRELUDE: &str = r#"
local N, P
do
  local colon = string.find(ARGV[1], ':', 1, true)
  local stop = colon + tonumber(string.sub(ARGV[1], 1, colon - 1))
  N, P = string.sub(ARGV[1], colon + 1, stop), string.sub(ARGV[1], stop + 1)
end
local function key(...) return P .. ':' .. table.concat({...}, ':') end

-- Appends the JSON of the records of `kind` named by `ids` to `out`.
local function records(kind, ids, out)
  for _, id in ipairs(ids) do
    out[#out + 1] = redis.call('HGET', key(kind, id), 'json')
  end
  return out
end

-- Queues an outbox entry of `kind` ('notification' or 'event') under this node, appending its
-- new id to `out`.
local function push(kind, body, not_before, out)
  local id = string.format('%d', redis.call('INCR', key('next-id')))
  redis.call('HSET', key(kind, id), 'body', body, 'attempt', '0', 'not_before', not_before,
    'first_due', not_before, 'node', N)
  redis.call('ZADD', key(kind .. 's', N), id, id)
  out[#out + 1] = id
end

-- Takes the outbox entry `id` of `kind` out of its node's index, before its hash goes. An entry
-- without a node was queued before nodes were named, in the index of no node (see `PENDING`).
local function unindex(kind, id)
  local node = redis.call('HGET', key(kind, id), 'node')
  if node then
    redis.call('ZREM', key(kind .. 's', node), id)
  else
    redis.call('ZREM', key(kind .. 's'), id)
  end
end

-- Queues the entries given as (body, not_before) pairs from ARGV[from] on.
local function push_all(kind, from, out)
  for i = from, #ARGV, 2 do push(kind, ARGV[i], ARGV[i + 1], out) end
  return out
end

-- Appends a dead letter's fields to `out`, in the order `dead_letter` in Rust reads them.
local function dead(id, out)
  out[#out + 1] = id
  for _, v in ipairs(redis.call('HMGET', key('dead-letter', id), 'kind', 'body', 'attempt', 'not_before',
      'first_due', 'last_error', 'dead_at')) do
    out[#out + 1] = v
  end
  return out
end
"#;

/// `kind`, `id` -> the record's JSON, or nil.
const GET_RECORD: &str = r#"
return {'ok', redis.call('HGET', key(ARGV[2], ARGV[3]), 'json')}
"#;

/// `kind`, set name, [set argument] -> the records of `kind` whose ids the set holds.
const SET_RECORDS: &str = r#"
return records(ARGV[2], redis.call('SMEMBERS', key(ARGV[3], ARGV[4])), {'ok'})
"#;

/// `kind`, upper bound -> the records whose `{kind}-expiry` member sorts below the bound.
const EXPIRING: &str = r#"
local ids = {}
for _, m in ipairs(redis.call('ZRANGEBYLEX', key(ARGV[2] .. '-expiry'), '-', ARGV[3])) do
  ids[#ids + 1] = string.sub(m, string.find(m, ':', 1, true) + 1)
end
return records(ARGV[2], ids, {'ok'})
"#;

/// `id`, phone number, device id, JSON, expiry member.
const INSERT_REGISTRATION: &str = r#"
local id, phone, device = ARGV[2], ARGV[3], ARGV[4]
local rk = key('registration', id)
if redis.call('EXISTS', rk) == 1 then return {'exists', 'id'} end
local dk = key('registrations-of', phone)
if redis.call('HEXISTS', dk, device) == 1 then return {'exists', 'device'} end
redis.call('HSET', rk, 'json', ARGV[5], 'phone', phone, 'device', device, 'expiry', ARGV[6])
redis.call('HSET', dk, device, id)
redis.call('ZADD', key('registration-expiry'), 0, ARGV[6])
return {'ok'}
"#;

/// Phone number, [device id].
const REGISTRATIONS_OF: &str = r#"
local dk = key('registrations-of', ARGV[2])
local ids
if ARGV[3] then
  local id = redis.call('HGET', dk, ARGV[3])
  ids = id and {id} or {}
else
  ids = redis.call('HVALS', dk)
end
return records('registration', ids, {'ok'})
"#;

/// `id`, JSON as read, new JSON, new expiry member: compare-and-set on the stored bytes.
const REPLACE_REGISTRATION: &str = r#"
local rk = key('registration', ARGV[2])
local h = redis.call('HMGET', rk, 'json', 'expiry')
if not h[1] then return {'not_found'} end
if h[1] ~= ARGV[3] then return {'conflict'} end
local ek = key('registration-expiry')
redis.call('ZREM', ek, h[2])
redis.call('ZADD', ek, 0, ARGV[5])
redis.call('HSET', rk, 'json', ARGV[4], 'expiry', ARGV[5])
return {'ok'}
"#;

/// `id`, events -> the removed JSON and the events' ids.
const REMOVE_REGISTRATION: &str = r#"
local rk = key('registration', ARGV[2])
local h = redis.call('HMGET', rk, 'json', 'phone', 'device', 'expiry')
if not h[1] then return {'none'} end
redis.call('DEL', rk)
redis.call('HDEL', key('registrations-of', h[2]), h[3])
redis.call('ZREM', key('registration-expiry'), h[4])
return push_all('event', 3, {'ok', h[1]})
"#;

/// `id`, owner, JSON, expiry member ('' for a subscription that never ends).
const INSERT_SUBSCRIPTION: &str = r#"
local id = ARGV[2]
local sk = key('subscription', id)
if redis.call('EXISTS', sk) == 1 then return {'exists'} end
redis.call('HSET', sk, 'json', ARGV[4], 'owner', ARGV[3], 'expiry', ARGV[5])
redis.call('SADD', key('subscriptions-of', ARGV[3]), id)
if ARGV[5] ~= '' then redis.call('ZADD', key('subscription-expiry'), 0, ARGV[5]) end
return {'ok'}
"#;

/// `id`, expected JSON, new JSON, new owner, new expiry member -> on a conflict, the stored JSON
/// (the caller decides whether it is the expected record in other bytes).
const REPLACE_SUBSCRIPTION: &str = r#"
local id = ARGV[2]
local sk = key('subscription', id)
local h = redis.call('HMGET', sk, 'json', 'owner', 'expiry')
if not h[1] then return {'not_found'} end
if h[1] ~= ARGV[3] then return {'conflict', h[1]} end
redis.call('SREM', key('subscriptions-of', h[2]), id)
if h[3] ~= '' then redis.call('ZREM', key('subscription-expiry'), h[3]) end
redis.call('HSET', sk, 'json', ARGV[4], 'owner', ARGV[5], 'expiry', ARGV[6])
redis.call('SADD', key('subscriptions-of', ARGV[5]), id)
if ARGV[6] ~= '' then redis.call('ZADD', key('subscription-expiry'), 0, ARGV[6]) end
return {'ok'}
"#;

/// `id`, events -> the removed JSON and the events' ids.
const REMOVE_SUBSCRIPTION: &str = r#"
local id = ARGV[2]
local sk = key('subscription', id)
local h = redis.call('HMGET', sk, 'json', 'owner', 'expiry')
if not h[1] then return {'none'} end
redis.call('DEL', sk)
redis.call('SREM', key('subscriptions-of', h[2]), id)
if h[3] ~= '' then redis.call('ZREM', key('subscription-expiry'), h[3]) end
return push_all('event', 3, {'ok', h[1]})
"#;

/// `id`, JSON, '1' and the Call-ID if it has one ('0', '' if not), events -> the events' ids.
/// The hash has a `call` field exactly when the session has a Call-ID (which may be '').
const INSERT_SESSION: &str = r#"
local id = ARGV[2]
local sk = key('session', id)
if redis.call('EXISTS', sk) == 1 then return {'exists'} end
redis.call('HSET', sk, 'json', ARGV[3], 'rev', '1')
if ARGV[4] == '1' then
  redis.call('HSET', sk, 'call', ARGV[5])
  redis.call('SADD', key('sessions-of-call', ARGV[5]), id)
  redis.call('SADD', key('sessions-with-call'), id)
end
return push_all('event', 6, {'ok'})
"#;

/// `id`, expected revision, new revision, JSON, has-call flag, Call-ID, events -> the events'
/// ids.
const REPLACE_SESSION: &str = r#"
local id = ARGV[2]
local sk = key('session', id)
local h = redis.call('HMGET', sk, 'rev', 'call')
if not h[1] then return {'not_found'} end
if h[1] ~= ARGV[3] then return {'conflict', h[1]} end
if h[2] then
  redis.call('SREM', key('sessions-of-call', h[2]), id)
  redis.call('SREM', key('sessions-with-call'), id)
  redis.call('HDEL', sk, 'call')
end
if ARGV[6] == '1' then
  redis.call('HSET', sk, 'call', ARGV[7])
  redis.call('SADD', key('sessions-of-call', ARGV[7]), id)
  redis.call('SADD', key('sessions-with-call'), id)
end
redis.call('HSET', sk, 'json', ARGV[5], 'rev', ARGV[4])
return push_all('event', 8, {'ok'})
"#;

/// `id` -> the removed JSON.
const REMOVE_SESSION: &str = r#"
local id = ARGV[2]
local sk = key('session', id)
local h = redis.call('HMGET', sk, 'json', 'call')
if not h[1] then return {'none'} end
redis.call('DEL', sk)
if h[2] then
  redis.call('SREM', key('sessions-of-call', h[2]), id)
  redis.call('SREM', key('sessions-with-call'), id)
end
return {'ok', h[1]}
"#;

/// `kind`, then (body, not_before) pairs -> their ids.
const ENQUEUE: &str = r#"
return push_all(ARGV[2], 3, {'ok'})
"#;

/// `kind`, last rank -> (id, body, attempt, not_before, first_due) per entry of this node, in id
/// order. The entries of the layout before nodes were named, in one index of no node, become the
/// entries of the first node that asks.
const PENDING: &str = r#"
local mine = key(ARGV[2] .. 's', N)
local legacy = key(ARGV[2] .. 's')
for _, id in ipairs(redis.call('ZRANGE', legacy, 0, -1)) do
  redis.call('HSET', key(ARGV[2], id), 'node', N)
  redis.call('ZADD', mine, id, id)
end
redis.call('DEL', legacy)
local out = {'ok'}
for _, id in ipairs(redis.call('ZRANGE', mine, 0, ARGV[3])) do
  out[#out + 1] = id
  for _, v in ipairs(redis.call('HMGET', key(ARGV[2], id), 'body', 'attempt', 'not_before', 'first_due')) do
    out[#out + 1] = v
  end
end
return out
"#;

/// `kind`, `id`, attempt, not_before.
const RESCHEDULE: &str = r#"
local k = key(ARGV[2], ARGV[3])
if redis.call('EXISTS', k) == 0 then return {'not_found'} end
redis.call('HSET', k, 'attempt', ARGV[4], 'not_before', ARGV[5])
return {'ok'}
"#;

/// `kind`, `id` -> the removed entry: id, body, attempt, not_before, first_due.
const REMOVE_ENTRY: &str = r#"
local k = key(ARGV[2], ARGV[3])
local h = redis.call('HMGET', k, 'body', 'attempt', 'not_before', 'first_due')
if not h[1] then return {'none'} end
unindex(ARGV[2], ARGV[3])
redis.call('DEL', k)
return {'ok', ARGV[3], h[1], h[2], h[3], h[4]}
"#;

/// Event `id`, then the notifications' (body, not_before) pairs -> their ids.
const ROUTE_EVENT: &str = r#"
local k = key('event', ARGV[2])
if redis.call('EXISTS', k) == 0 then return {'not_found'} end
unindex('event', ARGV[2])
redis.call('DEL', k)
return push_all('notification', 3, {'ok'})
"#;

/// `id`, last error, dead_at -> the dead letter. The entry's hash moves as it is, keeping its
/// schedule (and the node that queued it), and gains the dead letter's fields. Dead letters are
/// of no node: any node lists, replays or purges them.
const DEAD_LETTER: &str = r#"
local id = ARGV[2]
local kind
for _, k in ipairs({'notification', 'event'}) do
  if redis.call('EXISTS', key(k, id)) == 1 then
    kind = k
    break
  end
end
if not kind then return {'not_found'} end
local dk = key('dead-letter', id)
unindex(kind, id)
redis.call('RENAME', key(kind, id), dk)
redis.call('HSET', dk, 'kind', kind, 'last_error', ARGV[3], 'dead_at', ARGV[4])
redis.call('ZADD', key('dead-letters'), id, id)
return dead(id, {'ok'})
"#;

/// Last rank -> the dead letters' fields, in id order.
const DEAD_LETTERS: &str = r#"
local out = {'ok'}
for _, id in ipairs(redis.call('ZRANGE', key('dead-letters'), 0, ARGV[2])) do dead(id, out) end
return out
"#;

/// `id` -> the removed dead letter.
const REMOVE_DEAD_LETTER: &str = r#"
local id = ARGV[2]
local dk = key('dead-letter', id)
if redis.call('EXISTS', dk) == 0 then return {'none'} end
local out = dead(id, {'ok'})
redis.call('DEL', dk)
redis.call('ZREM', key('dead-letters'), id)
return out
"#;

/// `id`, not_before -> the kind, the body and the new id of the entry put back, under this node.
const REPLAY_DEAD_LETTER: &str = r#"
local id = ARGV[2]
local dk = key('dead-letter', id)
local h = redis.call('HMGET', dk, 'kind', 'body')
if not h[1] then return {'none'} end
-- Checked before it names keys: a damaged kind must not write elsewhere.
if (h[1] ~= 'notification' and h[1] ~= 'event') or not h[2] then return {'corrupt'} end
redis.call('DEL', dk)
redis.call('ZREM', key('dead-letters'), id)
local out = {'ok', h[1], h[2]}
push(h[1], h[2], ARGV[3], out)
return out
"#;

/// Address, lease in milliseconds: this node is alive.
const HEARTBEAT: &str = r#"
redis.call('SET', key('node', N), ARGV[2], 'PX', ARGV[3])
redis.call('SADD', key('nodes'), N)
return {'ok'}
"#;

/// -> (id, address or nil) per node known, in no order.
const NODES: &str = r#"
local out = {'ok'}
for _, id in ipairs(redis.call('SMEMBERS', key('nodes'))) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('GET', key('node', id))
end
return out
"#;

/// Dead node, lease in milliseconds -> `ok` if this node holds the takeover claim (renewed when it
/// held it already), `conflict` if another does.
const CLAIM_TAKEOVER: &str = r#"
local k = key('takeover', ARGV[2])
if redis.call('SET', k, N, 'NX', 'PX', ARGV[3]) then return {'ok'} end
if redis.call('GET', k) ~= N then return {'conflict'} end
redis.call('PEXPIRE', k, ARGV[3])
return {'ok'}
"#;

/// Dead node -> (kind, id, body, attempt, not_before, first_due) per entry moved from its indexes
/// to this node's, notifications first, each kind in id order.
const ADOPT_OUTBOX: &str = r#"
local out = {'ok'}
if ARGV[2] == N then return out end
for _, kind in ipairs({'notification', 'event'}) do
  local theirs, mine = key(kind .. 's', ARGV[2]), key(kind .. 's', N)
  for _, id in ipairs(redis.call('ZRANGE', theirs, 0, -1)) do
    local k = key(kind, id)
    redis.call('HSET', k, 'node', N)
    redis.call('ZADD', mine, id, id)
    out[#out + 1] = kind
    out[#out + 1] = id
    for _, v in ipairs(redis.call('HMGET', k, 'body', 'attempt', 'not_before', 'first_due')) do
      out[#out + 1] = v
    end
  end
  redis.call('DEL', theirs)
end
return out
"#;

/// Dead node: forgotten unless its lease is back.
const FORGET_NODE: &str = r#"
if redis.call('EXISTS', key('node', ARGV[2])) == 0 then redis.call('SREM', key('nodes'), ARGV[2]) end
return {'ok'}
"#;

/// Every script, loaded once per process (their hashes are computed here, and `EVALSHA` falls
/// back to loading the script when a server does not know it yet, e.g. after a restart).
pub(super) struct Scripts {
    pub get_record: Script,
    pub set_records: Script,
    pub expiring: Script,
    pub insert_registration: Script,
    pub registrations_of: Script,
    pub replace_registration: Script,
    pub remove_registration: Script,
    pub insert_subscription: Script,
    pub replace_subscription: Script,
    pub remove_subscription: Script,
    pub insert_session: Script,
    pub replace_session: Script,
    pub remove_session: Script,
    pub enqueue: Script,
    pub pending: Script,
    pub reschedule: Script,
    pub remove_entry: Script,
    pub route_event: Script,
    pub dead_letter: Script,
    pub dead_letters: Script,
    pub remove_dead_letter: Script,
    pub replay_dead_letter: Script,
    pub heartbeat: Script,
    pub nodes: Script,
    pub claim_takeover: Script,
    pub adopt_outbox: Script,
    pub forget_node: Script,
}

impl Scripts {
    pub fn new() -> Self {
        let script = |body: &str| Script::new(&format!("{PRELUDE}{body}"));
        Scripts {
            get_record: script(GET_RECORD),
            set_records: script(SET_RECORDS),
            expiring: script(EXPIRING),
            insert_registration: script(INSERT_REGISTRATION),
            registrations_of: script(REGISTRATIONS_OF),
            replace_registration: script(REPLACE_REGISTRATION),
            remove_registration: script(REMOVE_REGISTRATION),
            insert_subscription: script(INSERT_SUBSCRIPTION),
            replace_subscription: script(REPLACE_SUBSCRIPTION),
            remove_subscription: script(REMOVE_SUBSCRIPTION),
            insert_session: script(INSERT_SESSION),
            replace_session: script(REPLACE_SESSION),
            remove_session: script(REMOVE_SESSION),
            enqueue: script(ENQUEUE),
            pending: script(PENDING),
            reschedule: script(RESCHEDULE),
            remove_entry: script(REMOVE_ENTRY),
            route_event: script(ROUTE_EVENT),
            dead_letter: script(DEAD_LETTER),
            dead_letters: script(DEAD_LETTERS),
            remove_dead_letter: script(REMOVE_DEAD_LETTER),
            replay_dead_letter: script(REPLAY_DEAD_LETTER),
            heartbeat: script(HEARTBEAT),
            nodes: script(NODES),
            claim_takeover: script(CLAIM_TAKEOVER),
            adopt_outbox: script(ADOPT_OUTBOX),
            forget_node: script(FORGET_NODE),
        }
    }
}
