//! Where events go once a handler has made them: the embedded store, or (later)
//! Kafka. A press is acknowledged to the visitor only after `publish` returns `Ok`,
//! which means the event is durable in the destination.

use async_trait::async_trait;

use crate::domain::PressEvent;

/// Why an event was not accepted. Every case is safe to retry: nothing was stored.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The queue in front of the destination is full; shed load instead of waiting.
    #[error("the event queue is full")]
    Overloaded,
    /// The destination did not confirm in time.
    #[error("the event was not confirmed within {0:?}")]
    Timeout(std::time::Duration),
    /// The destination refused or failed to store the event.
    #[error("the event store failed: {0}")]
    Unavailable(String),
}

/// A destination for events.
#[async_trait]
pub trait Publish: Send + Sync + 'static {
    /// Stores `event` durably; returns once it is safe to tell the visitor.
    async fn publish(&self, event: PressEvent) -> Result<(), PublishError>;

    /// Whether the destination currently accepts events (`/readyz`).
    fn is_ready(&self) -> bool;

    /// Stops accepting events and waits until everything accepted is stored.
    async fn close(&self);
}
