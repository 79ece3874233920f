//! The disk spool: a layer that keeps presses while Kafka cannot take them.
//!
//! When the destination below is not ready, or refuses an event, the event is
//! appended to `DIR/events.ndjson` (the JSON encoding, one event a line) and
//! fsync'd together with whatever else is waiting (group commit); the press is
//! acknowledged once it is on disk. While anything is spooled, new events are
//! spooled behind it, so that they reach Kafka in the order they were accepted.
//! A task replays the spool to the destination in that order as soon as it is
//! ready again, a chunk at a time, noting how far it got in `DIR/replayed` (a
//! restart resumes there), and empties the file once everything is replayed.
//!
//! Guarantees: an acknowledged event is on disk or in Kafka; the spool holds at
//! most `max_bytes`, beyond which a press is refused with "try again" (503). A
//! chunk can be replayed twice (a crash between sending it and noting it, or a
//! delivery that timed out but landed): Kafka then has the event twice, and the
//! stores deduplicate on `event_id`.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::join_all;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::domain::PressEvent;
use crate::encoding::json;
use crate::publish::{Publish, PublishError, SpoolDepth};
use crate::retry::Backoff;

/// The spooled events.
const EVENTS_FILE: &str = "events.ndjson";
/// How far the replay got, in bytes of [`EVENTS_FILE`].
const REPLAYED_FILE: &str = "replayed";
/// Most bytes of events replayed at once.
const CHUNK_BYTES: u64 = 256 * 1024;
/// Most appends fsync'd together.
const GROUP: usize = 1024;

#[derive(Debug, Default)]
struct State {
    /// Bytes written and synced.
    end: u64,
    /// Bytes replayed.
    replayed: u64,
    /// Events between `replayed` and `end`.
    events: u64,
    /// Bytes promised to appends not written yet.
    reserved: u64,
}

struct Shared {
    dir: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
    /// Rung when events are appended.
    appended: Notify,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

enum Job {
    Append(Vec<u8>, oneshot::Sender<io::Result<()>>),
    /// Empty the file if everything in it was replayed.
    Compact,
}

/// `inner`, with a disk spool for the events it cannot take.
pub struct Spooled<P: ?Sized> {
    inner: Arc<P>,
    shared: Arc<Shared>,
    jobs: mpsc::Sender<Job>,
    stop_replay: CancellationToken,
}

impl<P: Publish + ?Sized> Spooled<P> {
    /// Opens (or creates) the spool in `dir`, holding at most `max_bytes`, and
    /// starts replaying what a previous run left there.
    pub fn open(inner: Arc<P>, dir: &Path, max_bytes: u64) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let (file, state) = recover(dir)?;
        if state.events > 0 {
            tracing::info!(
                events = state.events,
                "the spool holds presses from an earlier run; replaying them once Kafka takes them"
            );
        }
        let shared = Arc::new(Shared {
            dir: dir.to_owned(),
            max_bytes,
            state: Mutex::new(state),
            appended: Notify::new(),
        });
        let (jobs, rx) = mpsc::channel(GROUP * 4);
        let writer_shared = shared.clone();
        std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || write_jobs(file, &writer_shared, rx))?;
        let stop_replay = CancellationToken::new();
        tokio::spawn(replay(
            shared.clone(),
            inner.clone(),
            jobs.clone(),
            stop_replay.clone(),
        ));
        Ok(Spooled {
            inner,
            shared,
            jobs,
            stop_replay,
        })
    }

    fn depth(&self) -> SpoolDepth {
        let s = self.shared.state();
        SpoolDepth {
            events: s.events,
            bytes: s.end,
        }
    }

    async fn append(&self, event: &PressEvent) -> Result<(), PublishError> {
        let mut line = json::encode(event);
        line.push(b'\n');
        {
            let mut s = self.shared.state();
            if s.end + s.reserved + line.len() as u64 > self.shared.max_bytes {
                return Err(PublishError::Overloaded);
            }
            s.reserved += line.len() as u64;
        }
        let (done, wait) = oneshot::channel();
        if self.jobs.send(Job::Append(line, done)).await.is_err() {
            return Err(PublishError::Closed);
        }
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(PublishError::Unavailable(Box::new(e))),
            Err(_) => Err(PublishError::Closed),
        }
    }
}

#[async_trait]
impl<P: Publish + ?Sized> Publish for Spooled<P> {
    async fn publish(&self, event: PressEvent) -> Result<(), PublishError> {
        // Straight through while nothing waits in the spool and the destination
        // is up; otherwise behind what is spooled, in order.
        if self.depth().events == 0 && self.inner.is_ready() {
            match self.inner.publish(event.clone()).await {
                Ok(()) => return Ok(()),
                Err(PublishError::Closed) => return Err(PublishError::Closed),
                Err(e) => tracing::debug!("spooling a press the destination did not take: {e}"),
            }
        }
        self.append(&event).await
    }

    fn is_ready(&self) -> bool {
        if self.inner.is_ready() {
            return true;
        }
        let s = self.shared.state();
        s.end + s.reserved < self.shared.max_bytes
    }

    fn backlog(&self) -> Option<usize> {
        self.inner.backlog()
    }

    fn spooled(&self) -> Option<SpoolDepth> {
        Some(self.depth())
    }

    async fn close(&self) {
        self.stop_replay.cancel();
        let depth = self.depth();
        if depth.events > 0 {
            tracing::info!(
                events = depth.events,
                "stopping with presses in the spool; the next start replays them"
            );
        }
        self.inner.close().await
    }
}

/// Opens the spool files: drops a torn last line (an append that was never
/// acknowledged), and counts the events after the replayed offset.
fn recover(dir: &Path) -> io::Result<(File, State)> {
    let path = dir.join(EVENTS_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(&path)?;
    // Two writers would interleave their lines and replay each other's events.
    file.try_lock().map_err(|e| match e {
        std::fs::TryLockError::WouldBlock => io::Error::other(format!(
            "{} is in use by another process: give each `serve` its own --data-dir",
            path.display()
        )),
        std::fs::TryLockError::Error(e) => e,
    })?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let end = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    if end < bytes.len() {
        tracing::warn!(
            bytes = bytes.len() - end,
            "dropping the spool's torn last line (a press that was never acknowledged)"
        );
        file.set_len(end as u64)?;
        file.sync_data()?;
    }
    let replayed = std::fs::read_to_string(dir.join(REPLAYED_FILE))
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0)
        .min(end as u64);
    let events = bytes[replayed as usize..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count() as u64;
    file.seek(SeekFrom::End(0))?;
    Ok((
        file,
        State {
            end: end as u64,
            replayed,
            events,
            reserved: 0,
        },
    ))
}

/// The writer thread: appends in groups, one fsync per group; empties the file
/// when asked and everything was replayed.
fn write_jobs(mut file: File, shared: &Shared, mut jobs: mpsc::Receiver<Job>) {
    while let Some(first) = jobs.blocking_recv() {
        let mut group = vec![first];
        while group.len() < GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let mut buf = Vec::new();
        let mut acks = Vec::new();
        let mut compact = false;
        for job in group {
            match job {
                Job::Append(line, ack) => {
                    buf.extend_from_slice(&line);
                    acks.push(ack);
                }
                Job::Compact => compact = true,
            }
        }
        if !buf.is_empty() {
            let written = file.write_all(&buf).and_then(|()| file.sync_data());
            {
                let mut s = shared.state();
                s.reserved = s.reserved.saturating_sub(buf.len() as u64);
                match &written {
                    Ok(()) => {
                        s.end += buf.len() as u64;
                        s.events += acks.len() as u64;
                    }
                    // Cut what may have been half written: those presses are refused.
                    Err(_) => {
                        let _ = file.set_len(s.end);
                    }
                }
            }
            if let Err(e) = &written {
                tracing::error!("cannot write the spool in {}: {e}", shared.dir.display());
            }
            for ack in acks {
                let _ = ack.send(match &written {
                    Ok(()) => Ok(()),
                    Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                });
            }
            shared.appended.notify_one();
        }
        if compact {
            let mut s = shared.state();
            if s.replayed == s.end && s.end > 0 {
                match file.set_len(0).and_then(|()| file.sync_data()) {
                    Ok(()) => {
                        s.end = 0;
                        s.replayed = 0;
                        let _ = note_replayed(&shared.dir, 0);
                    }
                    Err(e) => tracing::warn!("cannot empty the spool: {e}"),
                }
            }
        }
    }
}

fn note_replayed(dir: &Path, offset: u64) -> io::Result<()> {
    std::fs::write(dir.join(REPLAYED_FILE), offset.to_string())
}

/// Spooled events from byte `from` on, at most about [`CHUNK_BYTES`] of them,
/// whole lines only, below `end`: each with its length in bytes.
fn read_chunk(dir: &Path, from: u64, end: u64) -> io::Result<Vec<(u64, Option<PressEvent>)>> {
    let mut file = File::open(dir.join(EVENTS_FILE))?;
    file.seek(SeekFrom::Start(from))?;
    let mut reader = BufReader::new(file.take(end - from));
    let mut chunk = Vec::new();
    let mut taken = 0;
    let mut line = Vec::new();
    while taken < CHUNK_BYTES {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)? as u64;
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        taken += n;
        chunk.push((n, json::decode(&line[..line.len() - 1]).ok()));
    }
    Ok(chunk)
}

/// The replay task: sends spooled events to `inner`, in order, whenever it is
/// ready, until stopped.
async fn replay<P: Publish + ?Sized>(
    shared: Arc<Shared>,
    inner: Arc<P>,
    jobs: mpsc::Sender<Job>,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    loop {
        let (from, end) = {
            let s = shared.state();
            (s.replayed, s.end)
        };
        if from == end {
            if end > 0 {
                let _ = jobs.send(Job::Compact).await;
            }
            tokio::select! {
                () = shared.appended.notified() => continue,
                () = stop.cancelled() => return,
            }
        }
        if !inner.is_ready() {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(250)) => continue,
                () = stop.cancelled() => return,
            }
        }
        let dir = shared.dir.clone();
        let chunk = match tokio::task::spawn_blocking(move || read_chunk(&dir, from, end)).await {
            Ok(Ok(chunk)) => chunk,
            Ok(Err(e)) => {
                tracing::error!("cannot read the spool: {e}");
                let delay = backoff.next_delay(&mut rand::rng());
                tokio::time::sleep(delay).await;
                continue;
            }
            Err(e) => {
                tracing::error!("the spool reader failed: {e}");
                return;
            }
        };
        let bytes: u64 = chunk.iter().map(|(n, _)| n).sum();
        let lines = chunk.len() as u64;
        let events: Vec<PressEvent> = chunk.into_iter().filter_map(|(_, e)| e).collect();
        if (events.len() as u64) < lines {
            tracing::error!(
                lines = lines - events.len() as u64,
                "spooled lines that are not events (the file was damaged) are skipped"
            );
        }
        // Sent together, enqueued in order: one partition keeps them in order.
        let sent = tokio::select! {
            sent = join_all(events.into_iter().map(|e| inner.publish(e))) => sent,
            () = stop.cancelled() => return,
        };
        if let Some(Err(e)) = sent.iter().find(|r| r.is_err()) {
            tracing::warn!("replaying the spool failed (retrying): {e}");
            let delay = backoff.next_delay(&mut rand::rng());
            tokio::time::sleep(delay).await;
            continue;
        }
        backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let remaining = {
            let mut s = shared.state();
            s.replayed = from + bytes;
            s.events = s.events.saturating_sub(lines);
            s.events
        };
        if let Err(e) = note_replayed(&shared.dir, from + bytes) {
            tracing::warn!("cannot note the spool's progress (a restart replays more): {e}");
        }
        tracing::info!(replayed = lines, remaining, "spooled presses replayed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> PressEvent {
        PressEvent::example()
    }

    fn line(e: &PressEvent) -> Vec<u8> {
        let mut l = json::encode(e);
        l.push(b'\n');
        l
    }

    #[test]
    fn recovery_drops_a_torn_last_line_and_resumes_after_the_replayed_offset() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (event(), event(), event());
        let mut bytes = [line(&a), line(&b), line(&c)].concat();
        bytes.extend_from_slice(b"{\"event_id\":\"half"); // a crash mid-append
        std::fs::write(dir.path().join(EVENTS_FILE), &bytes).unwrap();
        note_replayed(dir.path(), line(&a).len() as u64).unwrap();

        let (_, state) = recover(dir.path()).unwrap();
        let whole = (line(&a).len() + line(&b).len() + line(&c).len()) as u64;
        assert_eq!(state.end, whole);
        assert_eq!(state.events, 2, "b and c wait; a was replayed");
        assert_eq!(
            std::fs::metadata(dir.path().join(EVENTS_FILE))
                .unwrap()
                .len(),
            whole
        );
        let chunk = read_chunk(dir.path(), state.replayed, state.end).unwrap();
        let got: Vec<_> = chunk.into_iter().map(|(_, e)| e.unwrap()).collect();
        assert_eq!(got, vec![b, c]);
    }

    #[test]
    fn a_replayed_offset_past_the_end_is_clamped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(EVENTS_FILE), line(&event())).unwrap();
        note_replayed(dir.path(), 1 << 40).unwrap();
        let (_, state) = recover(dir.path()).unwrap();
        assert_eq!(state.replayed, state.end);
        assert_eq!(state.events, 0);
    }

    #[test]
    fn a_damaged_line_is_read_as_no_event_without_stopping_the_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let good = event();
        let bytes = [b"not an event\n".to_vec(), line(&good)].concat();
        std::fs::write(dir.path().join(EVENTS_FILE), &bytes).unwrap();
        let chunk = read_chunk(dir.path(), 0, bytes.len() as u64).unwrap();
        assert_eq!(chunk.len(), 2);
        assert!(chunk[0].1.is_none());
        assert_eq!(chunk[1].1.as_ref(), Some(&good));
    }

    #[test]
    fn a_spool_in_use_by_another_process_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let (_held, _) = recover(dir.path()).unwrap();
        let err = recover(dir.path()).err().expect("refused while held");
        assert!(
            err.to_string()
                .contains("give each `serve` its own --data-dir"),
            "{err}"
        );
    }

    /// A destination that never takes an event: a stand-in for a broker that is
    /// away, so that this test controls nothing but the spool's bound (the
    /// outage test in tests/kafka/outage.rs uses a real, frozen broker).
    struct Away;

    #[async_trait]
    impl Publish for Away {
        async fn publish(&self, _: PressEvent) -> Result<(), PublishError> {
            Err(PublishError::Unavailable("away".into()))
        }
        fn is_ready(&self) -> bool {
            false
        }
        async fn close(&self) {}
    }

    #[tokio::test]
    async fn a_full_spool_refuses_presses_and_says_it_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let room = 3 * line(&event()).len() as u64;
        let spool = Spooled::open(Arc::new(Away), dir.path(), room).unwrap();
        for _ in 0..3 {
            spool.publish(event()).await.unwrap();
        }
        assert_eq!(spool.spooled().unwrap().events, 3);
        assert!(matches!(
            spool.publish(event()).await,
            Err(PublishError::Overloaded)
        ));
        assert!(
            !spool.is_ready(),
            "full, with the destination away: not ready"
        );
        assert_eq!(
            spool.spooled().unwrap().events,
            3,
            "the refused press is not kept"
        );
        spool.close().await;
    }
}
