//! The sink's counts and its periodic progress line. The lag on that line is the
//! group's over the whole topic (see [`super::lag`]); when a partition's is
//! unknown, the line says how many messages wait at least, never `0`.

use std::time::{Duration, Instant};

use super::lag::GroupLag;

/// Counts and when the last progress line was written.
pub struct Progress {
    every: Duration,
    last: Instant,
    started: Instant,
    events: u64,
    dead: u64,
    since_last: u64,
}

impl Progress {
    /// A progress line every `every`, counting from `now`.
    pub fn new(every: Duration, now: Instant) -> Self {
        Progress {
            every,
            last: now,
            started: now,
            events: 0,
            dead: 0,
            since_last: 0,
        }
    }

    /// Counts a stored batch.
    pub fn add(&mut self, events: usize, dead: usize) {
        self.events += events as u64;
        self.dead += dead as u64;
        self.since_last += events as u64;
    }

    /// Logs a progress line when one is due; `unready` says which store fails
    /// permanently, and why.
    pub fn maybe_log(&mut self, lag: Option<&GroupLag>, unready: Option<&str>, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last);
        if elapsed < self.every {
            return;
        }
        let rate = (self.since_last as f64 / elapsed.as_secs_f64()).round() as u64;
        match lag {
            Some(l) if l.total().is_none() => tracing::info!(
                events = self.events,
                dead_letters = self.dead,
                events_per_s = rate,
                lag = ?None::<u64>,
                lag_at_least = l.at_least(),
                lag_unknown_partitions = l.unknown(),
                unready,
                "sink progress"
            ),
            _ => tracing::info!(
                events = self.events,
                dead_letters = self.dead,
                events_per_s = rate,
                lag = ?lag.and_then(GroupLag::total),
                unready,
                "sink progress"
            ),
        }
        self.last = now;
        self.since_last = 0;
    }

    /// Logs the totals since the start.
    pub fn log_total(&self) {
        tracing::info!(
            events = self.events,
            dead_letters = self.dead,
            seconds = self.started.elapsed().as_secs_f64().round() as u64,
            "sink totals"
        );
    }
}
