//! Runs the conformance suite on every backend, and the durable backends' own durability tests.

use std::any::Any;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::{MemoryStore, RedbStore, RedisConfig, RedisStore, Store, StoreError, conformance};

/// A directory of its own under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("camara-store-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn file(&self) -> PathBuf {
        self.0.join("state.redb")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh store, and what must live as long as it does (its directory, its server); `None`
/// when the backend cannot run here (its server is not installed).
type Opened = Option<(Box<dyn Store>, Box<dyn Any + Send>)>;

async fn open_memory() -> Opened {
    Some((Box::new(MemoryStore::new()), Box::new(())))
}

async fn open_redb() -> Opened {
    let dir = TempDir::new();
    let store = RedbStore::open(dir.file()).unwrap();
    Some((Box::new(store), Box::new(dir)))
}

async fn open_redis() -> Opened {
    let server = RedisServer::start()?;
    let store = server.connect("camara-test").await;
    Some((Box::new(store), Box::new(server)))
}

/// One `#[test]` per conformance check and backend, so that failures are reported one by one.
macro_rules! conformance_tests {
    ($backend:ident, $open:path, [$($check:ident),* $(,)?]) => {
        mod $backend {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let Some((store, _keep)) = $open().await else { return };
                    conformance::$check(&*store).await;
                }
            )*

            /// The list above covers the whole suite.
            #[test]
            fn covers_every_check() {
                let here = [$(stringify!($check)),*];
                let all: Vec<_> = conformance::ALL.iter().map(|(name, _)| *name).collect();
                assert_eq!(here.as_slice(), all.as_slice());
            }
        }
    };
}

macro_rules! every_backend {
    ($checks:tt) => {
        conformance_tests!(memory, open_memory, $checks);
        conformance_tests!(redb, open_redb, $checks);
        conformance_tests!(redis, open_redis, $checks);
    };
}

every_backend!([
    registrations,
    registration_uniqueness,
    registration_expiry,
    registration_move,
    subscriptions,
    subscription_update,
    subscription_expiry,
    sessions,
    session_update,
    session_compare_and_set,
    session_update_is_atomic,
    events_commit_with_the_write,
    outbox,
    event_outbox,
    dead_letters,
]);

#[tokio::test]
async fn redb_persists_across_reopen() {
    let dir = TempDir::new();
    conformance::persists(&mut || Box::new(RedbStore::open(dir.file()).unwrap())).await;
    // And once more, after the writes `check_filled` made.
    let store = RedbStore::open(dir.file()).unwrap();
    assert_eq!(store.session("ses-1").await.unwrap().unwrap().sequence, 7);
    assert_eq!(store.pending_notifications(10).await.unwrap().len(), 3);
}

/// A file written by schema 1 (one session per Call-ID) opens with its calls indexed.
#[tokio::test]
async fn redb_migrates_the_call_index_of_schema_1() {
    use ::redb::{ReadableDatabase, TableDefinition};
    let dir = TempDir::new();
    let session = conformance::session("ses-1", Some("call-1"), 0);
    RedbStore::open(dir.file()).unwrap().insert_session(session, vec![]).await.unwrap();
    {
        // Back to schema 1's layout: its index table, its version.
        let db = ::redb::Database::create(dir.file()).unwrap();
        let txn = db.begin_write().unwrap();
        txn.delete_table(TableDefinition::<(&str, &str), ()>::new("sessions_by_call_id")).unwrap();
        txn.open_table(TableDefinition::<&str, &str>::new("session_by_call_id"))
            .unwrap()
            .insert("call-1", "ses-1")
            .unwrap();
        txn.open_table(TableDefinition::<&str, u64>::new("meta")).unwrap().insert("schema_version", 1).unwrap();
        txn.commit().unwrap();
        let read = db.begin_read().unwrap();
        assert!(read.open_table(TableDefinition::<(&str, &str), ()>::new("sessions_by_call_id")).is_err());
    }
    let store = RedbStore::open(dir.file()).unwrap();
    assert_eq!(
        store.sessions_of_call("call-1").await.unwrap().iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["ses-1"]
    );
    assert_eq!(store.sessions_with_call().await.unwrap().len(), 1);
    drop(store);
    // Migrated once: the next open finds schema 2.
    assert_eq!(RedbStore::open(dir.file()).unwrap().sessions_of_call("call-1").await.unwrap().len(), 1);
}

#[test]
fn redb_file_is_locked_while_open() {
    let dir = TempDir::new();
    let _store = RedbStore::open(dir.file()).unwrap();
    let second = RedbStore::open(dir.file());
    assert!(matches!(second, Err(StoreError::Backend(_))), "second open: {:?}", second.err());
}

#[test]
fn redb_refuses_a_file_that_is_not_a_store() {
    let dir = TempDir::new();
    std::fs::write(dir.file(), b"not a redb file, but long enough to have a header or two......").unwrap();
    assert!(RedbStore::open(dir.file()).is_err());
}

/// Set in the child process of `redb_survives_a_crash` to the file to fill before aborting.
const CRASH_FILE_VAR: &str = "CAMARA_STORE_CRASH_FILE";

/// The child of `redb_survives_a_crash`; does nothing when run as a test of its own.
#[tokio::test]
async fn redb_crash_child() {
    let Some(path) = std::env::var_os(CRASH_FILE_VAR) else { return };
    let store = RedbStore::open(Path::new(&path)).unwrap();
    let filled = conformance::fill(&store).await;
    println!("filled: {:?}", filled.notification_ids);
    // Like kill -9: no destructor runs, the file is neither closed nor unlocked by redb.
    std::process::abort();
}

/// A process that dies without closing the store (as with kill -9) leaves a file that reopens
/// with every committed write.
#[tokio::test]
async fn redb_survives_a_crash() {
    let dir = TempDir::new();
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "tests::redb_crash_child", "--nocapture", "--test-threads=1"])
        .env(CRASH_FILE_VAR, dir.file())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "the child should have aborted: {stdout}");
    // The ids the child was handed, so that the check does not assume how ids are assigned.
    let ids = stdout
        .lines()
        .find_map(|l| l.split_once("filled: ").map(|(_, ids)| ids))
        .unwrap_or_else(|| panic!("child did not fill the store: {stdout}"));
    let notification_ids: Vec<u64> = ids.trim_matches(['[', ']']).split(", ").map(|id| id.parse().unwrap()).collect();

    let store = RedbStore::open(dir.file()).unwrap();
    conformance::check_filled(&store, &conformance::Filled { notification_ids }).await;
}

/// The compare-and-set loop of `Store::update_session`, from tasks running in parallel on two
/// threads over the memory backend (which never waits, so only threads make them race):
/// concurrent read-modify-writes lose no update.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_set_updates_lose_nothing_under_contention() {
    updates_lose_nothing_under_contention(MemoryStore::new()).await;
}

/// The same over Redis, where the writers' scripts interleave on the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_compare_and_set_updates_lose_nothing_under_contention() {
    let Some(server) = RedisServer::start() else { return };
    updates_lose_nothing_under_contention(server.connect("camara-test").await).await;
}

async fn updates_lose_nothing_under_contention(store: impl Store + Clone + 'static) {
    const TASKS: u32 = 4;
    const UPDATES: u32 = 25;
    store.insert_session(conformance::session("ses-1", Some("call-1"), 0), vec![]).await.unwrap();
    let writers: Vec<_> = (0..TASKS)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in 0..UPDATES {
                    let mut bump = |s: &mut crate::MediaSession| {
                        s.sequence += 1;
                        Vec::new()
                    };
                    store.update_session("ses-1", &mut bump).await.unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let stored = store.session("ses-1").await.unwrap().unwrap();
    assert_eq!(stored.sequence, TASKS * UPDATES);
    assert_eq!(stored.revision, 1 + u64::from(TASKS * UPDATES), "one write per update");
}

/// A `redis-server` of the test's own, on loopback, with its append-only file (synced on every
/// write) in a directory of its own; killed on drop.
struct RedisServer {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl RedisServer {
    /// A new server in a new directory; `None` (the test is skipped) where Redis is not
    /// installed, except in CI, which installs it (tests/install-peers.sh).
    fn start() -> Option<Self> {
        let installed = Command::new("redis-server").arg("--version").stdout(Stdio::null()).status().is_ok();
        if !installed {
            assert!(std::env::var_os("CI").is_none(), "redis-server is missing: run tests/install-peers.sh");
            eprintln!("redis-server is not installed (tests/install-peers.sh): skipped");
            return None;
        }
        let dir = TempDir::new();
        let (child, port) = spawn_redis(&dir.0);
        Some(RedisServer { child, port, dir })
    }

    async fn connect(&self, key_prefix: &str) -> RedisStore {
        self.connect_node(key_prefix, "node-1").await
    }

    async fn connect_node(&self, key_prefix: &str, node_id: &str) -> RedisStore {
        let url = format!("redis://127.0.0.1:{}/", self.port);
        RedisStore::connect(RedisConfig { url, key_prefix: key_prefix.into(), node_id: node_id.into() }).await.unwrap()
    }

    /// Kills the server as `kill -9` does, and starts another on its data.
    fn crash_and_restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        (self.child, self.port) = spawn_redis(&self.dir.0);
    }
}

/// Starts a `redis-server` on the data in `dir` (none, or an earlier server's append-only file)
/// and waits until it answers.
fn spawn_redis(dir: &Path) -> (Child, u16) {
    // The free port found may be taken before the server binds it (tests run in parallel): then
    // the server exits, and another port is tried.
    for _ in 0..5 {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port();
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
            if answers_ping(port) {
                return (child, port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("redis-server did not start");
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a Redis server on `port` answers `PING` (not while it loads its data).
fn answers_ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut answer = [0; 7];
    stream.write_all(b"PING\r\n").is_ok() && stream.read_exact(&mut answer).is_ok() && &answer == b"+PONG\r\n"
}

/// Blocks on `future` from a synchronous closure inside a multi-threaded test runtime.
fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(future))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_persists_across_reopen() {
    let Some(server) = RedisServer::start() else { return };
    conformance::persists(&mut || Box::new(block_on(server.connect("camara-test")))).await;
    // And once more, after the writes `check_filled` made.
    let store = server.connect("camara-test").await;
    assert_eq!(store.session("ses-1").await.unwrap().unwrap().sequence, 7);
    assert_eq!(store.pending_notifications(10).await.unwrap().len(), 3);
}

/// The server's durability settings are read back: synced on every write, or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_durability_settings_are_checked() {
    let Some(server) = RedisServer::start() else { return };
    let store = server.connect("camara-test").await;
    assert_eq!(store.durability_gap().await.unwrap(), None, "the test server syncs every write");
    let client = ::redis::Client::open(format!("redis://127.0.0.1:{}/", server.port)).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = ::redis::cmd("CONFIG")
        .arg("SET")
        .arg("appendfsync")
        .arg("everysec")
        .query_async(&mut connection)
        .await
        .unwrap();
    let gap = store.durability_gap().await.unwrap().expect("everysec can lose acknowledged writes");
    assert!(gap.contains("appendfsync everysec"), "{gap}");
}

/// A server killed with `kill -9` restarts from its append-only file with every acknowledged
/// write (it ran with `appendfsync always`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_survives_a_crash() {
    let Some(mut server) = RedisServer::start() else { return };
    let filled = conformance::fill(&server.connect("camara-test").await).await;
    server.crash_and_restart();
    conformance::check_filled(&server.connect("camara-test").await, &filled).await;
}

/// Gateways (or tests) with different key prefixes share a server without seeing each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_key_prefixes_keep_stores_apart() {
    let Some(server) = RedisServer::start() else { return };
    let one = server.connect("gateway-1").await;
    let two = server.connect("gateway-2").await;
    let filled = conformance::fill(&one).await;
    assert_eq!(two.registrations_of("+491", None).await.unwrap(), vec![]);
    assert_eq!(two.sessions_with_call().await.unwrap(), vec![]);
    assert_eq!(two.pending_notifications(10).await.unwrap(), vec![]);
    assert_eq!(two.dead_letters(10).await.unwrap(), vec![]);
    // Its own registration of the same device, and its own id sequence.
    two.insert_registration(conformance::registration("reg-1", "+491", "device-1", 100)).await.unwrap();
    assert_eq!(two.enqueue_event(conformance::event("e", 0)).await.unwrap(), 1);
    conformance::check_filled(&one, &filled).await;
}

/// The expiry indexes order times exactly, before 1970 too, and past the nanosecond range
/// (2262) the records' own times decide.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_expiry_indexes_hold_any_time() {
    use chrono::{TimeDelta, TimeZone, Utc};
    let Some(server) = RedisServer::start() else { return };
    let store = server.connect("camara-test").await;
    let epoch = Utc.timestamp_opt(0, 0).unwrap();
    let times = [
        ("reg-2300", Utc.with_ymd_and_hms(2300, 1, 1, 0, 0, 0).unwrap()),
        ("reg-1960", Utc.with_ymd_and_hms(1960, 1, 1, 0, 0, 0).unwrap()),
        ("reg-epoch", epoch),
        ("reg-2400", Utc.with_ymd_and_hms(2400, 1, 1, 0, 0, 0).unwrap()),
        ("reg-just-before-epoch", epoch - TimeDelta::nanoseconds(1)),
        ("reg-2030", conformance::at(0)),
    ];
    for (i, (id, at)) in times.iter().enumerate() {
        let registration =
            crate::Registration { expires_at: *at, ..conformance::registration(id, "+491", &format!("d{i}"), 0) };
        store.insert_registration(registration).await.unwrap();
    }
    let before = |t| {
        let store = store.clone();
        async move { store.registrations_expiring_before(t).await.unwrap().into_iter().map(|r| r.id).collect::<Vec<_>>() }
    };
    assert_eq!(before(epoch).await, ["reg-1960", "reg-just-before-epoch"]);
    assert_eq!(before(epoch + TimeDelta::nanoseconds(1)).await, ["reg-1960", "reg-just-before-epoch", "reg-epoch"]);
    assert_eq!(
        before(Utc.with_ymd_and_hms(2350, 1, 1, 0, 0, 0).unwrap()).await,
        ["reg-1960", "reg-just-before-epoch", "reg-epoch", "reg-2030", "reg-2300"]
    );
    assert_eq!(before(Utc.with_ymd_and_hms(1900, 1, 1, 0, 0, 0).unwrap()).await, Vec::<String>::new());
}

/// A subscription stored in other bytes than this build writes (another serialiser, an older
/// build) still matches the record read from it: the compare-and-set compares records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_subscription_compare_and_set_compares_records_not_bytes() {
    let Some(server) = RedisServer::start() else { return };
    let store = server.connect("camara-test").await;
    let original = conformance::subscription("sub-1", "+491", 0, Some(100), None);
    store.insert_subscription(original.clone()).await.unwrap();
    let pretty = serde_json::to_string_pretty(&original).unwrap();
    let client = ::redis::Client::open(format!("redis://127.0.0.1:{}/", server.port)).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let () = ::redis::cmd("HSET")
        .arg("camara-test:subscription:sub-1")
        .arg("json")
        .arg(&pretty)
        .query_async(&mut connection)
        .await
        .unwrap();

    let updated = store.update_subscription("sub-1", &mut |s| s.expires_at = Some(conformance::at(200))).await.unwrap();
    assert_eq!(updated.expires_at, Some(conformance::at(200)));
    assert_eq!(store.subscription("sub-1").await.unwrap(), Some(updated.clone()));
    let expiring = store.subscriptions_expiring_before(conformance::at(150)).await.unwrap();
    assert_eq!(expiring, vec![], "re-indexed at its new expiry");
    // A record that really changed is still a conflict.
    let stale = store.replace_subscription(&original, original.clone()).await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
}

/// Two nodes on one prefix see the same records, but each lists its own outbox; either may
/// still finish an entry of the other by id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_nodes_keep_their_outboxes_apart() {
    use conformance::{at, event, notification, session};
    let Some(server) = RedisServer::start() else { return };
    let a = server.connect_node("camara-test", "node-a").await;
    let b = server.connect_node("camara-test", "node-b").await;
    let n = a.enqueue_notification(notification("sub-1", "n", 0)).await.unwrap();
    let e = a.enqueue_event(event("e", 0)).await.unwrap();
    let inserted = a.insert_session(session("ses-1", Some("call-1"), 0), vec![event("s1", 0), event("s2", 0)]).await;
    let [s1, s2] = [0, 1].map(|i| inserted.as_ref().unwrap().events[i].id);
    let notification_ids = async |store: &RedisStore| {
        store.pending_notifications(10).await.unwrap().into_iter().map(|n| n.id).collect::<Vec<_>>()
    };
    let event_ids = async |store: &RedisStore| {
        store.pending_events(10).await.unwrap().into_iter().map(|e| e.id).collect::<Vec<_>>()
    };

    assert_eq!(b.session("ses-1").await.unwrap().map(|s| s.id), Some("ses-1".into()));
    assert_eq!(notification_ids(&b).await, Vec::<u64>::new());
    assert_eq!(event_ids(&b).await, Vec::<u64>::new());
    assert_eq!(notification_ids(&a).await, [n]);
    assert_eq!(event_ids(&a).await, [e, s1, s2]);

    b.reschedule_notification(n, 1, at(5)).await.unwrap();
    b.reschedule_event(e, 2, at(6)).await.unwrap();
    let pending = a.pending_notifications(10).await.unwrap();
    assert_eq!((pending[0].attempt, pending[0].not_before), (1, at(5)));
    let pending = a.pending_events(10).await.unwrap();
    assert_eq!((pending[0].attempt, pending[0].not_before), (2, at(6)));

    assert_eq!(b.remove_notification(n).await.unwrap().map(|n| n.id), Some(n));
    assert_eq!(notification_ids(&a).await, Vec::<u64>::new());
    assert_eq!(b.remove_notification(n).await.unwrap(), None);

    // Dead letters are of no node: both see it, and the one that replays it delivers it.
    assert_eq!(b.dead_letter(e, "refused", at(7)).await.unwrap().id(), e);
    assert_eq!(event_ids(&a).await, [s1, s2]);
    assert_eq!(a.dead_letters(10).await.unwrap().iter().map(|d| d.id()).collect::<Vec<_>>(), [e]);
    let replayed = a.replay_dead_letter(e, at(8)).await.unwrap().unwrap().id();
    assert_eq!(event_ids(&a).await, [s1, s2, replayed]);
    assert_eq!(event_ids(&b).await, Vec::<u64>::new());

    // The routing node delivers what it routed.
    let routed = b.route_event(s1, vec![notification("sub-1", "routed", 0)]).await.unwrap();
    assert_eq!(event_ids(&a).await, [s2, replayed]);
    assert_eq!(notification_ids(&b).await, routed);
    assert_eq!(notification_ids(&a).await, Vec::<u64>::new());
}

/// A node that stops renewing its lease shows as dead; one survivor wins its takeover and adopts
/// its outbox, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_survivor_adopts_a_dead_nodes_outbox() {
    use crate::{Node, Undelivered};
    use conformance::{event, notification, session};
    let Some(server) = RedisServer::start() else { return };
    let a = server.connect_node("camara-test", "node-a").await;
    let b = server.connect_node("camara-test", "node-b").await;
    let c = server.connect_node("camara-test", "node-c").await;
    a.heartbeat("http://node-a.internal:8080", Duration::from_millis(500)).await.unwrap();
    b.heartbeat("http://node-b.internal:8080", Duration::from_secs(60)).await.unwrap();
    let alive = |id: &str| Node { id: id.into(), address: Some(format!("http://{id}.internal:8080")) };
    assert_eq!(b.nodes().await.unwrap(), [alive("node-a"), alive("node-b")]);

    a.enqueue_notification(notification("sub-1", "n1", 0)).await.unwrap();
    a.enqueue_event(event("e1", 0)).await.unwrap();
    let own = b.enqueue_notification(notification("sub-1", "of b", 0)).await.unwrap();
    a.enqueue_notification(notification("sub-1", "n2", 0)).await.unwrap();
    a.insert_session(session("ses-1", None, 0), vec![event("s1", 0)]).await.unwrap();
    let mut left: Vec<_> =
        a.pending_notifications(10).await.unwrap().into_iter().map(Undelivered::Notification).collect();
    left.extend(a.pending_events(10).await.unwrap().into_iter().map(Undelivered::Event));
    left.sort_by_key(Undelivered::id);
    assert_eq!(left.len(), 4);

    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(b.nodes().await.unwrap(), [Node { id: "node-a".into(), address: None }, alive("node-b")]);
    assert!(b.claim_takeover("node-a", Duration::from_secs(10)).await.unwrap());
    assert!(b.claim_takeover("node-a", Duration::from_secs(10)).await.unwrap(), "held already");
    assert!(!c.claim_takeover("node-a", Duration::from_secs(10)).await.unwrap());

    assert_eq!(b.adopt_outbox("node-a").await.unwrap(), left);
    let ids = |kind: fn(&&Undelivered) -> bool| left.iter().filter(kind).map(Undelivered::id).collect::<Vec<_>>();
    let mut notifications = ids(|e| matches!(e, Undelivered::Notification(_)));
    notifications.push(own);
    notifications.sort();
    let pending_ids = async || {
        let notifications = b.pending_notifications(10).await.unwrap().into_iter().map(|n| n.id).collect::<Vec<_>>();
        (notifications, b.pending_events(10).await.unwrap().into_iter().map(|e| e.id).collect::<Vec<_>>())
    };
    assert_eq!(pending_ids().await, (notifications, ids(|e| matches!(e, Undelivered::Event(_)))));
    assert_eq!(a.pending_notifications(10).await.unwrap(), vec![]);
    assert_eq!(a.pending_events(10).await.unwrap(), vec![]);
    assert_eq!(b.adopt_outbox("node-a").await.unwrap(), vec![]);
    let before = pending_ids().await;
    assert_eq!(b.adopt_outbox("node-b").await.unwrap(), vec![]);
    assert_eq!(pending_ids().await, before, "its own outbox stays as it is");

    b.forget_node("node-a").await.unwrap();
    assert_eq!(b.nodes().await.unwrap(), [alive("node-b")]);
    c.forget_node("node-b").await.unwrap();
    assert_eq!(c.nodes().await.unwrap(), [alive("node-b")], "alive: kept");
}

/// Entries queued before nodes were named (in one index of no node, without a `node` field)
/// become the outbox of the first node that lists its pending entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outbox_of_no_node_goes_to_the_first_node_that_asks() {
    let Some(server) = RedisServer::start() else { return };
    let a = server.connect_node("camara-test", "node-a").await;
    let b = server.connect_node("camara-test", "node-b").await;
    let n = a.enqueue_notification(conformance::notification("sub-1", "n", 0)).await.unwrap();
    let m = a.enqueue_notification(conformance::notification("sub-1", "m", 0)).await.unwrap();
    // Back to the layout before nodes.
    let client = ::redis::Client::open(format!("redis://127.0.0.1:{}/", server.port)).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    for id in [n, m] {
        let () = ::redis::pipe()
            .cmd("HDEL")
            .arg(format!("camara-test:notification:{id}"))
            .arg("node")
            .ignore()
            .cmd("ZREM")
            .arg("camara-test:notifications:node-a")
            .arg(id)
            .ignore()
            .cmd("ZADD")
            .arg("camara-test:notifications")
            .arg(id)
            .arg(id)
            .ignore()
            .query_async(&mut connection)
            .await
            .unwrap();
    }
    // One is delivered before any node lists the outbox.
    assert_eq!(a.remove_notification(m).await.unwrap().map(|n| n.id), Some(m));
    assert_eq!(b.pending_notifications(10).await.unwrap().into_iter().map(|n| n.id).collect::<Vec<_>>(), [n]);
    assert_eq!(a.pending_notifications(10).await.unwrap(), vec![]);
    assert_eq!(a.remove_notification(n).await.unwrap().map(|n| n.id), Some(n));
    assert_eq!(b.pending_notifications(10).await.unwrap(), vec![]);
}
