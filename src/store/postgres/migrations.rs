//! The PostgreSQL schema: versioned migrations in `migrations/NNNN_*.sql`, applied
//! in order by [`PgStore::migrate`]; `button_schema_migrations` records which ran.
//!
//! Guarantee: idempotent, and safe when several processes migrate at once: the
//! whole upgrade runs in one transaction holding an advisory lock, so one applies
//! it and the others then find nothing to do. A released migration is never
//! edited (existing databases must keep the schema they have): add a new file.

use anyhow::Context;
use tokio_postgres::Client;

use super::PgStore;
use super::error::QueryError;
use crate::store::migration;

/// Key of the advisory lock that serializes concurrent migrations ("button" in ASCII).
const MIGRATION_LOCK: i64 = 0x0000_6275_7474_6f6e;

/// Schema versions, applied in order, each in the migration transaction: version
/// `n` is the `n`th entry.
pub(crate) const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_events.sql"),
    include_str!("migrations/0002_press_aggregates.sql"),
];

/// The table that records applied versions.
const SCHEMA_MIGRATIONS: &str = include_str!("migrations/schema_migrations.sql");

impl PgStore {
    /// Creates or upgrades the schema to the latest version. Idempotent, and safe
    /// when several processes migrate at once: the whole upgrade runs in one
    /// transaction holding an advisory lock, so one applies it and the others then
    /// find nothing to do.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let mut client = self
            .open()
            .await
            .with_context(|| format!("cannot connect to PostgreSQL at {}", self.target))?;
        self.upgrade(&mut client)
            .await
            .map_err(QueryError::Pg)
            .with_context(|| format!("cannot migrate the PostgreSQL schema at {}", self.target))
    }

    async fn upgrade(&self, client: &mut Client) -> Result<(), tokio_postgres::Error> {
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(SCHEMA_MIGRATIONS).await?;
        let applied: Vec<migration::Version> = tx
            .query("SELECT version FROM button_schema_migrations", &[])
            .await?
            .iter()
            .filter_map(|r| migration::Version::try_from(r.get::<_, i32>(0)).ok())
            .collect();
        let pending = migration::pending(&applied, MIGRATIONS.len());
        pending.warn_if_newer("PostgreSQL", &self.target);
        for (version, sql) in pending.select(MIGRATIONS) {
            tx.batch_execute(sql).await?;
            let recorded = i32::try_from(version).expect("fewer than 2^31 migrations");
            tx.execute(
                "INSERT INTO button_schema_migrations (version) VALUES ($1)",
                &[&recorded],
            )
            .await?;
            tracing::info!(target = %self.target, version, "PostgreSQL schema migrated");
        }
        tx.commit().await
    }
}
