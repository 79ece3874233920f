//! The metrics layer: counts every event by action and outcome and times how
//! long the destination took to make it durable. Labels are fixed words (the
//! action, the outcome), never a session id or anything from the request.

use std::time::Instant;

use async_trait::async_trait;

use crate::domain::{Action, PressEvent};
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

/// The outcome labels, in the order [`outcome`] numbers them.
const OUTCOMES: [&str; 5] = ["stored", "overloaded", "timeout", "closed", "unavailable"];

/// The outcome of a publish, as an index into [`OUTCOMES`].
fn outcome(result: &Result<(), PublishError>) -> usize {
    match result {
        Ok(()) => 0,
        Err(PublishError::Overloaded) => 1,
        Err(PublishError::Timeout(_)) => 2,
        Err(PublishError::Closed) => 3,
        Err(PublishError::Unavailable(_)) => 4,
    }
}

/// The metrics' handles, looked up once rather than on every event.
struct Handles {
    seconds: metrics::Histogram,
    /// By action (enter page, press), then outcome.
    events: [[metrics::Counter; OUTCOMES.len()]; 2],
}

fn handles() -> &'static Handles {
    static HANDLES: std::sync::OnceLock<Handles> = std::sync::OnceLock::new();
    HANDLES.get_or_init(|| {
        crate::telemetry::prometheus(); // a handle taken before it would count nothing
        let by_outcome = |action: Action| {
            OUTCOMES.map(
                |o| metrics::counter!(metric::EVENTS, "action" => action.as_str(), "outcome" => o),
            )
        };
        Handles {
            seconds: metrics::histogram!(metric::PUBLISH_SECONDS),
            events: [
                by_outcome(Action::EnterPage),
                by_outcome(Action::PressButton),
            ],
        }
    })
}

#[async_trait]
impl<P: Publish> Publish for Metered<P> {
    async fn publish(&self, event: PressEvent) -> Result<(), PublishError> {
        let action = match event.action {
            Action::EnterPage => 0,
            Action::PressButton => 1,
        };
        let started = Instant::now();
        let result = self.inner.publish(event).await;
        let h = handles();
        h.seconds.record(started.elapsed().as_secs_f64());
        h.events[action][outcome(&result)].increment(1);
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
        let distinct: std::collections::BTreeSet<_> = labels.iter().map(|i| OUTCOMES[*i]).collect();
        assert_eq!(distinct.len(), OUTCOMES.len());
    }
}
