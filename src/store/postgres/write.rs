//! Writing a batch: one statement that inserts what is new into `button_presses`
//! and counts the new presses per country (`presses_by_country`), per session
//! (`presses_by_session`) and per country and minute
//! (`presses_by_country_minute`): the statistics read those, never the events.
//!
//! Guarantee: idempotent and atomic. `INSERT .. ON CONFLICT (event_id) DO NOTHING`
//! sits in a CTE whose `RETURNING` rows (only the rows really inserted) feed the
//! upserts, so a redelivered batch inserts nothing and counts nothing, and a
//! batch is all or nothing. The column list and the arrays come from the
//! event's row type ([`COLUMNS`]), so they cannot drift from each other.

use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use futures::future::join_all;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::connection::Slot;
use super::error::QueryError;
use super::{PgStore, STORE, WRITERS};
use crate::domain::PressEvent;
use crate::domain::row::{COLUMNS, ColumnType, Value};
use crate::store::{EventStore, WriteError};

/// PostgreSQL's name for a column type (as in the migrations).
pub(crate) fn sql_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Uuid => "uuid",
        ColumnType::Int64 => "bigint",
        ColumnType::Int32 => "integer",
        ColumnType::Text => "text",
        ColumnType::Float64 => "double precision",
    }
}

/// One statement per batch: insert what is new, count the new presses per
/// country, per session and per country and minute. Parameter `$n` is the array
/// of the `n`th column. Every upsert goes in key order, so concurrent writers
/// lock the rows in the same order and do not deadlock each other.
pub(super) static INSERT_SQL: LazyLock<String> = LazyLock::new(|| {
    let names: Vec<String> = COLUMNS.iter().map(|c| format!("\"{}\"", c.name)).collect();
    let arrays: Vec<String> = COLUMNS
        .iter()
        .enumerate()
        .map(|(i, c)| format!("${}::{}[]", i + 1, sql_type(c.ty)))
        .collect();
    format!(
        r#"
WITH ins AS (
    INSERT INTO button_presses ({names})
    SELECT * FROM unnest({arrays})
    ON CONFLICT (event_id) DO NOTHING
    RETURNING country_code, country_name, session_id, "timestamp", action
), presses AS (
    SELECT * FROM ins WHERE action = 'PressButton'
), by_session AS (
    INSERT INTO presses_by_session (session_id, presses)
    SELECT session_id, count(*) FROM presses
    GROUP BY session_id
    ORDER BY session_id
    ON CONFLICT (session_id) DO UPDATE
        SET presses = presses_by_session.presses + excluded.presses
), by_minute AS (
    INSERT INTO presses_by_country_minute (country_code, minute, presses)
    SELECT country_code, "timestamp" / 60000000, count(*) FROM presses
    GROUP BY country_code, "timestamp" / 60000000
    ORDER BY country_code, "timestamp" / 60000000
    ON CONFLICT (country_code, minute) DO UPDATE
        SET presses = presses_by_country_minute.presses + excluded.presses
)
INSERT INTO presses_by_country (country_code, country_name, presses)
SELECT country_code, max(country_name), count(*) FROM presses
GROUP BY country_code
ORDER BY country_code
ON CONFLICT (country_code) DO UPDATE
    SET presses = presses_by_country.presses + excluded.presses,
        country_name = excluded.country_name
"#,
        names = names.join(", "),
        arrays = arrays.join(", "),
    )
});

/// One column of the batch, as an array for `unnest`.
#[derive(Debug)]
enum Array<'a> {
    Uuid(Vec<Option<Uuid>>),
    Int64(Vec<Option<i64>>),
    Int32(Vec<Option<i32>>),
    Text(Vec<Option<&'a str>>),
    Float64(Vec<Option<f64>>),
}

impl<'a> Array<'a> {
    fn new(ty: ColumnType, len: usize) -> Self {
        match ty {
            ColumnType::Uuid => Array::Uuid(Vec::with_capacity(len)),
            ColumnType::Int64 => Array::Int64(Vec::with_capacity(len)),
            ColumnType::Int32 => Array::Int32(Vec::with_capacity(len)),
            ColumnType::Text => Array::Text(Vec::with_capacity(len)),
            ColumnType::Float64 => Array::Float64(Vec::with_capacity(len)),
        }
    }

    fn push(&mut self, value: Value<'a>) {
        match (self, value) {
            (Array::Uuid(v), Value::Uuid(x)) => v.push(Some(x)),
            (Array::Int64(v), Value::Int64(x)) => v.push(Some(x)),
            (Array::Int32(v), Value::Int32(x)) => v.push(Some(x)),
            (Array::Text(v), Value::Text(x)) => v.push(Some(x)),
            (Array::Float64(v), Value::Float64(x)) => v.push(Some(x)),
            (Array::Uuid(v), Value::Null) => v.push(None),
            (Array::Int64(v), Value::Null) => v.push(None),
            (Array::Int32(v), Value::Null) => v.push(None),
            (Array::Text(v), Value::Null) => v.push(None),
            (Array::Float64(v), Value::Null) => v.push(None),
            // `PressEvent::row` gives every column a value of its type (a test in
            // `domain::row` checks it), so this is a bug, not bad data.
            (array, value) => {
                panic!("{value:?} in a column of {array:?}: the row type is inconsistent")
            }
        }
    }

    fn as_param(&self) -> &(dyn ToSql + Sync) {
        match self {
            Array::Uuid(v) => v,
            Array::Int64(v) => v,
            Array::Int32(v) => v,
            Array::Text(v) => v,
            Array::Float64(v) => v,
        }
    }
}

/// `events` sorted by `event_id`: concurrent writers of overlapping batches then
/// take their row locks in the same order and cannot deadlock each other.
fn sorted_by_id(events: &[PressEvent]) -> Vec<&PressEvent> {
    let mut sorted: Vec<&PressEvent> = events.iter().collect();
    sorted.sort_unstable_by_key(|e| e.event_id);
    sorted
}

/// A sorted batch in up to [`WRITERS`] contiguous parts of at least
/// [`MIN_PART`] events: each part goes over its own connection.
fn parts<'a>(sorted: &'a [&'a PressEvent]) -> std::slice::Chunks<'a, &'a PressEvent> {
    let count = sorted.len().div_ceil(MIN_PART).clamp(1, WRITERS);
    sorted.chunks(sorted.len().div_ceil(count).max(1))
}

/// A batch smaller than this many events per connection is not split.
const MIN_PART: usize = 1000;

/// One part of a batch as one array per column, in [`COLUMNS`] order.
fn arrays<'a>(events: &[&'a PressEvent]) -> Vec<Array<'a>> {
    let mut arrays: Vec<Array<'a>> = COLUMNS
        .iter()
        .map(|c| Array::new(c.ty, events.len()))
        .collect();
    for event in events {
        for (array, value) in arrays.iter_mut().zip(event.row().0) {
            array.push(value);
        }
    }
    arrays
}

#[async_trait]
impl EventStore for PgStore {
    fn name(&self) -> &'static str {
        STORE
    }

    async fn write(&self, events: &[PressEvent]) -> Result<(), WriteError> {
        if events.is_empty() {
            return Ok(());
        }
        let fail = |e: QueryError| WriteError {
            store: STORE,
            target: self.target.clone(),
            events: events.len(),
            retryable: e.retryable(),
            source: Arc::new(e),
        };
        // Each part is idempotent on its own, so a batch whose parts fail apart is
        // simply written again.
        let sorted = sorted_by_id(events);
        let written = join_all(
            parts(&sorted)
                .zip(&self.writers)
                .map(|(part, slot)| self.write_part(slot, part)),
        )
        .await;
        written.into_iter().collect::<Result<(), _>>().map_err(fail)
    }
}

impl PgStore {
    async fn write_part(&self, slot: &Slot, part: &[&PressEvent]) -> Result<(), QueryError> {
        let arrays = arrays(part);
        let conn = self.get(slot).await?;
        let insert = async {
            let st = conn.statements().await?;
            let params: Vec<&(dyn ToSql + Sync)> = arrays.iter().map(Array::as_param).collect();
            conn.client.execute(&st.insert, &params).await
        };
        self.finish(slot, &conn, insert).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Action, Location};
    use std::time::UNIX_EPOCH;

    #[test]
    fn the_insert_names_every_column_with_its_array_in_order() {
        let sql = INSERT_SQL.as_str();
        assert!(
            sql.contains(
                "INSERT INTO button_presses (\"event_id\", \"session_id\", \"timestamp\", \
                 \"action\", \"country_name\", \"country_code\", \"subdivision_name\", \
                 \"subdivision_code\", \"city_name\", \"cohort\", \"latitude\", \"longitude\")"
            ),
            "{sql}"
        );
        assert!(
            sql.contains(
                "unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::text[], $5::text[], \
                 $6::text[], $7::text[], $8::text[], $9::text[], $10::integer[], \
                 $11::double precision[], $12::double precision[])"
            ),
            "{sql}"
        );
    }

    #[test]
    fn arrays_hold_the_batch_by_column_sorted_by_event_id() {
        let at = UNIX_EPOCH;
        let mut events: Vec<PressEvent> = (0..3)
            .map(|_| {
                PressEvent::new(
                    Action::PressButton,
                    Uuid::new_v4(),
                    Location::unknown(),
                    None,
                    at,
                )
            })
            .collect();
        events.reverse();
        let sorted = sorted_by_id(&events);
        let parts: Vec<_> = parts(&sorted).collect();
        assert_eq!(parts.len(), 1, "a small batch is not split");
        let arrays = arrays(parts[0]);
        assert_eq!(arrays.len(), COLUMNS.len());
        let Array::Uuid(ids) = &arrays[0] else {
            panic!("event_id is a uuid array: {:?}", arrays[0])
        };
        let mut want: Vec<Option<Uuid>> = events.iter().map(|e| Some(e.event_id)).collect();
        want.sort_unstable();
        assert_eq!(ids, &want);
        let cohort = COLUMNS.iter().position(|c| c.name == "cohort").unwrap();
        let Array::Int32(cohorts) = &arrays[cohort] else {
            panic!("cohort is an integer array: {:?}", arrays[cohort])
        };
        assert_eq!(cohorts, &[None, None, None]);
    }

    #[test]
    fn a_large_batch_is_split_into_contiguous_parts_by_event_id() {
        let events: Vec<PressEvent> = (0..2 * MIN_PART + 1)
            .map(|_| PressEvent::example())
            .collect();
        let sorted = sorted_by_id(&events);
        let parts: Vec<_> = parts(&sorted).collect();
        assert_eq!(parts.len(), WRITERS);
        assert_eq!(parts.iter().map(|p| p.len()).sum::<usize>(), events.len());
        let ids: Vec<Uuid> = parts
            .iter()
            .copied()
            .flatten()
            .map(|e| e.event_id)
            .collect();
        assert!(ids.is_sorted(), "each part follows the one before it");
    }
}
