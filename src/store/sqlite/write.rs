//! The write side of the embedded store: the bounded queue in front of one writer
//! thread, which commits everything waiting in one transaction (group commit).
//!
//! Guarantee: `publish` answers `Ok` only after the transaction holding the event
//! committed; a full queue is refused at once; inserts are idempotent on
//! `event_id`, and a press is counted in `presses_by_country` once, in the same
//! transaction, however often it is delivered.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use rusqlite::{Connection, params};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::wal::WalLimit;
use super::{COMMIT_TIMEOUT, MAX_BATCH, SqliteStore, WriterHealth};
use crate::domain::PressEvent;
use crate::publish::{Publish, PublishError};
use crate::stats::MINUTE_US;

/// One event waiting for its commit, and who to tell.
pub(super) struct Job {
    event: PressEvent,
    done: oneshot::Sender<Result<(), Arc<rusqlite::Error>>>,
}

/// The writer thread: takes everything waiting (up to [`MAX_BATCH`]), commits it in
/// one transaction, answers every job with the outcome, then keeps the log bounded.
pub(super) fn write_loop(
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
        // New presses per country, per session and per country and minute in this
        // batch: one upsert per key, not per press.
        let mut new_presses: Vec<(&str, &str, i64)> = Vec::new();
        let mut by_session: HashMap<Uuid, i64> = HashMap::new();
        let mut by_minute: HashMap<(&str, i64), i64> = HashMap::new();
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
                *by_session.entry(e.session_id).or_default() += 1;
                *by_minute
                    .entry((&l.country_code, e.timestamp.div_euclid(MINUTE_US)))
                    .or_default() += 1;
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
        let mut bump = tx.prepare_cached(
            "INSERT INTO presses_by_session (session_id, presses) VALUES (?1, ?2)
             ON CONFLICT (session_id) DO UPDATE SET presses = presses + excluded.presses",
        )?;
        for (session, n) in by_session {
            bump.execute(params![
                session.hyphenated().encode_lower(&mut sid) as &str,
                n
            ])?;
        }
        let mut bump = tx.prepare_cached(
            "INSERT INTO presses_by_country_minute (country_code, minute, presses)
             VALUES (?1, ?2, ?3)
             ON CONFLICT (country_code, minute) DO UPDATE SET presses = presses + excluded.presses",
        )?;
        for ((code, minute), n) in by_minute {
            bump.execute(params![code, minute, n])?;
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

    fn backlog(&self) -> Option<usize> {
        let queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        queue.as_ref().map(|s| s.max_capacity() - s.capacity())
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
