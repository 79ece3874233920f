//! The metrics layer: counts every event by action and outcome and times how
//! long the destination took to make it durable. Labels are fixed words (the
//! action, the outcome), never a session id or anything from the request.

use std::time::Instant;

use async_trait::async_trait;

use crate::domain::PressEvent;
use crate::publish::{Publish, PublishError};
use crate::telemetry::metric;

/// `inner`, measured.
pub struct Metered<P> {
    inner: P,
}

impl<P> Metered<P> {
    /// Wraps `inner`.
    pub fn new(inner: P) -> Self {
        Metered { inner }
    }
}

/// The outcome label of a publish.
fn outcome(result: &Result<(), PublishError>) -> &'static str {
    match result {
        Ok(()) => "stored",
        Err(PublishError::Overloaded) => "overloaded",
        Err(PublishError::Timeout(_)) => "timeout",
        Err(PublishError::Closed) => "closed",
        Err(PublishError::Unavailable(_)) => "unavailable",
    }
}

#[async_trait]
impl<P: Publish> Publish for Metered<P> {
    async fn publish(&self, event: PressEvent) -> Result<(), PublishError> {
        let action = event.action.as_str();
        let started = Instant::now();
        let result = self.inner.publish(event).await;
        metrics::histogram!(metric::PUBLISH_SECONDS).record(started.elapsed().as_secs_f64());
        metrics::counter!(metric::EVENTS, "action" => action, "outcome" => outcome(&result))
            .increment(1);
        result
    }

    fn is_ready(&self) -> bool {
        self.inner.is_ready()
    }

    fn backlog(&self) -> Option<usize> {
        self.inner.backlog()
    }

    fn spooled(&self) -> Option<crate::publish::SpoolDepth> {
        self.inner.spooled()
    }

    async fn close(&self) {
        self.inner.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_has_its_own_label() {
        let labels = [
            outcome(&Ok(())),
            outcome(&Err(PublishError::Overloaded)),
            outcome(&Err(PublishError::Timeout(std::time::Duration::from_secs(
                1,
            )))),
            outcome(&Err(PublishError::Closed)),
            outcome(&Err(PublishError::Unavailable("x".into()))),
        ];
        let distinct: std::collections::BTreeSet<_> = labels.iter().collect();
        assert_eq!(distinct.len(), labels.len());
    }
}
