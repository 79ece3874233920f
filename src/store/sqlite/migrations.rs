//! The embedded store's schema: versioned migrations in `migrations/NNNN_*.sql`,
//! run when the store opens; `PRAGMA user_version` records how many ran.
//!
//! Guarantee: the upgrade runs in one `IMMEDIATE` transaction, so two processes
//! opening the same file do not both migrate it; a database newer than this binary
//! is left as it is, with a warning. A released migration is never edited
//! (SQLite keeps each `CREATE` statement's text in `sqlite_master`, and existing
//! files must keep the schema they have): add a new file.

use std::path::Path;

use rusqlite::Connection;

use crate::store::migration;

/// Schema versions, applied in order: version `n` is the `n`th file.
pub(crate) const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_events.sql"),
    include_str!("migrations/0002_press_aggregates.sql"),
];

/// Brings the schema of the database at `path` (open as `conn`) up to date.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let done: migration::Version = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let pending = migration::pending_after(done, MIGRATIONS.len());
    pending.warn_if_newer("SQLite", &path.display().to_string());
    if done > 0 && !pending.versions.is_empty() {
        // An upgrade may read every stored event once (building counts): say so
        // before a large file makes the start slow.
        tracing::info!(path = %path.display(), from = done, to = pending.known, "upgrading the embedded store's schema");
    }
    for (_, sql) in pending.select(MIGRATIONS) {
        tx.execute_batch(sql)?;
    }
    if !pending.versions.is_empty() {
        tx.pragma_update(None, "user_version", pending.known)?;
    }
    tx.commit()
}
