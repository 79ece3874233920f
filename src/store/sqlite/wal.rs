//! Keeping the embedded store's write-ahead log bounded: passive checkpoints every
//! second on their own thread, and a restart of the log by the writer, between two
//! batches, once it passes its limit.
//!
//! Guarantee: under sustained writes the log file stays near `WAL_RESTART_BYTES`
//! (a test holds it to a few times its limit), a press never waits for a copy, and
//! closing the store truncates the log.

use std::cell::Cell;
use std::ffi::c_int;
use std::sync::Arc;
use std::sync::Mutex as StdMutex;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::LOCK_TIMEOUT;

/// Size of the write-ahead log past which the writer restarts it, and to which the
/// file is trimmed after a restart. Under full load the log grows by 20-30 MiB/s
/// (every group commit appends whole 4 KiB pages; see BENCHMARKS.md), so this is a
/// restart every few seconds; by then the passive checkpoints have copied all but
/// the last second of the log, so a restart costs the writer milliseconds, not a
/// full copy. Small enough that disk use and crash recovery (which reads the whole
/// log) stay small.
pub(super) const WAL_RESTART_BYTES: u64 = 64 << 20;

/// How long a restart waits for another process that reads the database (an
/// operator's `sqlite3` shell, a backup) before giving up until [`RESTART_RETRY`].
/// Presses queue behind the writer meanwhile, so this stays short. (This store's own
/// reads are held back for the restart instead: see [`WalLimit`].)
const RESTART_LOCK_WAIT: Duration = Duration::from_millis(100);

/// After a restart was refused (another process held the log), when the writer
/// tries again.
const RESTART_RETRY: Duration = Duration::from_secs(1);

/// Runs `PRAGMA wal_checkpoint(mode)`: whether it was refused (SQLite's "busy"), the
/// frames in the log and the frames copied.
pub(super) fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<(bool, i64, i64)> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok((r.get::<_, i64>(0)? != 0, r.get(1)?, r.get(2)?))
    })
}

/// Copies the write-ahead log into the database every second, beside the writer
/// (PASSIVE: never blocks it); on stop, one last full checkpoint truncates the log.
/// Holds `checkpointing` while copying, so that the writer's restart does not collide
/// with it.
pub(super) fn checkpoint_loop(
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
pub(super) struct WalLimit {
    /// Frames past which the writer restarts the log (`max_bytes` of them).
    max_frames: i64,
    /// Size of one frame: a page and its header.
    frame_bytes: i64,
    /// Held by the checkpoint thread while it copies.
    checkpointing: Arc<StdMutex<()>>,
    /// The store's read connections, held back during a restart.
    readers: Arc<[StdMutex<Connection>]>,
    /// After a refused restart: not before then.
    retry_at: Option<Instant>,
}

thread_local! {
    /// Frames in the log after the last commit on this thread's connection, as
    /// SQLite's write-ahead log hook reports them (the writer has its own thread).
    static FRAMES: Cell<i64> = const { Cell::new(0) };
}

fn count_frames(_: &rusqlite::hooks::Wal, frames: c_int) -> rusqlite::Result<()> {
    FRAMES.set(frames.into());
    Ok(())
}

impl WalLimit {
    /// Watches the log of `conn`, the writer's connection (set up after its
    /// `wal_autocheckpoint`, which replaces the hook this installs), and restarts it
    /// past `max_bytes`.
    ///
    /// The size comes from the frame count SQLite reports after each commit, not
    /// from the file: a `stat` of the log after every batch makes the next write
    /// stamp the file with a fine-grained time, so that every `fdatasync` also
    /// writes the inode, one more disk write per commit (BENCHMARKS.md).
    pub(super) fn new(
        conn: &Connection,
        max_bytes: u64,
        checkpointing: Arc<StdMutex<()>>,
        readers: Arc<[StdMutex<Connection>]>,
    ) -> rusqlite::Result<Self> {
        let page_bytes: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
        // A frame is a 24-byte header and a page; the file has a 32-byte header.
        let frame_bytes = page_bytes + 24;
        conn.wal_hook(Some(count_frames));
        Ok(WalLimit {
            max_frames: i64::try_from(max_bytes).unwrap_or(i64::MAX) / frame_bytes,
            frame_bytes,
            checkpointing,
            readers,
            retry_at: None,
        })
    }

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
    pub(super) fn restart_if_large(&mut self, conn: &Connection) {
        // The file only grows past `max_bytes` when the log does (after a restart,
        // the first commit trims it to `max_bytes`).
        let frames = FRAMES.get();
        if frames <= self.max_frames || self.retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        let size = 32 + frames * self.frame_bytes;
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
