//! The PostgreSQL store: events in `button_presses` (named after the Kafka topic, so
//! the original app's JDBC sink connector could write the same table), and
//! counts per country, session and minute kept up to date by the transaction that
//! inserts.
//!
//! - **Idempotent**: a batch is one transaction that asks which of its events are
//!   stored, `COPY`s the others and counts only those; a concurrent writer that
//!   stored some first makes it fail whole and run again. A redelivered batch
//!   inserts nothing and counts nothing; a batch is all or nothing (`write.rs`).
//! - **Self-healing**: one connection for writes and one for statistics, each opened
//!   on first use and opened again on the next call after it broke (server restart,
//!   network cut, timeout). A failed write says whether retrying can help
//!   ([`WriteError::retryable`](crate::store::WriteError::retryable)); the caller
//!   retries, the store reconnects (`connection.rs`, `error.rs`).
//! - **TLS** follows libpq's `sslmode` (`disable`, `prefer`, `require`, `verify-ca`,
//!   `verify-full`) and `sslrootcert=PATH` (a PEM file of CA certificates, as Aiven
//!   gives). Like libpq, `prefer` and `require` encrypt without checking the
//!   certificate, unless `sslrootcert` is given, which makes `require` verify the
//!   chain as `verify-ca` does (`url.rs`, `tls.rs`).
//! - **Schema**: versioned migrations in `migrations/*.sql`, run in one locked
//!   transaction (`migrations.rs`).
//! - **Secrets**: the password is never logged nor shown by `Debug`; errors name the
//!   host, port and database only.

mod connection;
mod error;
pub(super) mod migrations;
mod read;
mod tls;
mod url;
pub(super) mod write;

use std::fmt;
use std::time::Duration;

use anyhow::Context;
use postgres_native_tls::MakeTlsConnector;
use tokio_postgres::Config;

use self::connection::{Slot, describe};
use self::error::QueryError;
use crate::config::PgConfig;

const STORE: &str = "postgres";

/// How long one statement may take before the connection is given up (and the
/// write reported as retryable). A healthy batch of 50,000 events takes ~0.5-1 s.
const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Connect timeout when the URL does not set `connect_timeout`.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The PostgreSQL event store.
pub struct PgStore {
    config: Config,
    tls: MakeTlsConnector,
    target: String,
    timeout: Duration,
    /// One connection per concurrent part of a batch (see `write`).
    writers: [Slot; WRITERS],
    reader: Slot,
}

/// Connections a batch is written over at once, each taking a contiguous part
/// (by `event_id`) in its own transaction: PostgreSQL runs one statement on one
/// core, and inserting the events is most of a batch's time.
const WRITERS: usize = 2;

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Opens a first connection (so a wrong address, password or certificate shows
    /// at start). Errors name the host and database, never the password.
    pub async fn connect(config: &PgConfig) -> anyhow::Result<Self> {
        let store = Self::new(config)?;
        store
            .get(&store.writers[0])
            .await
            .with_context(|| format!("cannot connect to PostgreSQL at {}", store.target))?;
        Ok(store)
    }

    /// Sets the store up without connecting: connections are opened on first use
    /// and again after they break, so a database that is down at start is used
    /// once it is back.
    pub fn new(config: &PgConfig) -> anyhow::Result<Self> {
        let parsed = url::parse_url(&config.url.expose())?;
        let mut config: Config = parsed
            .conn_str
            .parse()
            .map_err(QueryError::Pg)
            .context("invalid PostgreSQL URL")?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        if config.get_keepalives_idle() > Duration::from_secs(60) {
            // Probe an idle connection after 30 s, not two hours (a busy one is
            // covered by the query timeout).
            config.keepalives_idle(Duration::from_secs(30));
        }
        if config.get_application_name().is_none() {
            config.application_name("button");
        }
        let tls = tls::tls_connector(parsed.mode, parsed.root_cert.as_deref())?;
        Ok(PgStore {
            target: describe(&config),
            config,
            tls,
            timeout: DEFAULT_QUERY_TIMEOUT,
            writers: Default::default(),
            reader: Slot::default(),
        })
    }

    /// How long a statement may run before its connection is dropped and the call
    /// fails (retryably). Default 30 s.
    pub fn with_query_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// `host:port/dbname`, for messages.
    pub fn target(&self) -> &str {
        &self.target
    }
}
