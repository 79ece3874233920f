//! Writing a batch: in one transaction, ask which of its events are stored
//! already, `COPY` the others into `button_presses` (binary), and add their
//! presses to `presses_by_country`, `presses_by_session` and
//! `presses_by_country_minute` (the statistics read those, never the events).
//!
//! Guarantee: idempotent and atomic. Only events not yet stored are copied and
//! counted, in the transaction that stores them, so a redelivered batch inserts
//! nothing and counts nothing, and a batch is all or nothing. Two writers that
//! copy the same new event at once cannot both store it (the primary key): the
//! second one's transaction fails as a whole and is run again, and then finds
//! the event stored. `COPY` rather than `INSERT .. ON CONFLICT` because it
//! writes rows in bulk, where a conflict-checked insert writes them one by one:
//! the same 400,000 rows went in 3.4x faster (BENCHMARKS.md). The column list
//! and the copied values come from the event's row type ([`COLUMNS`]), so they
//! cannot drift from each other.

use std::collections::{BTreeMap, HashSet};
use std::error::Error;
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use bytes::BytesMut;
use futures::future::join_all;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use uuid::Uuid;

use super::connection::{Conn, Slot};
use super::error::QueryError;
use super::{PgStore, STORE, WRITERS};
use crate::domain::row::{COLUMNS, ColumnType, Value};
use crate::domain::{Action, PressEvent};
use crate::stats::MINUTE_US;
use crate::store::{EventStore, WriteError};

/// PostgreSQL's name for a column type (as in the migrations, which a test in
/// `store::tables` checks against the row type).
#[cfg(test)]
pub(crate) fn sql_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Uuid => "uuid",
        ColumnType::Int64 => "bigint",
        ColumnType::Int32 => "integer",
        ColumnType::Text => "text",
        ColumnType::Float64 => "double precision",
    }
}

/// The wire type of a column type, for the binary `COPY`.
fn pg_type(ty: ColumnType) -> Type {
    match ty {
        ColumnType::Uuid => Type::UUID,
        ColumnType::Int64 => Type::INT8,
        ColumnType::Int32 => Type::INT4,
        ColumnType::Text => Type::TEXT,
        ColumnType::Float64 => Type::FLOAT8,
    }
}

/// Which of the ids in `$1` are stored.
pub(super) const STORED_SQL: &str =
    "SELECT event_id FROM button_presses WHERE event_id = ANY($1::uuid[])";

/// The events' columns, in [`COLUMNS`] order, in PostgreSQL's binary format.
pub(super) static COPY_SQL: LazyLock<String> = LazyLock::new(|| {
    let names: Vec<String> = COLUMNS.iter().map(|c| format!("\"{}\"", c.name)).collect();
    format!(
        "COPY button_presses ({}) FROM STDIN (FORMAT binary)",
        names.join(", ")
    )
});

/// The wire types of [`COPY_SQL`]'s columns.
static COPY_TYPES: LazyLock<Vec<Type>> =
    LazyLock::new(|| COLUMNS.iter().map(|c| pg_type(c.ty)).collect());

/// Adds new presses to the three counts, from arrays in key order ([`Counts`]):
/// concurrent writers lock the rows in the same order and do not deadlock each
/// other.
pub(super) const COUNT_SQL: &str = r#"
WITH by_session AS (
    INSERT INTO presses_by_session (session_id, presses)
    SELECT * FROM unnest($1::uuid[], $2::bigint[])
    ON CONFLICT (session_id) DO UPDATE
        SET presses = presses_by_session.presses + excluded.presses
), by_minute AS (
    INSERT INTO presses_by_country_minute (country_code, minute, presses)
    SELECT * FROM unnest($3::text[], $4::bigint[], $5::bigint[])
    ON CONFLICT (country_code, minute) DO UPDATE
        SET presses = presses_by_country_minute.presses + excluded.presses
)
INSERT INTO presses_by_country (country_code, country_name, presses)
SELECT * FROM unnest($6::text[], $7::text[], $8::bigint[])
ON CONFLICT (country_code) DO UPDATE
    SET presses = presses_by_country.presses + excluded.presses,
        country_name = excluded.country_name
"#;

/// A column value as its column's type: what `COPY` sends for it.
impl ToSql for Value<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Uuid(v) => v.to_sql(ty, out),
            Value::Int64(v) => v.to_sql(ty, out),
            Value::Int32(v) => v.to_sql(ty, out),
            Value::Text(v) => v.to_sql(ty, out),
            Value::Float64(v) => v.to_sql(ty, out),
        }
    }

    /// The types of [`pg_type`]; each value checks its own against the column's
    /// (`PressEvent::row` gives every column a value of its type).
    fn accepts(ty: &Type) -> bool {
        [Type::UUID, Type::INT8, Type::INT4, Type::TEXT, Type::FLOAT8].contains(ty)
    }

    to_sql_checked!();
}

/// A column value as a statement parameter (a function, not a closure: the
/// write future must be `Send`, which a closure's inferred lifetimes defeat).
fn as_sql<'a>(value: &'a Value<'_>) -> &'a (dyn ToSql + Sync) {
    value
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

/// The events of a sorted part that are not `stored`, each once (a batch may
/// hold an event twice: a replay after an outage).
fn new_events<'a>(sorted: &[&'a PressEvent], stored: &HashSet<Uuid>) -> Vec<&'a PressEvent> {
    let mut new: Vec<&PressEvent> = Vec::with_capacity(sorted.len());
    for &e in sorted {
        let repeated = new.last().is_some_and(|last| last.event_id == e.event_id);
        if !repeated && !stored.contains(&e.event_id) {
            new.push(e);
        }
    }
    new
}

/// The presses among new events, counted per session, per country and minute,
/// and per country, as [`COUNT_SQL`]'s arrays, each in key order.
#[derive(Debug, Default, PartialEq)]
struct Counts<'a> {
    sessions: Vec<Uuid>,
    session_presses: Vec<i64>,
    minute_countries: Vec<&'a str>,
    minutes: Vec<i64>,
    minute_presses: Vec<i64>,
    countries: Vec<&'a str>,
    country_names: Vec<&'a str>,
    country_presses: Vec<i64>,
}

impl<'a> Counts<'a> {
    fn of(new: &[&'a PressEvent]) -> Self {
        // Ordered maps: each array comes out in key order.
        let mut by_session: BTreeMap<Uuid, i64> = BTreeMap::new();
        let mut by_minute: BTreeMap<(&str, i64), i64> = BTreeMap::new();
        let mut by_country: BTreeMap<&str, (&str, i64)> = BTreeMap::new();
        for e in new.iter().filter(|e| e.action == Action::PressButton) {
            let l = &e.location;
            *by_session.entry(e.session_id).or_default() += 1;
            *by_minute
                .entry((&l.country_code, e.timestamp.div_euclid(MINUTE_US)))
                .or_default() += 1;
            by_country
                .entry(&l.country_code)
                .or_insert((&l.country_name, 0))
                .1 += 1;
        }
        let mut counts = Counts::default();
        for (session, n) in by_session {
            counts.sessions.push(session);
            counts.session_presses.push(n);
        }
        for ((country, minute), n) in by_minute {
            counts.minute_countries.push(country);
            counts.minutes.push(minute);
            counts.minute_presses.push(n);
        }
        for (country, (name, n)) in by_country {
            counts.countries.push(country);
            counts.country_names.push(name);
            counts.country_presses.push(n);
        }
        counts
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 8] {
        [
            &self.sessions,
            &self.session_presses,
            &self.minute_countries,
            &self.minutes,
            &self.minute_presses,
            &self.countries,
            &self.country_names,
            &self.country_presses,
        ]
    }
}

/// How often a part is written again when a concurrent writer stored some of
/// its events first (or PostgreSQL broke a deadlock): each attempt finds more
/// of them stored, so one more is normally enough.
const CONFLICT_ATTEMPTS: usize = 5;

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
    /// Writes one part in a transaction of its own, again when it conflicted
    /// with a concurrent writer.
    async fn write_part(&self, slot: &Slot, part: &[&PressEvent]) -> Result<(), QueryError> {
        let mut attempt = 1;
        loop {
            let conn = self.get(slot).await?;
            let result = {
                // A transaction needs the connection to itself.
                let _alone = conn.exclusive.lock().await;
                self.finish(slot, &conn, write_in_transaction(&conn, part))
                    .await
            };
            let Err(e) = result else { return Ok(()) };
            // A failed transaction may still be open (or the statement still
            // running, after a timeout): the connection is not used again.
            self.drop_conn(slot, &conn).await;
            if !e.is_conflict() || attempt == CONFLICT_ATTEMPTS {
                return Err(e);
            }
            tracing::debug!(target = %self.target, attempt, error = %e, "a concurrent writer got in first; writing the part again");
            attempt += 1;
        }
    }
}

/// The transaction of [`PgStore::write_part`]: ask, copy, count, commit.
async fn write_in_transaction(
    conn: &Conn,
    part: &[&PressEvent],
) -> Result<(), tokio_postgres::Error> {
    let st = conn.statements().await?;
    let client = &conn.client;
    client.batch_execute("BEGIN").await?;
    let ids: Vec<Uuid> = part.iter().map(|e| e.event_id).collect();
    let stored: HashSet<Uuid> = client
        .query(&st.stored, &[&ids])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let new = new_events(part, &stored);
    if !new.is_empty() {
        let writer = BinaryCopyInWriter::new(client.copy_in(&st.copy).await?, &COPY_TYPES);
        futures::pin_mut!(writer);
        for e in &new {
            let row = e.row();
            writer.as_mut().write(&row.0.each_ref().map(as_sql)).await?;
        }
        writer.finish().await?;
        let counts = Counts::of(&new);
        client.execute(&st.count, &counts.params()).await?;
    }
    client.batch_execute("COMMIT").await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Location;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn the_copy_names_every_column_in_order_with_its_type() {
        assert_eq!(
            COPY_SQL.as_str(),
            "COPY button_presses (\"event_id\", \"session_id\", \"timestamp\", \"action\", \
             \"country_name\", \"country_code\", \"subdivision_name\", \"subdivision_code\", \
             \"city_name\", \"cohort\", \"latitude\", \"longitude\") FROM STDIN (FORMAT binary)"
        );
        assert_eq!(COPY_TYPES.len(), COLUMNS.len());
        // Every value of an event is accepted by its column's type.
        let event = PressEvent::example();
        for ((column, value), ty) in event.row().iter().zip(COPY_TYPES.iter()) {
            let mut out = BytesMut::new();
            value
                .to_sql_checked(ty, &mut out)
                .unwrap_or_else(|e| panic!("{}: {e}", column.name));
        }
    }

    fn press(session: u128, country: &str, second: u64) -> PressEvent {
        let mut location = Location::unknown();
        location.country_code = country.into();
        location.country_name = format!("{country} land");
        PressEvent::new(
            Action::PressButton,
            Uuid::from_u128(session),
            location,
            None,
            UNIX_EPOCH + Duration::from_secs(second),
        )
    }

    #[test]
    fn new_events_leave_out_the_stored_ones_and_repeats() {
        let events: Vec<PressEvent> = (0..4).map(|i| press(1, "NL", i)).collect();
        let mut batch = events.clone();
        batch.push(events[1].clone()); // twice in one batch
        let sorted = sorted_by_id(&batch);
        let stored = HashSet::from([events[2].event_id]);
        let new: Vec<Uuid> = new_events(&sorted, &stored)
            .iter()
            .map(|e| e.event_id)
            .collect();
        let mut want = vec![events[0].event_id, events[1].event_id, events[3].event_id];
        want.sort_unstable();
        assert_eq!(new, want);
    }

    #[test]
    fn counts_are_per_key_in_key_order_and_presses_only() {
        let mut entered = press(2, "NL", 0);
        entered.action = Action::EnterPage;
        let events = [
            press(2, "NL", 130),
            press(1, "US", 10),
            press(2, "NL", 125),
            press(2, "DE", 200),
            entered,
        ];
        let new: Vec<&PressEvent> = events.iter().collect();
        let counts = Counts::of(&new);
        assert_eq!(
            counts,
            Counts {
                sessions: vec![Uuid::from_u128(1), Uuid::from_u128(2)],
                session_presses: vec![1, 3],
                minute_countries: vec!["DE", "NL", "US"],
                minutes: vec![3, 2, 0],
                minute_presses: vec![1, 2, 1],
                countries: vec!["DE", "NL", "US"],
                country_names: vec!["DE land", "NL land", "US land"],
                country_presses: vec![1, 2, 1],
            }
        );
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
        let small = sorted_by_id(&events[..3]);
        assert_eq!(
            super::parts(&small).count(),
            1,
            "a small batch is not split"
        );
    }
}
