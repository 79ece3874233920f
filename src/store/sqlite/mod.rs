//! The embedded store: SQLite in the data directory, fed through a bounded queue.
//!
//! Guarantee: `publish` returns `Ok` only after the transaction holding the event has
//! committed (WAL, `synchronous=FULL`), so an acknowledged press survives `kill -9`
//! and power loss. One writer thread drains the queue and commits everything waiting
//! in one transaction (group commit): under load, one fsync covers hundreds of
//! presses. A full queue is refused at once ([`PublishError::Overloaded`]) instead of
//! making requests wait without bound. Inserts are idempotent on `event_id`.
//!
//! The write-ahead log stays bounded. A checkpoint thread copies the log into the
//! database every second (PASSIVE: never blocks the writer), but copying alone never
//! lets SQLite start the log again from its beginning: that happens only when a write
//! begins while every frame is copied, and under load the writer has always appended
//! a few commits since the last checkpoint began. So once the log passes
//! `WAL_RESTART_BYTES` the writer itself, between two batches, copies the little
//! that is left and restarts the log (`wal_checkpoint(RESTART)`); the next commit
//! writes at its beginning and trims the file to that size (`journal_size_limit`).
//!
//! Files: the store and its threads here; `write.rs` (the queue, the group-commit
//! writer), `wal.rs` (checkpoints and the log's bound), `read.rs` (statistics and
//! export), `migrations.rs` (the schema, from `migrations/*.sql`).

pub(super) mod migrations;
mod read;
mod wal;
mod write;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::mpsc;

use self::migrations::migrate;
pub use self::read::{presses, read_all, schema_version};
use self::wal::{WAL_RESTART_BYTES, WalLimit, checkpoint, checkpoint_loop};
use self::write::{Job, write_loop};

/// Most events committed in one transaction.
const MAX_BATCH: usize = 4096;

/// How long a press may wait for its commit before the visitor is told to retry.
/// Far above a healthy commit (milliseconds); reached only when the disk stalls.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the writer waits for a lock held by another process (an operator's
/// `sqlite3` shell, a backup) before failing the batch. Shorter than
/// [`COMMIT_TIMEOUT`] so visitors get the store's answer, not a timeout.
const LOCK_TIMEOUT: Duration = Duration::from_secs(2);

/// A batch in flight for longer than this makes the store report itself unready.
const STALL: Duration = Duration::from_secs(1);

/// The embedded event store.
pub struct SqliteStore {
    path: PathBuf,
    queue: StdMutex<Option<mpsc::Sender<Job>>>,
    writer: StdMutex<Option<std::thread::JoinHandle<()>>>,
    checkpointer: StdMutex<Option<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)>>,
    readers: Arc<[StdMutex<Connection>]>,
    health: Arc<WriterHealth>,
}

/// What the writer thread tells `/readyz`.
struct WriterHealth {
    /// Whether the last batch committed.
    last_ok: AtomicBool,
    /// When the batch in flight started (ms since `epoch`), 0 when idle.
    busy_since_ms: AtomicU64,
    epoch: Instant,
}

impl WriterHealth {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    fn is_healthy(&self) -> bool {
        let since = self.busy_since_ms.load(Ordering::Relaxed);
        let stalled = since != 0 && self.now_ms().saturating_sub(since) > STALL.as_millis() as u64;
        self.last_ok.load(Ordering::Relaxed) && !stalled
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

/// Opens a connection with the pragmas every connection needs.
fn connect(path: &Path, flags: OpenFlags) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(LOCK_TIMEOUT)?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating and migrating) `data_dir/events.sqlite3`, with a queue of
    /// `capacity` events in front of the writer.
    pub fn open(data_dir: &Path, capacity: usize) -> anyhow::Result<Self> {
        Self::open_with_wal_limit(data_dir, capacity, WAL_RESTART_BYTES)
    }

    /// [`Self::open`], restarting the write-ahead log past `wal_restart_bytes`.
    fn open_with_wal_limit(
        data_dir: &Path,
        capacity: usize,
        wal_restart_bytes: u64,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
        let path = data_dir.join("events.sqlite3");
        let mut conn = connect(&path, OpenFlags::default())
            .with_context(|| format!("cannot open {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // Checkpoints run on their own thread (below), not inside a commit, so a
        // press never waits for the log to be copied into the database.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        // After a restart, this connection's first commit trims the log file.
        conn.pragma_update(None, "journal_size_limit", wal_restart_bytes as i64)?;
        migrate(&mut conn, &path).with_context(|| format!("cannot migrate {}", path.display()))?;
        // Start from an empty log: whatever a crash left is copied now, before any
        // press waits on the writer.
        let (busy, _, _) = checkpoint(&conn, "TRUNCATE")?;
        if busy {
            tracing::warn!("another process holds the SQLite log; it is copied later");
        }

        let readers = (0..2)
            .map(|_| {
                connect(
                    &path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map(StdMutex::new)
            })
            .collect::<rusqlite::Result<Arc<[_]>>>()?;

        let (tx, rx) = mpsc::channel(capacity.max(1));
        let health = Arc::new(WriterHealth {
            last_ok: AtomicBool::new(true),
            busy_since_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        });
        let checkpointing = Arc::new(StdMutex::new(()));
        let writer = {
            let health = health.clone();
            let mut wal = WalLimit::new(
                &conn,
                wal_restart_bytes,
                checkpointing.clone(),
                readers.clone(),
            )?;
            std::thread::Builder::new()
                .name("sqlite-writer".into())
                .spawn(move || write_loop(conn, rx, &health, &mut wal))?
        };
        let (stop_checkpoints, stopped) = std::sync::mpsc::channel::<()>();
        let checkpointer = {
            let conn = connect(&path, OpenFlags::default())?;
            std::thread::Builder::new()
                .name("sqlite-checkpoint".into())
                .spawn(move || checkpoint_loop(&conn, &checkpointing, &stopped))?
        };
        Ok(SqliteStore {
            path,
            queue: StdMutex::new(Some(tx)),
            writer: StdMutex::new(Some(writer)),
            checkpointer: StdMutex::new(Some((stop_checkpoints, checkpointer))),
            readers,
            health,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::migrations::MIGRATIONS;
    use super::*;
    use crate::domain::{Action, Location, PressEvent};
    use crate::publish::{Publish, PublishError};
    use crate::stats::{MINUTE_US, StatsSource};
    use std::time::SystemTime;
    use uuid::Uuid;

    /// The write-ahead log of the database at `db`.
    fn wal_path(db: &Path) -> PathBuf {
        let mut name = db.as_os_str().to_owned();
        name.push("-wal");
        PathBuf::from(name)
    }

    fn event(action: Action, session: Uuid, code: &str) -> PressEvent {
        let mut l = Location::unknown();
        l.country_code = code.into();
        l.country_name = format!("Country {code}");
        PressEvent::new(action, session, l, Some(0), SystemTime::now())
    }

    #[tokio::test]
    async fn committed_events_are_counted_once_per_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), 16).unwrap();
        let s = Uuid::new_v4();
        let press = event(Action::PressButton, s, "NL");
        store
            .publish(event(Action::EnterPage, s, "NL"))
            .await
            .unwrap();
        store.publish(press.clone()).await.unwrap();
        store.publish(press.clone()).await.unwrap(); // redelivered: no double count
        store
            .publish(event(Action::PressButton, Uuid::new_v4(), "US"))
            .await
            .unwrap();
        store
            .publish(event(Action::PressButton, Uuid::new_v4(), "US"))
            .await
            .unwrap();

        let g = store.global().await.unwrap();
        assert_eq!(g.total, 3);
        assert_eq!(g.by_country[0].country_code, "US");
        assert_eq!(g.by_country[0].presses, 2);
        assert_eq!(store.session_presses(s).await.unwrap(), 1);
        assert_eq!(store.country_presses_since("NL", 0).await.unwrap(), 1);
        // Counts are kept per minute: the next one holds none.
        let next_minute = (press.timestamp.div_euclid(MINUTE_US) + 1) * MINUTE_US;
        assert_eq!(
            store
                .country_presses_since("NL", next_minute)
                .await
                .unwrap(),
            0
        );
        store.close().await;
        assert_eq!(read_all(store.path()).unwrap().len(), 4);
    }

    #[tokio::test]
    async fn reopening_keeps_the_data_and_the_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), 4).unwrap();
        store
            .publish(event(Action::PressButton, Uuid::new_v4(), "DE"))
            .await
            .unwrap();
        store.close().await;
        let again = SqliteStore::open(dir.path(), 4).unwrap();
        assert_eq!(
            schema_version(again.path()).unwrap(),
            Some(MIGRATIONS.len())
        );
        assert_eq!(read_all(again.path()).unwrap().len(), 1);
    }

    /// Sustained presses from many tasks (many group commits), with statistics reads
    /// running beside them the whole time: the log file never grows much past its
    /// limit, and every acknowledged press is stored and counted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn write_ahead_log_stays_bounded_under_sustained_writes() {
        const LIMIT: u64 = 1 << 20;
        // Past the limit by what the writer commits while the checkpoint thread
        // copies. Without restarts this load grows the log to tens of MiB.
        const BOUND: u64 = 4 * LIMIT;
        const TASKS: usize = 64;
        const PRESSES_EACH: usize = 500;
        let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());

        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open_with_wal_limit(dir.path(), TASKS, LIMIT).unwrap());
        let wal = wal_path(store.path());
        let done = Arc::new(AtomicBool::new(false));

        let watcher = {
            let (wal, done) = (wal.clone(), done.clone());
            tokio::task::spawn_blocking(move || {
                let mut largest = 0;
                loop {
                    largest = largest.max(size(&wal));
                    if done.load(Ordering::Relaxed) {
                        return largest;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };
        // Reads run from before the first press until after the last one.
        let reading = Arc::new(tokio::sync::Barrier::new(3));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (store, done, reading) = (store.clone(), done.clone(), reading.clone());
                tokio::spawn(async move {
                    let (mut last_total, mut first) = (0, true);
                    loop {
                        let total = store.global().await.unwrap().total;
                        assert!(total >= last_total, "the total went back");
                        last_total = total;
                        store.country_presses_since("NL", 0).await.unwrap();
                        if std::mem::take(&mut first) {
                            reading.wait().await;
                        }
                        if done.load(Ordering::Relaxed) {
                            return;
                        }
                    }
                })
            })
            .collect();
        reading.wait().await;
        let writers: Vec<_> = (0..TASKS)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let session = Uuid::new_v4();
                    let code = ["NL", "DE", "US", "FR"][i % 4];
                    for _ in 0..PRESSES_EACH {
                        store
                            .publish(event(Action::PressButton, session, code))
                            .await
                            .unwrap();
                    }
                    session
                })
            })
            .collect();
        let mut sessions = Vec::new();
        for w in writers {
            sessions.push(w.await.unwrap());
        }
        done.store(true, Ordering::Relaxed);
        let largest = watcher.await.unwrap();
        for r in readers {
            r.await.unwrap();
        }
        let acknowledged = TASKS * PRESSES_EACH;

        assert!(
            largest <= BOUND,
            "the log reached {largest} bytes during the load"
        );
        let after = size(&wal);
        assert!(after <= BOUND, "the log is {after} bytes after the load");
        assert_eq!(store.global().await.unwrap().total, acknowledged as u64);
        for s in sessions {
            assert_eq!(store.session_presses(s).await.unwrap(), PRESSES_EACH as u64);
        }
        store.close().await;
        assert_eq!(size(&wal), 0, "closing truncates the log");
        assert_eq!(read_all(store.path()).unwrap().len(), acknowledged);
    }

    #[tokio::test]
    async fn closed_store_refuses_events_and_is_not_ready() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), 4).unwrap();
        assert!(store.is_ready());
        store.close().await;
        assert!(!store.is_ready());
        let err = store
            .publish(event(Action::PressButton, Uuid::new_v4(), "DE"))
            .await;
        assert!(matches!(err, Err(PublishError::Closed)));
    }
}
