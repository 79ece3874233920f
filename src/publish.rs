//! Where events go once a handler has made them: the embedded store, or Kafka,
//! under the layers of [`crate::pipeline`]. A press is acknowledged to the visitor
//! only after `publish` returns `Ok`, which means the event is durable in the
//! destination.

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::PressEvent;

/// Why an event was not accepted. Every case is safe to retry: nothing was stored
/// (or, for a timeout, the destination may still store it once; consumers
/// deduplicate on `event_id`).
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The queue in front of the destination is full; shed load instead of waiting.
    #[error("the event queue is full")]
    Overloaded,
    /// The destination did not confirm in time.
    #[error("the event was not confirmed within {0:?}")]
    Timeout(std::time::Duration),
    /// The destination is shutting down and takes no more events.
    #[error("the event destination is shutting down")]
    Closed,
    /// The destination refused or failed to store the event.
    #[error("the event destination failed")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// How much a disk spool holds (see `pipeline::spool`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SpoolDepth {
    /// Events waiting to be replayed.
    pub events: u64,
    /// Bytes of the spool file (replayed events included until it is emptied).
    pub bytes: u64,
}

/// A destination for events.
#[async_trait]
pub trait Publish: Send + Sync + 'static {
    /// Stores `event` durably; returns once it is safe to tell the visitor.
    async fn publish(&self, event: PressEvent) -> Result<(), PublishError>;

    /// Whether the destination currently accepts events (`/readyz`).
    fn is_ready(&self) -> bool;

    /// Events accepted and not yet durable (the embedded queue, the producer's
    /// messages in flight), for metrics; `None` when the destination cannot tell.
    fn backlog(&self) -> Option<usize> {
        None
    }

    /// What the disk spool holds, when there is one.
    fn spooled(&self) -> Option<SpoolDepth> {
        None
    }

    /// Stops accepting events and waits until everything accepted is stored.
    async fn close(&self);
}

/// A shared destination is a destination, so layers can wrap `Arc<dyn Publish>`.
#[async_trait]
impl<P: Publish + ?Sized> Publish for Arc<P> {
    async fn publish(&self, event: PressEvent) -> Result<(), PublishError> {
        (**self).publish(event).await
    }

    fn is_ready(&self) -> bool {
        (**self).is_ready()
    }

    fn backlog(&self) -> Option<usize> {
        (**self).backlog()
    }

    fn spooled(&self) -> Option<SpoolDepth> {
        (**self).spooled()
    }

    async fn close(&self) {
        (**self).close().await
    }
}
