//! The statistics queries, on the store's read connection (apart from the writes,
//! so a long batch does not hold up the stats page).
//!
//! Guarantee: totals come from `presses_by_country`, which the write statement
//! keeps exact (each event counted once), like the per-session and per-country
//! and minute counts: reading never scans the events, however many there are.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

use super::PgStore;
use super::connection::Conn;
use super::error::QueryError;
use crate::stats::{CountryPresses, GlobalStats, StatsError, StatsSource};

pub(super) const GLOBAL_SQL: &str = "SELECT country_code, country_name, presses \
     FROM presses_by_country ORDER BY presses DESC, country_code";

pub(super) const SESSION_SQL: &str = "SELECT coalesce(\
     (SELECT presses FROM presses_by_session WHERE session_id = $1), 0)";

/// `$2` is the start of a minute, in microseconds (see [`StatsSource`]).
pub(super) const COUNTRY_SINCE_SQL: &str = "SELECT coalesce(sum(presses), 0)::bigint \
     FROM presses_by_country_minute WHERE country_code = $1 AND minute >= $2::bigint / 60000000";

impl PgStore {
    /// Runs one statistics query on the read connection.
    async fn stats_query<T, Q, Fut>(&self, query: Q) -> Result<T, StatsError>
    where
        Q: FnOnce(Arc<Conn>) -> Fut,
        Fut: Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let fail = |e: QueryError| StatsError::read(format!("PostgreSQL at {}", self.target), e);
        let conn = self.get(&self.reader).await.map_err(fail)?;
        self.finish(&self.reader, &conn, query(conn.clone()))
            .await
            .map_err(fail)
    }
}

#[async_trait]
impl StatsSource for PgStore {
    async fn global(&self) -> Result<GlobalStats, StatsError> {
        let rows = self
            .stats_query(|conn| async move {
                let st = conn.statements().await?;
                conn.client.query(&st.global, &[]).await
            })
            .await?;
        let by_country: Vec<CountryPresses> = rows
            .iter()
            .map(|r| CountryPresses {
                country_code: r.get(0),
                country_name: r.get(1),
                presses: r.get::<_, i64>(2).max(0) as u64,
            })
            .collect();
        Ok(GlobalStats {
            total: by_country.iter().map(|c| c.presses).sum(),
            by_country,
        })
    }

    async fn session_presses(&self, id: Uuid) -> Result<u64, StatsError> {
        let row = self
            .stats_query(|conn| async move {
                let st = conn.statements().await?;
                conn.client.query_one(&st.session, &[&id]).await
            })
            .await?;
        Ok(row.get::<_, i64>(0).max(0) as u64)
    }

    async fn country_presses_since(
        &self,
        country_code: &str,
        since_us: i64,
    ) -> Result<u64, StatsError> {
        let row = self
            .stats_query(|conn| async move {
                let st = conn.statements().await?;
                conn.client
                    .query_one(&st.country_since, &[&country_code, &since_us])
                    .await
            })
            .await?;
        Ok(row.get::<_, i64>(0).max(0) as u64)
    }
}
