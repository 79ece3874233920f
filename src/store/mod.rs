//! Stores that keep events and answer the statistics queries: the embedded SQLite
//! store, and the PostgreSQL and ClickHouse stores the sink writes to.
//!
//! Every store's `write` is idempotent on `event_id`: writing the same events again
//! (a redelivered Kafka batch) changes nothing that the statistics queries return.

pub mod clickhouse;
mod migration;
pub mod postgres;
pub mod sqlite;
#[cfg(test)]
mod tables;

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::PressEvent;

pub use sqlite::SqliteStore;

/// Why a write failed, and whether trying again can help. The message says what
/// failed; the store's own error, with its causes, is the [`source`](Self::source).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{store}: cannot write {events} events to {target}")]
pub struct WriteError {
    /// Which store.
    pub store: &'static str,
    /// Where it is: host, port and database, never credentials.
    pub target: String,
    /// How many events the failed write held.
    pub events: usize,
    /// What went wrong.
    #[source]
    pub source: Arc<dyn std::error::Error + Send + Sync>,
    /// Connection trouble, timeouts, overload: retry. Bad data, schema mismatch:
    /// retrying the same write cannot succeed.
    pub retryable: bool,
}

/// A store the sink writes batches to.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Short name for logs ("postgres", "clickhouse").
    fn name(&self) -> &'static str;

    /// Writes `events` idempotently: on `Ok`, every event is stored exactly once
    /// as far as the statistics queries can tell, however often it was written.
    async fn write(&self, events: &[PressEvent]) -> Result<(), WriteError>;

    /// Brings what the statistics read up to date with what was written, where
    /// a store keeps that apart (ClickHouse settles its per-minute counts). The
    /// sink runs it every few seconds and once when it stops; reads are exact
    /// without it, only costlier. Nothing to do by default.
    async fn settle(&self) -> anyhow::Result<()> {
        Ok(())
    }
}
