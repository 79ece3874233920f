//! Writing a batch: one HTTP request, `INSERT .. FORMAT JSONEachRow`, one line per
//! event built from the event's row type ([`crate::domain::row`]). And settling:
//! every country and minute inserted into since it was last settled gets its
//! distinct presses as one number (migration 0002 says how the counts are kept),
//! then every country and day inserted into since it was last rolled up, once
//! all its minutes are settled, its presses as one number (migration 0003).
//!
//! Guarantee: at least once, duplicates harmless. A failed insert may have stored
//! part of the batch (ClickHouse inserts are not transactions: parts per
//! partition, then the materialized view); the caller retries, and a retry only
//! adds duplicates, which the ReplacingMergeTree collapses and the counts ignore
//! (they count distinct event ids). A settling is versioned by the rows it saw
//! inserted into the minute, so the latest one (which saw every insert that
//! finished before it began) wins, whoever runs it and however often. A roll-up
//! is versioned by the rows its minutes held, read before their settled
//! presses (which so hold at least those rows' ids); any later insert makes the
//! day's count differ from that version, and readers ignore the roll-up until
//! the next one.
//! Inserts are sent with `insert_deduplicate=0`: with replicated tables (Aiven),
//! a retried identical block would otherwise be skipped *with* its materialized
//! view, losing the counts if the first attempt stored the rows but failed in
//! the view.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;

use super::error::ChError;
use super::read::{Minutes, day_of};
use super::sql::quote_str;
use super::{ChStore, STORE};
use crate::domain::row::COLUMNS;
use crate::domain::{Action, PressEvent};
use crate::store::{EventStore, WriteError};

/// The event columns, as the insert names them.
static COLUMN_LIST: LazyLock<String> = LazyLock::new(|| {
    COLUMNS
        .iter()
        .map(|c| c.name)
        .collect::<Vec<_>>()
        .join(", ")
});

/// The batch as newline-delimited JSON: one object per event, keyed by column
/// (UUIDs as their hyphenated text).
fn ndjson(events: &[PressEvent]) -> Vec<u8> {
    let mut body = Vec::with_capacity(events.len() * 300);
    for e in events {
        // Writing plain data into a Vec cannot fail.
        serde_json::to_writer(&mut body, &e.row()).expect("serializing to memory");
        body.push(b'\n');
    }
    body
}

#[async_trait]
impl EventStore for ChStore {
    fn name(&self) -> &'static str {
        STORE
    }

    async fn write(&self, events: &[PressEvent]) -> Result<(), WriteError> {
        if events.is_empty() {
            return Ok(());
        }
        let insert = format!(
            "INSERT INTO {}.button_presses ({}) FORMAT JSONEachRow",
            self.db, *COLUMN_LIST
        );
        let req = self
            .request(&[("query", &insert), ("insert_deduplicate", "0")])
            .header("Content-Type", "application/x-ndjson")
            .body(ndjson(events));
        let sent = self.send(req).await;
        // Once the insert is over, failed or not (a failed one may have stored
        // part of the batch): a settling that starts later sees its rows.
        self.lock_dirty().add(events);
        sent.map(drop).map_err(|e| WriteError {
            store: STORE,
            target: self.target.clone(),
            events: events.len(),
            retryable: e.retryable(),
            source: Arc::new(e),
        })
    }

    async fn settle(&self) -> anyhow::Result<()> {
        let settled = self.settle_minutes().await.with_context(|| {
            format!("cannot settle the counts in ClickHouse at {}", self.target)
        })?;
        if settled > 0 {
            tracing::debug!(target = %self.target, minutes = settled, "counts settled");
        }
        Ok(())
    }
}

/// How often a store looks for unsettled minutes among all of them, not only
/// among those it inserted into: for minutes that other writers (another sink
/// killed before it settled, the on-platform Kafka engine) left unsettled.
const SWEEP_EVERY: Duration = Duration::from_secs(300);

/// Above this many minutes or days to look at, the filter is their range, not
/// the list (which stays well under ClickHouse's `max_query_size`).
const MAX_LISTED: usize = 5_000;

/// Days rolled up per statement: a row is at most about 100 bytes.
const DAYS_PER_INSERT: usize = 1_000;

/// The minutes a store inserted into since it last settled them, and when it
/// last looked at every minute.
#[derive(Debug, Default)]
pub(super) struct Dirty {
    minutes: BTreeSet<i64>,
    swept_at: Option<Instant>,
}

/// What one settling looks at.
#[derive(Debug, PartialEq)]
struct Look {
    /// Every minute (a sweep), not only `minutes`.
    sweep: bool,
    /// The minutes inserted into since the last settling.
    minutes: BTreeSet<i64>,
}

impl Look {
    /// Conditions selecting the minutes to settle (on `minute`) and the days to
    /// roll up (on `day`); `None` when there is nothing to look at.
    fn filters(&self) -> Option<(String, String)> {
        if self.sweep {
            return Some(("1".into(), "1".into()));
        }
        let days: BTreeSet<i64> = self.minutes.iter().copied().map(day_of).collect();
        Some((
            values_filter("minute", &self.minutes)?,
            values_filter("day", &days)?,
        ))
    }
}

impl Dirty {
    /// Notes the minutes of `events`' presses, as the materialized view computes
    /// them (`intDiv`, toward zero, like Rust's `/`).
    fn add(&mut self, events: &[PressEvent]) {
        for e in events.iter().filter(|e| e.action == Action::PressButton) {
            self.minutes.insert(e.timestamp / crate::stats::MINUTE_US);
        }
    }

    /// What the next settling looks at, taken out: every minute when no sweep
    /// happened within [`SWEEP_EVERY`] of `now`, else the noted ones.
    fn take(&mut self, now: Instant) -> Look {
        let sweep = self
            .swept_at
            .is_none_or(|at| now.saturating_duration_since(at) >= SWEEP_EVERY);
        if sweep {
            self.swept_at = Some(now);
        }
        Look {
            sweep,
            minutes: std::mem::take(&mut self.minutes),
        }
    }

    /// Puts back what a failed settling took: its minutes, and a sweep if it
    /// was one.
    fn give_back(&mut self, look: Look) {
        self.minutes.extend(look.minutes);
        if look.sweep {
            self.swept_at = None;
        }
    }
}

/// A condition on `column` selecting `values`: their range (so only their
/// parts are read), then the list, unless it is long.
fn values_filter(column: &str, values: &BTreeSet<i64>) -> Option<String> {
    let (first, last) = (values.first()?, values.last()?);
    let range = format!("{column} >= {first} AND {column} <= {last}");
    if values.len() > MAX_LISTED {
        return Some(range);
    }
    let list: Vec<String> = values.iter().map(i64::to_string).collect();
    Some(format!("{range} AND {column} IN ({})", list.join(", ")))
}

impl ChStore {
    fn lock_dirty(&self) -> std::sync::MutexGuard<'_, Dirty> {
        self.dirty.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Settles the countries' minutes inserted into since they were last
    /// settled, then rolls up their days: among the minutes this store
    /// inserted into since its last settling, or among all of them at its first
    /// settling and every [`SWEEP_EVERY`]. Returns how many minutes it settled.
    pub(super) async fn settle_minutes(&self) -> Result<usize, ChError> {
        let look = self.lock_dirty().take(Instant::now());
        let Some((minutes, days)) = look.filters() else {
            return Ok(0);
        };
        let result = async {
            let settled = self.settle_in(&minutes).await?;
            self.roll_up(&days).await?;
            Ok(settled)
        }
        .await;
        if result.is_err() {
            self.lock_dirty().give_back(look);
        }
        result
    }

    /// Settles the unsettled minutes among those `filter` selects: one
    /// statement to find them, one (per chunk) computing their distinct presses
    /// from their states.
    async fn settle_in(&self, filter: &str) -> Result<usize, ChError> {
        let unsettled = self.minutes(filter).await?.unsettled;
        for filter in unsettled.filters() {
            self.query(&self.sql(&format!(
                "INSERT INTO {{db}}.presses_by_country_minute_totals \
                 (country_code, minute, country_name, presses, inserted) \
                 SELECT country_code, minute, anyLastMerge(country_name), \
                 uniqExactMerge(presses), countMerge(inserted) \
                 FROM {{db}}.presses_by_country_minute WHERE {filter} \
                 GROUP BY country_code, minute"
            )))
            .await?;
        }
        Ok(unsettled.len())
    }

    /// Rolls up the days among those `filter` (a condition on `day`) selects
    /// that were inserted into since their last roll-up and whose minutes are
    /// all settled: the sum of their minutes, versioned by the rows inserted
    /// into them. Returns how many it rolled up.
    async fn roll_up(&self, filter: &str) -> Result<usize, ChError> {
        let stale = self.days(filter).await?.stale;
        let mut rows = Vec::new();
        for filter in stale.filters() {
            let Minutes {
                settled,
                unsettled,
                inserted,
            } = self.minutes(&filter).await?;
            let open: HashSet<(&str, i64)> = unsettled
                .keys()
                .iter()
                .map(|(code, minute)| (code.as_str(), day_of(*minute)))
                .collect();
            for ((code, day), (name, presses)) in settled {
                if let Some(n) = inserted.get(&(code.clone(), day))
                    && !open.contains(&(code.as_str(), day))
                {
                    rows.push(format!(
                        "({}, {day}, {}, {presses}, {n})",
                        quote_str(&code),
                        quote_str(&name)
                    ));
                }
            }
        }
        for chunk in rows.chunks(DAYS_PER_INSERT) {
            self.query(&self.sql(&format!(
                "INSERT INTO {{db}}.presses_by_country_day_totals \
                 (country_code, day, country_name, presses, inserted) VALUES {}",
                chunk.join(", ")
            )))
            .await?;
        }
        Ok(rows.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use uuid::Uuid;

    fn at(action: Action, us: i64) -> PressEvent {
        let mut e = PressEvent::new(
            action,
            Uuid::nil(),
            crate::domain::Location::unknown(),
            None,
            std::time::SystemTime::UNIX_EPOCH,
        );
        e.timestamp = us;
        e
    }

    fn look(sweep: bool, minutes: &[i64]) -> Look {
        Look {
            sweep,
            minutes: minutes.iter().copied().collect(),
        }
    }

    #[test]
    fn settling_sweeps_first_then_looks_at_the_minutes_inserted_into() {
        let t0 = Instant::now();
        let mut d = Dirty::default();
        d.add(&[at(Action::PressButton, 61_000_000)]);
        // The first settling looks at every minute, and takes the noted ones.
        assert_eq!(d.take(t0), look(true, &[1]));
        d.add(&[
            at(Action::PressButton, 120_000_000),
            at(Action::PressButton, 179_999_999),
            at(Action::EnterPage, 600_000_000),
            at(Action::PressButton, 300_000_000),
        ]);
        assert_eq!(d.take(t0 + Duration::from_secs(5)), look(false, &[2, 5]));
        // Nothing new: nothing to look at.
        let nothing = d.take(t0 + Duration::from_secs(10));
        assert_eq!(nothing, look(false, &[]));
        assert_eq!(nothing.filters(), None);
        // A failed settling gives its minutes back.
        d.give_back(look(false, &[2, 5]));
        assert_eq!(d.take(t0 + Duration::from_secs(15)), look(false, &[2, 5]));
        // And a failed sweep makes the next settling a sweep.
        d.give_back(look(true, &[]));
        assert!(d.take(t0 + Duration::from_secs(20)).sweep);
        // Sweeps come back every SWEEP_EVERY.
        assert!(!d.take(t0 + Duration::from_secs(25)).sweep);
        assert!(d.take(t0 + Duration::from_secs(20) + SWEEP_EVERY).sweep);
    }

    #[test]
    fn a_settling_looks_at_its_minutes_and_their_days() {
        assert_eq!(
            look(true, &[3]).filters(),
            Some(("1".to_owned(), "1".to_owned()))
        );
        assert_eq!(
            look(false, &[1441, 7, 3]).filters(),
            Some((
                "minute >= 3 AND minute <= 1441 AND minute IN (3, 7, 1441)".to_owned(),
                "day >= 0 AND day <= 1 AND day IN (0, 1)".to_owned()
            ))
        );
    }

    #[test]
    fn values_are_selected_by_range_and_list() {
        assert_eq!(values_filter("minute", &BTreeSet::new()), None);
        assert_eq!(
            values_filter("minute", &BTreeSet::from([7, 3, 5])).unwrap(),
            "minute >= 3 AND minute <= 7 AND minute IN (3, 5, 7)"
        );
        let many: BTreeSet<i64> = (0..=MAX_LISTED as i64).collect();
        assert_eq!(
            values_filter("day", &many).unwrap(),
            format!("day >= 0 AND day <= {MAX_LISTED}")
        );
    }

    #[test]
    fn the_insert_names_every_column() {
        assert_eq!(
            COLUMN_LIST.as_str(),
            "event_id, session_id, timestamp, action, country_name, country_code, \
             subdivision_name, subdivision_code, city_name, cohort, latitude, longitude"
        );
    }

    #[test]
    fn rows_are_json_lines_with_uuid_text() {
        let mut l = crate::domain::Location::unknown();
        l.country_name = "Côte d'Ivoire \"x\"".into();
        let e = PressEvent::new(
            crate::domain::Action::PressButton,
            Uuid::nil(),
            l,
            None,
            std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1),
        );
        let body = String::from_utf8(ndjson(&[e.clone(), e.clone()])).unwrap();
        assert_eq!(body.lines().count(), 2);
        let v: serde_json::Value = serde_json::from_str(body.lines().next().unwrap()).unwrap();
        assert_eq!(v["session_id"], "00000000-0000-0000-0000-000000000000");
        assert_eq!(v["event_id"], e.event_id.to_string());
        assert_eq!(v["timestamp"], 1_000_000);
        assert_eq!(v["action"], "PressButton");
        assert_eq!(v["country_name"], "Côte d'Ivoire \"x\"");
        assert!(v["cohort"].is_null());
    }
}
