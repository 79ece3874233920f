//! Writing a batch: one HTTP request, `INSERT .. FORMAT JSONEachRow`, one line per
//! event built from the event's row type ([`crate::domain::row`]). And settling:
//! every country and minute inserted into since it was last settled gets its
//! distinct presses as one number (migration 0002 says how the counts are kept).
//!
//! Guarantee: at least once, duplicates harmless. A failed insert may have stored
//! part of the batch (ClickHouse inserts are not transactions: parts per
//! partition, then the materialized view); the caller retries, and a retry only
//! adds duplicates, which the ReplacingMergeTree collapses and the counts ignore
//! (they count distinct event ids). A settling is versioned by the rows it saw
//! inserted into the minute, so the latest one (which saw every insert that
//! finished before it began) wins, whoever runs it and however often.
//! Inserts are sent with `insert_deduplicate=0`: with replicated tables (Aiven),
//! a retried identical block would otherwise be skipped *with* its materialized
//! view, losing the counts if the first attempt stored the rows but failed in
//! the view.

use std::sync::{Arc, LazyLock};

use anyhow::Context;
use async_trait::async_trait;

use super::error::ChError;
use super::{ChStore, STORE};
use crate::domain::PressEvent;
use crate::domain::row::COLUMNS;
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
        self.send(req).await.map(drop).map_err(|e| WriteError {
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

impl ChStore {
    /// Settles every country and minute inserted into since it was last
    /// settled: one statement computing their distinct presses from their
    /// states. Returns how many it settled.
    pub(super) async fn settle_minutes(&self) -> Result<usize, ChError> {
        let unsettled = self.minutes("1").await?.unsettled;
        if unsettled.is_empty() {
            return Ok(0);
        }
        self.query(&self.sql(&format!(
            "INSERT INTO {{db}}.presses_by_country_minute_totals \
             (country_code, minute, country_name, presses, inserted) \
             SELECT country_code, minute, anyLastMerge(country_name), \
             uniqExactMerge(presses), countMerge(inserted) \
             FROM {{db}}.presses_by_country_minute WHERE {} \
             GROUP BY country_code, minute",
            unsettled.filter()
        )))
        .await?;
        Ok(unsettled.len())
    }
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
}
