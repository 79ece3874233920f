//! Writing a batch: one HTTP request, `INSERT .. FORMAT JSONEachRow`, one line per
//! event built from the event's row type ([`crate::domain::row`]); then a second
//! that settles the counts of every country and minute the batch's presses fell
//! in (migration 0002 says how the counts are kept).
//!
//! Guarantee: at least once, duplicates harmless. A failed insert may have stored
//! part of the batch (ClickHouse inserts are not transactions: parts per
//! partition, then the materialized view); the caller retries, and a retry only
//! adds duplicates, which the ReplacingMergeTree collapses and the counts ignore
//! (they count distinct event ids). Settling runs after the insert succeeded, so
//! the latest settling of a minute saw every insert into it that finished
//! before it began; a batch whose settling failed is written again whole.
//! Inserts are sent with `insert_deduplicate=0`: with replicated tables (Aiven),
//! a retried identical block would otherwise be skipped *with* its materialized
//! view, losing the counts if the first attempt stored the rows but failed in
//! the view.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;

use super::sql::quote_str;
use super::{ChStore, STORE};
use crate::domain::row::COLUMNS;
use crate::domain::{Action, PressEvent};
use crate::stats::MINUTE_US;
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
        let written = async {
            self.send(req).await?;
            if let Some(settle) = settle_sql(events) {
                self.query(&self.sql(&settle)).await?;
            }
            Ok(())
        };
        written
            .await
            .map_err(|e: super::error::ChError| WriteError {
                store: STORE,
                target: self.target.clone(),
                events: events.len(),
                retryable: e.retryable(),
                source: Arc::new(e),
            })
    }
}

/// The statement that settles the counts of every country and minute the
/// presses among `events` fell in (`None` without presses): each one's distinct
/// presses, name and rows inserted so far, from its states.
fn settle_sql(events: &[PressEvent]) -> Option<String> {
    let keys: BTreeSet<(&str, i64)> = events
        .iter()
        .filter(|e| e.action == Action::PressButton)
        // Truncated like the view's `intDiv` (the same as the other stores'
        // minutes for every time after 1970).
        .map(|e| (e.location.country_code.as_str(), e.timestamp / MINUTE_US))
        .collect();
    let countries: BTreeSet<&str> = keys.iter().map(|(c, _)| *c).collect();
    let (first, last) = (
        keys.iter().map(|k| k.1).min()?,
        keys.iter().map(|k| k.1).max()?,
    );
    let mut sql = String::from(
        "INSERT INTO {db}.presses_by_country_minute_totals \
         (country_code, minute, country_name, presses, inserted) \
         SELECT country_code, minute, anyLastMerge(country_name), \
         uniqExactMerge(presses), countMerge(inserted) \
         FROM {db}.presses_by_country_minute WHERE country_code IN (",
    );
    let quoted: Vec<String> = countries.iter().map(|c| quote_str(c)).collect();
    sql.push_str(&quoted.join(", "));
    // The key range narrows the read to the batch's countries and minutes; the
    // pairs pick the keys exactly.
    let _ = write!(
        sql,
        ") AND minute >= {first} AND minute <= {last} AND (country_code, minute) IN ("
    );
    let pairs: Vec<String> = keys
        .iter()
        .map(|(c, m)| format!("({}, {m})", quote_str(c)))
        .collect();
    sql.push_str(&pairs.join(", "));
    sql.push_str(") GROUP BY country_code, minute");
    Some(sql)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use uuid::Uuid;

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

    fn event(action: Action, country: &str, second: u64) -> PressEvent {
        let mut l = crate::domain::Location::unknown();
        l.country_code = country.into();
        PressEvent::new(
            action,
            Uuid::nil(),
            l,
            None,
            std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(second),
        )
    }

    #[test]
    fn settling_picks_each_country_and_minute_of_the_presses_once() {
        let events = [
            event(Action::PressButton, "NL", 61),
            event(Action::PressButton, "NL", 119),
            event(Action::PressButton, "O'K", 180),
            event(Action::EnterPage, "US", 600),
        ];
        let sql = settle_sql(&events).unwrap();
        assert!(
            sql.ends_with(
                "WHERE country_code IN ('NL', 'O\\'K') AND minute >= 1 AND minute <= 3 \
                 AND (country_code, minute) IN (('NL', 1), ('O\\'K', 3)) \
                 GROUP BY country_code, minute"
            ),
            "{sql}"
        );
        assert_eq!(
            settle_sql(&events[3..]),
            None,
            "no presses, nothing to settle"
        );
    }
}
