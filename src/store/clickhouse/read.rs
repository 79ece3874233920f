//! The statistics queries.
//!
//! Guarantee: every figure counts distinct `event_id`s (`uniqExact`), so the
//! duplicates a redelivered batch leaves until the next merge never show: the
//! figures are exact before, during and after merges. The per-session query uses
//! the primary key; the per-country-since query skips older monthly partitions.

use async_trait::async_trait;
use serde::Deserialize;
use uuid::Uuid;

use super::ChStore;
use super::error::ChError;
use super::sql::quote_str;
use crate::stats::{CountryPresses, GlobalStats, StatsError, StatsSource};

/// A 64-bit count: ClickHouse quotes 64-bit integers in JSON unless
/// `output_format_json_quote_64bit_integers=0`; accept both. (We do not send the
/// setting: users in read-only mode may not change settings.)
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Count {
    Number(u64),
    Text(String),
}

impl Count {
    fn get(&self) -> Result<u64, ChError> {
        match self {
            Count::Number(n) => Ok(*n),
            Count::Text(s) => s
                .parse()
                .map_err(|_| ChError::Response(format!("not a count: {s:?}"))),
        }
    }
}

#[derive(Deserialize)]
struct CountRow {
    n: Count,
}

#[derive(Deserialize)]
struct CountryRow {
    country_code: String,
    name: String,
    n: Count,
}

impl ChStore {
    /// The count in the one row `sql` returns (0 for no row).
    async fn count(&self, sql: &str) -> Result<u64, StatsError> {
        let rows: Vec<CountRow> = self
            .query_rows(sql)
            .await
            .map_err(|e| self.stats_error(e))?;
        match rows.first() {
            Some(r) => r.n.get().map_err(|e| self.stats_error(e)),
            None => Ok(0),
        }
    }

    fn stats_error(&self, e: ChError) -> StatsError {
        StatsError::read(format!("ClickHouse at {}", self.target), e)
    }
}

#[async_trait]
impl StatsSource for ChStore {
    async fn global(&self) -> Result<GlobalStats, StatsError> {
        // Aliases that shadow no column (`name`, `n`): a name that is both is
        // resolved differently across versions and settings
        // (`prefer_column_name_to_alias`).
        let rows: Vec<CountryRow> = self
            .query_rows(&self.sql(
                "SELECT country_code, anyLastMerge(country_name) AS name, \
                 uniqExactMerge(presses) AS n \
                 FROM {db}.presses_by_country \
                 GROUP BY country_code \
                 ORDER BY n DESC, country_code \
                 FORMAT JSONEachRow",
            ))
            .await
            .map_err(|e| self.stats_error(e))?;
        let by_country = rows
            .into_iter()
            .map(|r| {
                Ok(CountryPresses {
                    presses: r.n.get()?,
                    country_code: r.country_code,
                    country_name: r.name,
                })
            })
            .collect::<Result<Vec<_>, ChError>>()
            .map_err(|e| self.stats_error(e))?;
        Ok(GlobalStats {
            total: by_country.iter().map(|c| c.presses).sum(),
            by_country,
        })
    }

    async fn session_presses(&self, id: Uuid) -> Result<u64, StatsError> {
        // A Uuid's Display is its canonical hyphenated form: safe in a literal.
        self.count(&self.sql(&format!(
            "SELECT uniqExact(event_id) AS n FROM {{db}}.button_presses \
             WHERE session_id = toUUID('{}') AND action = 'PressButton' \
             FORMAT JSONEachRow",
            id.hyphenated()
        )))
        .await
    }

    async fn country_presses_since(
        &self,
        country_code: &str,
        since_us: i64,
    ) -> Result<u64, StatsError> {
        // The event_date condition only lets ClickHouse skip older partitions.
        let since_s = since_us.max(0) / 1_000_000;
        self.count(&self.sql(&format!(
            "SELECT uniqExact(event_id) AS n FROM {{db}}.button_presses \
             WHERE country_code = {} AND event_date >= toDate(toDateTime({since_s})) \
             AND timestamp >= {since_us} AND action = 'PressButton' \
             FORMAT JSONEachRow",
            quote_str(country_code)
        )))
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::clickhouse::http::parse_rows;

    #[test]
    fn counts_come_quoted_or_not() {
        let rows: Vec<CountRow> = parse_rows("{\"n\":\"12\"}\n").unwrap();
        assert_eq!(rows[0].n.get().unwrap(), 12);
        let rows: Vec<CountRow> = parse_rows("{\"n\":12}\n\n").unwrap();
        assert_eq!(rows[0].n.get().unwrap(), 12);
        assert!(
            parse_rows::<CountRow>("{\"n\":\"x\"}").unwrap()[0]
                .n
                .get()
                .is_err()
        );
        assert!(parse_rows::<CountRow>("oops").is_err());
    }
}
