//! Runs the conformance suite on both backends, and the redb backend's own durability tests.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::{MemoryStore, RedbStore, Store, StoreError, conformance};

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

/// One `#[test]` per conformance check and backend, so that failures are reported one by one.
macro_rules! conformance_tests {
    ($backend:ident, $new_store:expr, [$($check:ident),* $(,)?]) => {
        mod $backend {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    #[allow(clippy::redundant_closure_call)]
                    let (store, _dir): (Box<dyn Store>, Option<TempDir>) = ($new_store)();
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

macro_rules! both_backends {
    ($checks:tt) => {
        conformance_tests!(memory, || (Box::new(MemoryStore::new()) as Box<dyn Store>, None), $checks);
        conformance_tests!(
            redb,
            || {
                let dir = TempDir::new();
                (Box::new(RedbStore::open(dir.file()).unwrap()) as Box<dyn Store>, Some(dir))
            },
            $checks
        );
    };
}

both_backends!([
    registrations,
    registration_uniqueness,
    registration_expiry,
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
    assert_eq!(store.sessions_of_call("call-1").await.unwrap().iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["ses-1"]);
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
    const TASKS: u32 = 4;
    const UPDATES: u32 = 25;
    let store = MemoryStore::new();
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
