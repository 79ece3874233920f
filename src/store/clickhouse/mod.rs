//! The ClickHouse store, over ClickHouse's HTTP interface (with `reqwest`).
//!
//! **Compatibility.** Every statement here is written for both ClickHouse 18.16
//! (Debian's package, which `tests/stores.rs` runs them against) and current
//! ClickHouse (Aiven), using only long-standing syntax. That rules out query
//! parameters (`{x:String}`), `DateTime64`, positional `ORDER BY 3` and newer
//! functions; values are put into the SQL text instead, strings only through
//! `quote_str`, identifiers through `quote_ident`, and UUIDs as their canonical
//! text (`sql.rs`). Try any new statement on both versions.
//!
//! **Schema** (`migrations/*.sql`, run by `migrations.rs`). `button_presses` is a
//! `ReplacingMergeTree` ordered by `(session_id, event_id)`: a redelivered event is
//! a duplicate row until the next merge collapses it. `presses_by_country_minute`
//! (an `AggregatingMergeTree` fed by a materialized view on every insert) keeps,
//! per country and minute, the *set* of press `event_id`s (`uniqExact` state) and
//! how many rows went in; `presses_by_country_minute_totals` holds each minute's
//! distinct presses as a plain number, settled every few seconds by the sink
//! ([`crate::store::EventStore::settle`]), versioned by those rows.
//! `presses_by_country_day` counts the rows inserted per country and day (a view
//! on the minutes' table), and `presses_by_country_day_totals` holds each day's
//! presses, rolled up from its settled minutes by the same settling, versioned
//! by that count. Every figure counts distinct `event_id`s, so duplicates never
//! show: the figures are exact before, during and after merges (`read.rs`).
//! The all-time read costs a row per country and day with presses for days
//! rolled up since their last insert, a row per minute for the others' minutes
//! if settled, and their ids if not; the last hour reads at most 61 minutes per
//! country. The per-session query uses the primary key.
//!
//! **Writes** (`write.rs`). One HTTP request per batch (`INSERT .. FORMAT
//! JSONEachRow`), sent with `insert_deduplicate=0`; a failed insert may have
//! stored part of the batch, and a retry only adds duplicates, which the queries
//! ignore. Settling is one `INSERT .. SELECT` from the states of the minutes
//! inserted into since they were last settled (its cost is their presses), then
//! one `INSERT .. VALUES` of their days' new totals (its cost is their minutes). A
//! store looks for those among the minutes it inserted into itself, and among
//! all minutes only at its first settling and every few minutes after (for what
//! other writers or a killed sink left), so its upkeep does not grow with the
//! data stored.
//!
//! **Secrets.** Credentials travel in the `X-ClickHouse-User` and
//! `X-ClickHouse-Key` headers, never in a URL, a log line, an error or `Debug`
//! output (`url.rs`, `http.rs`). HTTPS uses the system's trust store.

mod error;
mod http;
pub(super) mod migrations;
mod read;
pub(super) mod sql;
mod url;
mod write;

use std::fmt;
use std::time::Duration;

use anyhow::Context;
use reqwest::Url;
use secrecy::SecretString;

use self::http::truncate;
use self::sql::{in_database, quote_ident};
use crate::config::ChConfig;

const STORE: &str = "clickhouse";

/// Longest a request may take (a healthy batch of 50,000 events: ~0.3 s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Below the server's `keep_alive_timeout` (3 s by default), so a pooled connection
/// is not reused just as the server closes it.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(2);

/// The ClickHouse event store.
pub struct ChStore {
    http: reqwest::Client,
    endpoint: Url,
    user: Option<String>,
    password: Option<SecretString>,
    database: String,
    /// The database, quoted, for SQL text.
    db: String,
    target: String,
    /// The minutes this store inserted into and has not settled since (`write.rs`).
    dirty: std::sync::Mutex<write::Dirty>,
    /// Whether reads send their settings (until the server says this user may not).
    read_settings: std::sync::atomic::AtomicBool,
}

impl fmt::Debug for ChStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChStore")
            .field("target", &self.target)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl ChStore {
    /// Checks the server answers (`SELECT 1` in the database). Errors name the
    /// host and database, never the password.
    pub async fn connect(config: &ChConfig) -> anyhow::Result<Self> {
        let store = Self::new(config)?;
        let body = store
            .query("SELECT 1")
            .await
            .with_context(|| format!("cannot reach ClickHouse at {}", store.target))?;
        anyhow::ensure!(
            body.trim() == "1",
            "ClickHouse at {} answered {:?} to SELECT 1",
            store.target,
            truncate(&body, 100)
        );
        Ok(store)
    }

    /// Sets the store up without talking to the server (each call is one HTTP
    /// request, so a server that is down at start is used once it is back).
    pub fn new(config: &ChConfig) -> anyhow::Result<Self> {
        let ep = url::parse_url(&config.url.expose())?;
        let target = format!(
            "{}://{}:{}/{}",
            ep.url.scheme(),
            ep.url.host_str().unwrap_or_default(),
            ep.url.port_or_known_default().unwrap_or(8123),
            ep.database
        );
        let http = crate::tls::http_client(
            "ClickHouse",
            config.ca.as_deref(),
            reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .pool_idle_timeout(POOL_IDLE_TIMEOUT),
        )?;
        Ok(ChStore {
            http,
            endpoint: ep.url,
            user: ep.user,
            password: ep.password.map(SecretString::from),
            db: quote_ident(&ep.database),
            database: ep.database,
            target,
            dirty: Default::default(),
            read_settings: std::sync::atomic::AtomicBool::new(true),
        })
    }

    /// `scheme://host:port/database`, for messages.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// `template` with `{db}` standing for the store's database.
    fn sql(&self, template: &str) -> String {
        in_database(template, &self.db)
    }
}
