//! The ClickHouse schema: versioned migrations in `migrations/NNNN_*.sql`, applied
//! in order by [`ChStore::migrate`]; `button_schema_migrations` records which ran.
//! `{db}` in the files stands for the store's database (quoted).
//!
//! Guarantee: idempotent, and safe when several processes migrate at once.
//! ClickHouse has neither transactions nor locks, so concurrent migrations may
//! both run a version: every statement is written to be run twice (`IF NOT
//! EXISTS`), and a version is recorded only after all its statements succeeded.
//! A released migration is never edited (existing databases must keep the schema
//! they have): add a new file. Statements must run on ClickHouse 18.16 and on
//! current versions.

use anyhow::Context;
use serde::Deserialize;

use super::ChStore;
use super::error::ChError;
use super::sql::statements;
use crate::store::migration;

/// Schema versions, applied in order: version `n` is the `n`th file, each holding
/// statements separated by `;`.
pub(crate) const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_events.sql"),
    include_str!("migrations/0002_press_counts.sql"),
    include_str!("migrations/0003_day_totals.sql"),
];

/// The table that records applied versions.
const SCHEMA_MIGRATIONS: &str = include_str!("migrations/schema_migrations.sql");

#[derive(Deserialize)]
struct VersionRow {
    version: migration::Version,
}

impl ChStore {
    /// Creates or upgrades the schema to the latest version. Idempotent, and safe
    /// when several processes migrate at once (see the module's documentation).
    pub async fn migrate(&self) -> anyhow::Result<()> {
        self.upgrade()
            .await
            .with_context(|| format!("cannot migrate the ClickHouse schema at {}", self.target))
    }

    async fn upgrade(&self) -> Result<(), ChError> {
        self.ddl(&self.sql(SCHEMA_MIGRATIONS)).await?;
        let applied: Vec<VersionRow> = self
            .query_rows(&self.sql(
                "SELECT DISTINCT version FROM {db}.button_schema_migrations FORMAT JSONEachRow",
            ))
            .await?;
        let applied: Vec<migration::Version> = applied.into_iter().map(|r| r.version).collect();
        let pending = migration::pending(&applied, MIGRATIONS.len());
        pending.warn_if_newer("ClickHouse", &self.target);
        for (version, file) in pending.select(MIGRATIONS) {
            for statement in statements(file) {
                self.ddl(&self.sql(statement)).await?;
            }
            self.query(&self.sql(&format!(
                "INSERT INTO {{db}}.button_schema_migrations (version) VALUES ({version})"
            )))
            .await?;
            tracing::info!(target = %self.target, version, "ClickHouse schema migrated");
        }
        Ok(())
    }

    /// Runs an `IF NOT EXISTS` statement. Old servers may still say the table
    /// exists when another migration created it at the same moment: that is fine.
    async fn ddl(&self, sql: &str) -> Result<(), ChError> {
        const TABLE_ALREADY_EXISTS: u32 = 57;
        match self.query(sql).await {
            Err(ChError::Server {
                code: Some(TABLE_ALREADY_EXISTS),
                ..
            }) => Ok(()),
            other => other.map(drop),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_is_statements_that_may_run_twice() {
        for (i, file) in MIGRATIONS.iter().enumerate() {
            let statements = statements(file);
            assert!(!statements.is_empty(), "version {}", i + 1);
            for s in statements {
                // Tables and views only if missing, drops only if there; the
                // inserts add event ids to uniqExact states, where an id
                // counts once however often it is added, or grow the days'
                // counts, where too much only slows reads down (0003).
                let twice = s.contains("IF NOT EXISTS")
                    || s.starts_with("DROP TABLE IF EXISTS")
                    || s.starts_with("INSERT INTO {db}.presses_by_country_minute")
                    || s.starts_with("INSERT INTO {db}.presses_by_country_day ");
                assert!(twice, "version {}: {s}", i + 1);
            }
        }
        assert_eq!(statements(SCHEMA_MIGRATIONS).len(), 1);
    }
}
