//! The live tap: a layer that broadcasts every event once the destination below
//! has it (committed to SQLite, or confirmed by Kafka), for live views.
//!
//! Guarantee: an event is sent on the tap only after `publish` succeeded below, at
//! most once per successful call. Subscribers that fall behind lose the oldest
//! events (they are told how many) rather than slowing presses down.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::domain::PressEvent;
use crate::publish::{Publish, PublishError};

/// Events a slow subscriber may fall behind by before it loses the oldest.
const CAPACITY: usize = 4096;

/// The broadcast of committed events. Cheap to clone.
#[derive(Clone)]
pub struct Tap {
    sender: broadcast::Sender<Arc<PressEvent>>,
}

impl Tap {
    /// A tap nobody listens to yet.
    pub fn new() -> Self {
        Tap {
            sender: broadcast::channel(CAPACITY).0,
        }
    }

    /// Events committed from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<PressEvent>> {
        self.sender.subscribe()
    }

    pub(crate) fn send(&self, event: PressEvent) {
        // No subscriber is normal: nothing to do then.
        let _ = self.sender.send(Arc::new(event));
    }
}

impl Default for Tap {
    fn default() -> Self {
        Self::new()
    }
}

/// `inner`, with every event it accepts sent on a [`Tap`].
pub struct Tapped<P> {
    inner: P,
    tap: Tap,
}

impl<P> Tapped<P> {
    /// Wraps `inner`.
    pub fn new(inner: P, tap: Tap) -> Self {
        Tapped { inner, tap }
    }
}

#[async_trait]
impl<P: Publish> Publish for Tapped<P> {
    async fn publish(&self, event: PressEvent) -> Result<(), PublishError> {
        // Only clone when someone listens: presses pay nothing for an unwatched tap.
        let copy = (self.tap.sender.receiver_count() > 0).then(|| event.clone());
        self.inner.publish(event).await?;
        if let Some(event) = copy {
            self.tap.send(event);
        }
        Ok(())
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
    use crate::domain::{Action, Location};
    use std::sync::Mutex;
    use std::time::SystemTime;

    /// A destination that accepts or refuses by its flag (no store needed to test
    /// the layer's ordering).
    struct Switch(Mutex<bool>);

    #[async_trait]
    impl Publish for Switch {
        async fn publish(&self, _: PressEvent) -> Result<(), PublishError> {
            if *self.0.lock().unwrap() {
                Ok(())
            } else {
                Err(PublishError::Overloaded)
            }
        }
        fn is_ready(&self) -> bool {
            *self.0.lock().unwrap()
        }
        async fn close(&self) {}
    }

    fn event() -> PressEvent {
        PressEvent::new(
            Action::PressButton,
            uuid::Uuid::new_v4(),
            Location::unknown(),
            Some(0),
            SystemTime::now(),
        )
    }

    #[tokio::test]
    async fn only_accepted_events_reach_subscribers() {
        let tap = Tap::new();
        let mut rx = tap.subscribe();
        let layer = Tapped::new(Switch(Mutex::new(true)), tap);
        let accepted = event();
        layer.publish(accepted.clone()).await.unwrap();
        *layer.inner.0.lock().unwrap() = false;
        assert!(layer.publish(event()).await.is_err());
        assert!(!layer.is_ready());

        let got = rx.recv().await.unwrap();
        assert_eq!(got.event_id, accepted.event_id);
        assert!(matches!(
            rx.try_recv(),
            Err(broadcast::error::TryRecvError::Empty)
        ));
    }
}
