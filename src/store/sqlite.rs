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
//! [`WAL_RESTART_BYTES`] the writer itself, between two batches, copies the little
//! that is left and restarts the log (`wal_checkpoint(RESTART)`); the next commit
//! writes at its beginning and trims the file to that size (`journal_size_limit`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::domain::PressEvent;
use crate::publish::{Publish, PublishError};
use crate::stats::{CountryPresses, GlobalStats, StatsError, StatsSource};

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

/// Size of the write-ahead log past which the writer restarts it, and to which the
/// file is trimmed after a restart. Under full load the log grows by 20-30 MiB/s
/// (every group commit appends whole 4 KiB pages; see BENCHMARKS.md), so this is a
/// restart every few seconds; by then the passive checkpoints have copied all but
/// the last second of the log, so a restart costs the writer milliseconds, not a
/// full copy. Small enough that disk use and crash recovery (which reads the whole
/// log) stay small.
const WAL_RESTART_BYTES: u64 = 64 << 20;

/// How long a restart waits for another process that reads the database (an
/// operator's `sqlite3` shell, a backup) before giving up until [`RESTART_RETRY`].
/// Presses queue behind the writer meanwhile, so this stays short. (This store's own
/// reads are held back for the restart instead: see [`WalLimit`].)
const RESTART_LOCK_WAIT: Duration = Duration::from_millis(100);

/// After a restart was refused (another process held the log), when the writer
/// tries again.
const RESTART_RETRY: Duration = Duration::from_secs(1);

/// Schema versions, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[r#"
    CREATE TABLE events (
        event_id         TEXT PRIMARY KEY,
        session_id       TEXT NOT NULL,
        timestamp        INTEGER NOT NULL,
        action           TEXT NOT NULL,
        country_code     TEXT NOT NULL,
        country_name     TEXT NOT NULL,
        subdivision_name TEXT NOT NULL,
        subdivision_code TEXT NOT NULL,
        city_name        TEXT NOT NULL,
        latitude         REAL,
        longitude        REAL,
        cohort           INTEGER
    ) WITHOUT ROWID;
    CREATE INDEX events_presses_by_session
        ON events (session_id) WHERE action = 'PressButton';
    CREATE INDEX events_presses_by_country_time
        ON events (country_code, timestamp) WHERE action = 'PressButton';
    -- Maintained in the same transaction as the inserts, so reading the totals
    -- never scans the events.
    CREATE TABLE presses_by_country (
        country_code TEXT PRIMARY KEY,
        country_name TEXT NOT NULL,
        presses      INTEGER NOT NULL
    ) WITHOUT ROWID;
"#];

struct Job {
    event: PressEvent,
    done: oneshot::Sender<Result<(), Arc<rusqlite::Error>>>,
}

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
        migrate(&mut conn).with_context(|| format!("cannot migrate {}", path.display()))?;
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
            let mut wal = WalLimit {
                path: wal_path(&path),
                max_bytes: wal_restart_bytes,
                checkpointing: checkpointing.clone(),
                readers: readers.clone(),
                retry_at: None,
            };
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
            readers: readers.into(),
            health,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a read connection, off the async runtime.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StatsError> {
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            // Any free connection; else wait for the first.
            let guard = readers
                .iter()
                .find_map(|r| r.try_lock().ok())
                .unwrap_or_else(|| readers[0].lock().unwrap_or_else(|p| p.into_inner()));
            f(&guard)
        })
        .await
        .map_err(|e| StatsError::read("SQLite", e))?
        .map_err(|e| StatsError::read("SQLite", e))
    }
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let done: usize = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for sql in MIGRATIONS.iter().skip(done) {
        tx.execute_batch(sql)?;
    }
    tx.pragma_update(None, "user_version", MIGRATIONS.len())?;
    tx.commit()
}

/// The write-ahead log of the database at `db`.
fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// Runs `PRAGMA wal_checkpoint(mode)`: whether it was refused (SQLite's "busy"), the
/// frames in the log and the frames copied.
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<(bool, i64, i64)> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok((r.get::<_, i64>(0)? != 0, r.get(1)?, r.get(2)?))
    })
}

/// Copies the write-ahead log into the database every second, beside the writer
/// (PASSIVE: never blocks it); on stop, one last full checkpoint truncates the log.
/// Holds `checkpointing` while copying, so that the writer's restart does not collide
/// with it.
fn checkpoint_loop(
    conn: &Connection,
    checkpointing: &StdMutex<()>,
    stop: &std::sync::mpsc::Receiver<()>,
) {
    let run = |mode: &str| {
        let _copying = checkpointing.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = checkpoint(conn, mode) {
            tracing::warn!(error = %e, "SQLite checkpoint failed; will retry");
        }
    };
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
        stop.recv_timeout(Duration::from_secs(1))
    {
        run("PASSIVE");
    }
    run("TRUNCATE");
}

/// The writer's side of keeping the write-ahead log bounded.
struct WalLimit {
    /// The log file.
    path: PathBuf,
    /// Size past which the writer restarts the log.
    max_bytes: u64,
    /// Held by the checkpoint thread while it copies.
    checkpointing: Arc<StdMutex<()>>,
    /// The store's read connections, held back during a restart.
    readers: Arc<[StdMutex<Connection>]>,
    /// After a refused restart: not before then.
    retry_at: Option<Instant>,
}

impl WalLimit {
    /// Between batches: restarts the log if it has grown past `max_bytes`. Only the
    /// writer can do this under load: SQLite restarts the log when a write begins
    /// while every frame is copied into the database and no read uses the log, and
    /// no commit can come in between here.
    ///
    /// A read that began before the copy finished still uses the log, so the restart
    /// waits for the reads in progress (one indexed query each: milliseconds) and
    /// holds back new ones for its few milliseconds; those then read the database
    /// alone and do not hold up the restart. Waiting on SQLite's busy handler
    /// instead polls, and on a busy machine can give up while reads keep coming.
    fn restart_if_large(&mut self, conn: &Connection) {
        // One stat per batch; the file only grows past `max_bytes` when the log does
        // (after a restart, the first commit trims it to `max_bytes`).
        let Ok(size) = std::fs::metadata(&self.path).map(|m| m.len()) else {
            return;
        };
        if size <= self.max_bytes || self.retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        // The checkpoint thread is copying: try again after the next batch, when it
        // has left even less to copy.
        let Ok(_copying) = self.checkpointing.try_lock() else {
            return;
        };
        let started = Instant::now();
        let _reads: Vec<_> = self
            .readers
            .iter()
            .map(|r| r.lock().unwrap_or_else(|p| p.into_inner()))
            .collect();
        let restarted = conn
            .busy_timeout(RESTART_LOCK_WAIT)
            .and_then(|()| checkpoint(conn, "RESTART"));
        if let Err(e) = conn.busy_timeout(LOCK_TIMEOUT) {
            tracing::warn!(error = %e, "cannot reset the SQLite busy timeout");
        }
        match restarted {
            Ok((false, frames, _)) => {
                tracing::debug!(
                    wal_bytes = size,
                    frames,
                    took_ms = started.elapsed().as_millis() as u64,
                    "restarted the SQLite write-ahead log"
                );
                if self.retry_at.take().is_some() {
                    tracing::info!("the SQLite write-ahead log was restarted again");
                }
            }
            Ok((true, _, _)) | Err(_) => {
                if self.retry_at.is_none() {
                    tracing::warn!(
                        wal_bytes = size,
                        error = ?restarted.err(),
                        "cannot restart the SQLite write-ahead log (another process reads \
                         it); it grows until a retry succeeds"
                    );
                }
                self.retry_at = Some(Instant::now() + RESTART_RETRY);
            }
        }
    }
}

fn write_loop(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Job>,
    health: &WriterHealth,
    wal: &mut WalLimit,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // Ends when every sender is gone and the queue is drained.
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        health
            .busy_since_ms
            .store(health.now_ms(), Ordering::Relaxed);
        let result = insert_batch(&mut conn, &batch).map_err(Arc::new);
        health.busy_since_ms.store(0, Ordering::Relaxed);
        health.last_ok.store(result.is_ok(), Ordering::Relaxed);
        if let Err(e) = &result {
            tracing::error!(error = %e, events = batch.len(), "cannot commit events to SQLite");
        }
        for job in batch.drain(..) {
            // The request may have timed out and gone; nothing to tell it then.
            let _ = job.done.send(result.clone());
        }
        // After the answers: the presses of this batch do not wait for it.
        wal.restart_if_large(&conn);
    }
}

fn insert_batch(conn: &mut Connection, batch: &[Job]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO events (event_id, session_id, timestamp, action, country_code,
                 country_name, subdivision_name, subdivision_code, city_name, latitude,
                 longitude, cohort)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
             ON CONFLICT (event_id) DO NOTHING",
        )?;
        let mut id = Uuid::encode_buffer();
        let mut sid = Uuid::encode_buffer();
        // New presses per country in this batch: one upsert per country, not per press.
        let mut new_presses: Vec<(&str, &str, i64)> = Vec::new();
        for Job { event: e, .. } in batch {
            let l = &e.location;
            let inserted = insert.execute(params![
                e.event_id.hyphenated().encode_lower(&mut id) as &str,
                e.session_id.hyphenated().encode_lower(&mut sid) as &str,
                e.timestamp,
                e.action.as_str(),
                l.country_code,
                l.country_name,
                l.subdivision_name,
                l.subdivision_code,
                l.city_name,
                l.latitude,
                l.longitude,
                e.cohort,
            ])?;
            // Count a press once, however often it is delivered.
            if inserted == 1 && e.action == crate::domain::Action::PressButton {
                match new_presses
                    .iter_mut()
                    .find(|(code, _, _)| *code == l.country_code)
                {
                    Some((_, _, n)) => *n += 1,
                    None => new_presses.push((&l.country_code, &l.country_name, 1)),
                }
            }
        }
        let mut bump = tx.prepare_cached(
            "INSERT INTO presses_by_country (country_code, country_name, presses)
             VALUES (?1, ?2, ?3)
             ON CONFLICT (country_code) DO UPDATE SET presses = presses + excluded.presses",
        )?;
        for (code, name, n) in new_presses {
            bump.execute(params![code, name, n])?;
        }
    }
    tx.commit()
}

#[async_trait]
impl Publish for SqliteStore {
    async fn publish(&self, event: PressEvent) -> Result<(), PublishError> {
        let (done, wait) = oneshot::channel();
        let sender = self.queue.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(sender) = sender else {
            return Err(PublishError::Closed);
        };
        sender.try_send(Job { event, done }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => PublishError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => PublishError::Closed,
        })?;
        match tokio::time::timeout(COMMIT_TIMEOUT, wait).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(PublishError::Unavailable(Box::new(e))),
            Ok(Err(_)) => Err(PublishError::Closed),
            Err(_) => Err(PublishError::Timeout(COMMIT_TIMEOUT)),
        }
    }

    fn is_ready(&self) -> bool {
        self.health.is_healthy()
            && self
                .queue
                .lock()
                .map(|q| q.as_ref().is_some_and(|s| !s.is_closed()))
                .unwrap_or(false)
    }

    async fn close(&self) {
        // Dropping the last sender lets the writer drain the queue and stop.
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).take();
        let handle = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        let checkpointer = self
            .checkpointer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(handle) = handle {
                let _ = handle.join();
            }
            // After the writer: the last checkpoint includes its last commit.
            if let Some((stop, handle)) = checkpointer {
                drop(stop);
                let _ = handle.join();
            }
        })
        .await;
    }
}

/// Read side: queries run on blocking threads, on the store's read connections.
#[async_trait]
impl StatsSource for SqliteStore {
    async fn global(&self) -> Result<GlobalStats, StatsError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT country_code, country_name, presses FROM presses_by_country
                 ORDER BY presses DESC, country_code",
            )?;
            let by_country = stmt
                .query_map([], |r| {
                    Ok(CountryPresses {
                        country_code: r.get(0)?,
                        country_name: r.get(1)?,
                        presses: r.get::<_, i64>(2)? as u64,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let total = by_country.iter().map(|c| c.presses).sum();
            Ok(GlobalStats { total, by_country })
        })
        .await
    }

    async fn session_presses(&self, id: Uuid) -> Result<u64, StatsError> {
        self.read(move |c| {
            c.prepare_cached(
                "SELECT count(*) FROM events WHERE session_id = ?1 AND action = 'PressButton'",
            )?
            .query_row([id.to_string()], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
        })
        .await
    }

    async fn country_presses_since(&self, code: &str, since_us: i64) -> Result<u64, StatsError> {
        let code = code.to_owned();
        self.read(move |c| {
            c.prepare_cached(
                "SELECT count(*) FROM events
                 WHERE country_code = ?1 AND timestamp >= ?2 AND action = 'PressButton'",
            )?
            .query_row(params![code, since_us], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
        })
        .await
    }
}

/// Reads every event back, oldest first (for tests and export). Opens read-write so
/// that SQLite can recover the write-ahead log after a crash.
pub fn read_all(path: &Path) -> anyhow::Result<Vec<PressEvent>> {
    use crate::domain::{Action, Location};
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let mut stmt = conn.prepare(
        "SELECT event_id, session_id, timestamp, action, country_code, country_name,
                subdivision_name, subdivision_code, city_name, latitude, longitude, cohort
         FROM events ORDER BY event_id",
    )?;
    let rows = stmt.query_map([], |r| {
        let uuid = |i: usize| -> rusqlite::Result<Uuid> {
            let s: String = r.get(i)?;
            Uuid::parse_str(&s).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
            })
        };
        let action: String = r.get(3)?;
        let action = Action::parse(&action).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                3,
                rusqlite::types::Type::Text,
                format!("unknown action {action:?}").into(),
            )
        })?;
        Ok(PressEvent {
            event_id: uuid(0)?,
            session_id: uuid(1)?,
            timestamp: r.get(2)?,
            action,
            location: Location {
                country_code: r.get(4)?,
                country_name: r.get(5)?,
                subdivision_name: r.get(6)?,
                subdivision_code: r.get(7)?,
                city_name: r.get(8)?,
                latitude: r.get(9)?,
                longitude: r.get(10)?,
            },
            cohort: r.get(11)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// The schema version recorded in the database file.
pub fn schema_version(path: &Path) -> anyhow::Result<Option<usize>> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    Ok(conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Action, Location};
    use std::time::SystemTime;

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
        assert_eq!(
            store
                .country_presses_since("NL", press.timestamp + 1)
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
