//! The read side of the embedded store: the statistics queries, on the store's
//! read connections, off the async runtime; and reading a database file back.
//!
//! Guarantee: reads never wait for the writer (WAL: readers see the last commit);
//! totals come from `presses_by_country`, kept exact in the writer's transaction,
//! so reading them never scans the events.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use uuid::Uuid;

use super::SqliteStore;
use crate::domain::PressEvent;
use crate::stats::{CountryPresses, GlobalStats, StatsError, StatsSource};

impl SqliteStore {
    /// Runs `f` on a read connection, off the async runtime.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StatsError> {
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            // Any free connection; else wait for the first.
            let guard = readers
                .iter()
                .find_map(|r| r.try_lock().ok())
                .unwrap_or_else(|| readers[0].lock().unwrap_or_else(|p| p.into_inner()));
            f(&guard)
        })
        .await
        .map_err(|e| StatsError::read("SQLite", e))?
        .map_err(|e| StatsError::read("SQLite", e))
    }
}

/// Read side: queries run on blocking threads, on the store's read connections.
#[async_trait]
impl StatsSource for SqliteStore {
    async fn global(&self) -> Result<GlobalStats, StatsError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT country_code, country_name, presses FROM presses_by_country
                 ORDER BY presses DESC, country_code",
            )?;
            let by_country = stmt
                .query_map([], |r| {
                    Ok(CountryPresses {
                        country_code: r.get(0)?,
                        country_name: r.get(1)?,
                        presses: r.get::<_, i64>(2)? as u64,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let total = by_country.iter().map(|c| c.presses).sum();
            Ok(GlobalStats { total, by_country })
        })
        .await
    }

    async fn session_presses(&self, id: Uuid) -> Result<u64, StatsError> {
        self.read(move |c| {
            c.prepare_cached(
                "SELECT coalesce(
                     (SELECT presses FROM presses_by_session WHERE session_id = ?1), 0)",
            )?
            .query_row([id.to_string()], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
        })
        .await
    }

    async fn country_presses_since(&self, code: &str, since_us: i64) -> Result<u64, StatsError> {
        let code = code.to_owned();
        self.read(move |c| {
            c.prepare_cached(
                // `since_us` is the start of a minute (see `StatsSource`).
                "SELECT coalesce(sum(presses), 0) FROM presses_by_country_minute
                 WHERE country_code = ?1 AND minute >= ?2 / 60000000",
            )?
            .query_row(params![code, since_us], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
        })
        .await
    }
}

/// Reads every event back, oldest first (for tests and export). Opens read-write so
/// that SQLite can recover the write-ahead log after a crash.
pub fn read_all(path: &Path) -> anyhow::Result<Vec<PressEvent>> {
    use crate::domain::{Action, Location};
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let mut stmt = conn.prepare(
        "SELECT event_id, session_id, timestamp, action, country_code, country_name,
                subdivision_name, subdivision_code, city_name, latitude, longitude, cohort
         FROM events ORDER BY event_id",
    )?;
    let rows = stmt.query_map([], |r| {
        let uuid = |i: usize| -> rusqlite::Result<Uuid> {
            let s: String = r.get(i)?;
            Uuid::parse_str(&s).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
            })
        };
        let action: String = r.get(3)?;
        let action = Action::parse(&action).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                3,
                rusqlite::types::Type::Text,
                format!("unknown action {action:?}").into(),
            )
        })?;
        Ok(PressEvent {
            event_id: uuid(0)?,
            session_id: uuid(1)?,
            timestamp: r.get(2)?,
            action,
            location: Location {
                country_code: r.get(4)?,
                country_name: r.get(5)?,
                subdivision_name: r.get(6)?,
                subdivision_code: r.get(7)?,
                city_name: r.get(8)?,
                latitude: r.get(9)?,
                longitude: r.get(10)?,
            },
            cohort: r.get(11)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Every press as (session, µs since epoch), for `button analyze`: two columns,
/// not whole events, so a long history fits in memory.
pub fn presses(path: &Path) -> anyhow::Result<Vec<(Uuid, i64)>> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let mut stmt =
        conn.prepare("SELECT session_id, timestamp FROM events WHERE action = 'PressButton'")?;
    let rows = stmt.query_map([], |r| {
        let s: String = r.get(0)?;
        let id = Uuid::parse_str(&s).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
        })?;
        Ok((id, r.get::<_, i64>(1)?))
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// The schema version recorded in the database file.
pub fn schema_version(path: &Path) -> anyhow::Result<Option<usize>> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    Ok(conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .optional()?)
}
