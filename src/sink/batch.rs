//! The pure part of the sink: a batch of decoded events and dead letters, the
//! offsets they came from, and when to close it (by count, bytes or age). No I/O,
//! so it is tested with fixed instants.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::domain::PressEvent;

/// When a batch closes: whichever limit is reached first. Zero limits are refused
/// at the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Most events (and dead letters) in one batch.
    pub max_events: usize,
    /// Most message bytes in one batch.
    pub max_bytes: usize,
    /// Longest a batch stays open after its first message.
    pub max_wait: Duration,
}

/// A message that can never be decoded, on its way to the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Partition it came from.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
    /// Its key, as it was.
    pub key: Option<Vec<u8>>,
    /// Its value, as it was.
    pub value: Option<Vec<u8>>,
    /// Why it cannot be decoded.
    pub reason: String,
}

/// Messages taken from Kafka and not yet stored.
#[derive(Debug, Default)]
pub struct Batch {
    /// Decoded events, in consumption order.
    pub events: Vec<PressEvent>,
    /// Undecodable messages.
    pub dead: Vec<DeadLetter>,
    /// Highest offset taken from each partition.
    pub offsets: BTreeMap<i32, i64>,
    bytes: usize,
    opened: Option<Instant>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    fn took(&mut self, partition: i32, offset: i64, bytes: usize, now: Instant) {
        self.opened.get_or_insert(now);
        self.bytes += bytes;
        let last = self.offsets.entry(partition).or_insert(offset);
        *last = (*last).max(offset);
    }

    /// Adds a decoded event that was `bytes` long at `partition`/`offset`.
    pub fn push(
        &mut self,
        partition: i32,
        offset: i64,
        bytes: usize,
        event: PressEvent,
        now: Instant,
    ) {
        self.took(partition, offset, bytes, now);
        self.events.push(event);
    }

    /// Adds an undecodable message.
    pub fn push_dead(&mut self, letter: DeadLetter, now: Instant) {
        let bytes = letter.value.as_ref().map_or(0, Vec::len);
        self.took(letter.partition, letter.offset, bytes, now);
        self.dead.push(letter);
    }

    /// Messages in the batch.
    pub fn len(&self) -> usize {
        self.events.len() + self.dead.len()
    }

    /// Whether nothing was taken.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// When the batch must close at the latest (`None` while empty).
    pub fn deadline(&self, limits: &BatchLimits) -> Option<Instant> {
        self.opened.map(|t| t + limits.max_wait)
    }

    /// Whether the batch is complete at `now`.
    pub fn is_ready(&self, limits: &BatchLimits, now: Instant) -> bool {
        self.len() >= limits.max_events
            || self.bytes >= limits.max_bytes
            || self.deadline(limits).is_some_and(|d| now >= d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: BatchLimits = BatchLimits {
        max_events: 3,
        max_bytes: 1000,
        max_wait: Duration::from_millis(500),
    };

    fn event() -> PressEvent {
        PressEvent::example()
    }

    #[test]
    fn an_empty_batch_never_closes() {
        let b = Batch::new();
        assert!(b.deadline(&LIMITS).is_none());
        assert!(!b.is_ready(&LIMITS, Instant::now() + Duration::from_secs(3600)));
    }

    #[test]
    fn closes_on_count() {
        let t = Instant::now();
        let mut b = Batch::new();
        b.push(0, 1, 10, event(), t);
        b.push(1, 7, 10, event(), t);
        assert!(!b.is_ready(&LIMITS, t));
        b.push(0, 2, 10, event(), t);
        assert!(b.is_ready(&LIMITS, t));
    }

    #[test]
    fn closes_on_bytes() {
        let t = Instant::now();
        let mut b = Batch::new();
        b.push(0, 1, 999, event(), t);
        assert!(!b.is_ready(&LIMITS, t));
        b.push(0, 2, 1, event(), t);
        assert!(b.is_ready(&LIMITS, t));
    }

    #[test]
    fn closes_on_age_counted_from_the_first_message() {
        let t = Instant::now();
        let mut b = Batch::new();
        b.push(0, 1, 1, event(), t);
        b.push(0, 2, 1, event(), t + Duration::from_millis(400));
        assert!(!b.is_ready(&LIMITS, t + Duration::from_millis(499)));
        assert!(b.is_ready(&LIMITS, t + Duration::from_millis(500)));
        assert_eq!(b.deadline(&LIMITS), Some(t + Duration::from_millis(500)));
    }

    #[test]
    fn keeps_the_highest_offset_per_partition_including_dead_letters() {
        let t = Instant::now();
        let mut b = Batch::new();
        b.push(0, 5, 1, event(), t);
        b.push(2, 9, 1, event(), t);
        b.push_dead(
            DeadLetter {
                partition: 0,
                offset: 6,
                key: None,
                value: Some(b"junk".to_vec()),
                reason: "x".into(),
            },
            t,
        );
        b.push(2, 8, 1, event(), t);
        assert_eq!(
            b.offsets.into_iter().collect::<Vec<_>>(),
            vec![(0, 6), (2, 9)]
        );
    }
}
