//! The PostgreSQL store: events in `button_presses` (named after the Kafka topic, so
//! the original app's JDBC sink connector could write the same table), and a
//! `presses_by_country` table kept up to date by the same statement that inserts.
//!
//! - **Idempotent**: a batch is one statement, `INSERT .. ON CONFLICT (event_id) DO
//!   NOTHING` inside a CTE whose `RETURNING` rows (only the rows really inserted)
//!   feed the per-country upsert. A redelivered batch inserts nothing and counts
//!   nothing; a batch is all or nothing.
//! - **Self-healing**: one connection for writes and one for statistics, each opened
//!   on first use and opened again on the next call after it broke (server restart,
//!   network cut, timeout). A failed write says whether retrying can help
//!   ([`WriteError::retryable`]); the caller retries, the store reconnects.
//! - **TLS** follows libpq's `sslmode` (`disable`, `prefer`, `require`, `verify-ca`,
//!   `verify-full`) and `sslrootcert=PATH` (a PEM file of CA certificates, as Aiven
//!   gives). Like libpq, `prefer` and `require` encrypt without checking the
//!   certificate, unless `sslrootcert` is given, which makes `require` verify the
//!   chain as `verify-ca` does.
//! - **Secrets**: the password is never logged nor shown by `Debug`; errors name the
//!   host, port and database only.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use postgres_native_tls::MakeTlsConnector;
use tokio::sync::{Mutex, OnceCell};
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, Statement};
use uuid::Uuid;

use super::{EventStore, WriteError};
use crate::config::PgConfig;
use crate::domain::PressEvent;
use crate::stats::{CountryPresses, GlobalStats, StatsError, StatsSource};

const STORE: &str = "postgres";

/// How long one statement may take before the connection is given up (and the
/// write reported as retryable). A healthy batch of 10,000 events takes ~0.1 s.
const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Connect timeout when the URL does not set `connect_timeout`.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Key of the advisory lock that serializes concurrent migrations ("button" in ASCII).
const MIGRATION_LOCK: i64 = 0x0000_6275_7474_6f6e;

/// Schema versions, applied in order, each in the migration transaction.
/// Never edit a released version: add a new one.
const MIGRATIONS: &[&str] = &[
    // v1
    r#"
    CREATE TABLE button_presses (
        event_id         uuid PRIMARY KEY,
        session_id       uuid NOT NULL,
        "timestamp"      bigint NOT NULL,
        action           text NOT NULL,
        country_name     text NOT NULL,
        country_code     text NOT NULL,
        subdivision_name text NOT NULL,
        subdivision_code text NOT NULL,
        city_name        text NOT NULL,
        cohort           integer NULL,
        latitude         double precision NULL,
        longitude        double precision NULL
    );
    COMMENT ON COLUMN button_presses."timestamp" IS 'microseconds since the Unix epoch, UTC';
    CREATE INDEX button_presses_session_presses
        ON button_presses (session_id) WHERE action = 'PressButton';
    CREATE INDEX button_presses_country_time_presses
        ON button_presses (country_code, "timestamp") WHERE action = 'PressButton';
    CREATE TABLE presses_by_country (
        country_code text PRIMARY KEY,
        country_name text NOT NULL,
        presses      bigint NOT NULL
    );
    "#,
];

/// One statement per batch: insert what is new, count the new presses per country.
/// The per-country rows are upserted in code order, so concurrent writers lock
/// them in the same order and do not deadlock each other.
const INSERT_SQL: &str = r#"
WITH ins AS (
    INSERT INTO button_presses (event_id, session_id, "timestamp", action, country_name,
        country_code, subdivision_name, subdivision_code, city_name, cohort, latitude, longitude)
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::text[], $5::text[],
        $6::text[], $7::text[], $8::text[], $9::text[], $10::integer[],
        $11::double precision[], $12::double precision[])
    ON CONFLICT (event_id) DO NOTHING
    RETURNING country_code, country_name, action
)
INSERT INTO presses_by_country (country_code, country_name, presses)
SELECT country_code, max(country_name), count(*) FROM ins
WHERE action = 'PressButton'
GROUP BY country_code
ORDER BY country_code
ON CONFLICT (country_code) DO UPDATE
    SET presses = presses_by_country.presses + excluded.presses,
        country_name = excluded.country_name
"#;

const GLOBAL_SQL: &str = "SELECT country_code, country_name, presses FROM presses_by_country \
     ORDER BY presses DESC, country_code";

const SESSION_SQL: &str = "SELECT count(*) FROM button_presses \
     WHERE session_id = $1 AND action = 'PressButton'";

const COUNTRY_SINCE_SQL: &str = "SELECT count(*) FROM button_presses \
     WHERE country_code = $1 AND \"timestamp\" >= $2 AND action = 'PressButton'";

/// libpq's `sslmode`, with the verification levels tokio-postgres leaves to the
/// TLS connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TlsMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// What [`parse_url`] makes of a connection string.
#[derive(Debug)]
struct ParsedUrl {
    /// The connection string for tokio-postgres (libpq-only parameters removed,
    /// `sslmode` mapped to a value it knows).
    conn_str: String,
    mode: TlsMode,
    root_cert: Option<String>,
}

/// libpq parameters tokio-postgres rejects but that change nothing we need.
const IGNORED_PARAMS: &[&str] = &["sslcompression", "sslsni", "gssencmode", "krbsrvname"];

/// Splits our TLS settings off a `postgres://` URL. Other forms (`key=value ...`)
/// are given to tokio-postgres as they are (with its `sslmode` values only).
fn parse_url(url: &str) -> anyhow::Result<ParsedUrl> {
    let url = url.trim();
    let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
    let (base, query) = match url.split_once('?') {
        Some((b, q)) if is_url => (b, q),
        _ => {
            return Ok(ParsedUrl {
                conn_str: url.to_owned(),
                mode: TlsMode::Prefer,
                root_cert: None,
            });
        }
    };
    let mut kept = Vec::new();
    let mut mode = TlsMode::Prefer;
    let mut root_cert = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(key);
        match key.as_str() {
            "sslmode" => {
                mode = match percent_decode(value).as_str() {
                    "disable" => TlsMode::Disable,
                    "allow" | "prefer" => TlsMode::Prefer,
                    "require" => TlsMode::Require,
                    "verify-ca" => TlsMode::VerifyCa,
                    "verify-full" => TlsMode::VerifyFull,
                    other => anyhow::bail!(
                        "invalid sslmode {other:?} in the PostgreSQL URL \
                         (disable, prefer, require, verify-ca or verify-full)"
                    ),
                };
            }
            "sslrootcert" => root_cert = Some(percent_decode(value)),
            "sslcert" | "sslkey" | "sslpassword" | "sslcrl" | "sslcrldir" => anyhow::bail!(
                "{key} in the PostgreSQL URL is not supported (client certificates and \
                 revocation lists); use password authentication over TLS"
            ),
            k if IGNORED_PARAMS.contains(&k) => {}
            _ => kept.push(pair),
        }
    }
    let pg_mode = match mode {
        TlsMode::Disable => "disable",
        TlsMode::Prefer => "prefer",
        TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => "require",
    };
    kept.push(match pg_mode {
        "disable" => "sslmode=disable",
        "prefer" => "sslmode=prefer",
        _ => "sslmode=require",
    });
    Ok(ParsedUrl {
        conn_str: format!("{base}?{}", kept.join("&")),
        mode,
        root_cert,
    })
}

/// Decodes `%XX` escapes (and nothing else: `+` stays, as in URL paths and libpq).
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The TLS connector for `mode`, trusting the CA certificates in `root_cert`.
fn tls_connector(mode: TlsMode, root_cert: Option<&str>) -> anyhow::Result<MakeTlsConnector> {
    let mut builder = native_tls::TlsConnector::builder();
    // libpq: `sslrootcert=system` means the system's trust store, and verify-full.
    let (mode, root_cert) = match root_cert {
        Some("system") => (TlsMode::VerifyFull, None),
        // libpq: with a root certificate, `require` verifies the chain like verify-ca.
        Some(path) if mode == TlsMode::Require => (TlsMode::VerifyCa, Some(path)),
        other => (mode, other),
    };
    match mode {
        TlsMode::Disable | TlsMode::Prefer | TlsMode::Require => {
            builder
                .danger_accept_invalid_certs(true)
                .danger_accept_invalid_hostnames(true);
        }
        TlsMode::VerifyCa => {
            builder.danger_accept_invalid_hostnames(true);
        }
        TlsMode::VerifyFull => {}
    }
    if let Some(path) = root_cert {
        let pem = std::fs::read(path)
            .with_context(|| format!("cannot read the PostgreSQL CA certificate {path}"))?;
        let certs = pem_certificates(&pem);
        anyhow::ensure!(
            !certs.is_empty(),
            "no PEM certificate in the PostgreSQL CA file {path}"
        );
        for cert in certs {
            let cert = native_tls::Certificate::from_pem(&cert)
                .with_context(|| format!("invalid certificate in {path}"))?;
            builder.add_root_certificate(cert);
        }
    }
    let connector = builder
        .build()
        .context("cannot set up TLS for PostgreSQL")?;
    Ok(MakeTlsConnector::new(connector))
}

/// Each `BEGIN CERTIFICATE` block of a PEM bundle, on its own.
fn pem_certificates(pem: &[u8]) -> Vec<Vec<u8>> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let text = String::from_utf8_lossy(pem);
    let mut out = Vec::new();
    let mut rest = text.as_ref();
    while let Some(start) = rest.find(BEGIN) {
        let Some(len) = rest[start..].find(END) else {
            break;
        };
        let end = start + len + END.len();
        out.push(rest.as_bytes()[start..end].to_vec());
        rest = &rest[end..];
    }
    out
}

/// `host:port/dbname`, for messages (never the user or password).
fn describe(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let port = config
                .get_ports()
                .get(i)
                .or_else(|| config.get_ports().first())
                .copied()
                .unwrap_or(5432);
            match h {
                Host::Tcp(name) => format!("{name}:{port}"),
                #[cfg(unix)]
                Host::Unix(path) => format!("{}:{port}", path.display()),
            }
        })
        .collect();
    let hosts = if hosts.is_empty() {
        "localhost:5432".to_owned()
    } else {
        hosts.join(",")
    };
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("{hosts}/{db}")
}

/// Whether a failed statement may succeed if tried again, from its SQLSTATE.
/// Data (22), integrity (23), syntax and schema (42), unsupported feature (0A),
/// cardinality (21), check option (44), authorization (28) and unknown database
/// (3D) errors cannot; everything else (connection 08, resources 53, operator
/// intervention 57, serialization 40001, deadlock 40P01, system 58, read-only
/// after a failover 25006, ...) can.
fn sqlstate_retryable(code: &str) -> bool {
    !matches!(
        code.get(..2),
        Some("0A" | "21" | "22" | "23" | "28" | "3D" | "42" | "44")
    )
}

/// Whether a tokio-postgres error is worth retrying: database errors by SQLSTATE;
/// I/O, closed connections, TLS and timeouts yes; authentication and
/// configuration no.
fn error_retryable(err: &tokio_postgres::Error) -> bool {
    if let Some(db) = err.as_db_error() {
        return sqlstate_retryable(db.code().code());
    }
    let msg = err.to_string();
    !(msg.starts_with("authentication error")
        || msg.starts_with("invalid connection string")
        || msg.starts_with("invalid configuration")
        || msg.starts_with("error serializing parameter"))
}

/// Whether the connection should be dropped after `err`: everything except
/// database errors (after which the connection is still usable).
fn breaks_connection(err: &tokio_postgres::Error) -> bool {
    err.as_db_error().is_none() || err.is_closed()
}

/// An open connection and the statements prepared on it.
struct Conn {
    client: Client,
    statements: OnceCell<Statements>,
}

struct Statements {
    insert: Statement,
    global: Statement,
    session: Statement,
    country_since: Statement,
}

impl Conn {
    /// Prepared on first use, not on connect: `connect` must work before `migrate`.
    async fn statements(&self) -> Result<&Statements, tokio_postgres::Error> {
        self.statements
            .get_or_try_init(|| async {
                Ok(Statements {
                    insert: self.client.prepare(INSERT_SQL).await?,
                    global: self.client.prepare(GLOBAL_SQL).await?,
                    session: self.client.prepare(SESSION_SQL).await?,
                    country_since: self.client.prepare(COUNTRY_SINCE_SQL).await?,
                })
            })
            .await
    }
}

/// Why a statement failed, and whether the connection is still good.
#[derive(Debug)]
enum QueryError {
    Pg(tokio_postgres::Error),
    Timeout(Duration),
}

impl QueryError {
    fn retryable(&self) -> bool {
        match self {
            QueryError::Pg(e) => error_retryable(e),
            QueryError::Timeout(_) => true,
        }
    }

    fn breaks_connection(&self) -> bool {
        match self {
            QueryError::Pg(e) => breaks_connection(e),
            QueryError::Timeout(_) => true,
        }
    }
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryError::Pg(e) => match e.as_db_error() {
                // "db error: ERROR: ..." says less than the SQLSTATE and message.
                Some(db) => write!(f, "{} ({})", db.message(), db.code().code()),
                None => match std::error::Error::source(e) {
                    Some(cause) => write!(f, "{e}: {cause}"),
                    None => write!(f, "{e}"),
                },
            },
            QueryError::Timeout(d) => write!(f, "no answer within {}s", d.as_secs_f64()),
        }
    }
}

/// The message already carries the whole chain (see `Display`).
impl std::error::Error for QueryError {}

/// One connection, opened on demand and replaced when it breaks.
#[derive(Default)]
struct Slot(Mutex<Option<Arc<Conn>>>);

/// The PostgreSQL event store.
pub struct PgStore {
    config: Config,
    tls: MakeTlsConnector,
    target: String,
    timeout: Duration,
    writer: Slot,
    reader: Slot,
}

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
        store.get(&store.writer).await.map_err(|e| {
            anyhow::anyhow!("cannot connect to PostgreSQL at {}: {e}", store.target)
        })?;
        Ok(store)
    }

    /// Sets the store up without connecting: connections are opened on first use
    /// and again after they break, so a database that is down at start is used
    /// once it is back.
    pub fn new(config: &PgConfig) -> anyhow::Result<Self> {
        let parsed = parse_url(&config.url.expose())?;
        let mut config: Config = parsed
            .conn_str
            .parse()
            .map_err(|e| anyhow::anyhow!("invalid PostgreSQL URL: {}", QueryError::Pg(e)))?;
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
        let tls = tls_connector(parsed.mode, parsed.root_cert.as_deref())?;
        Ok(PgStore {
            target: describe(&config),
            config,
            tls,
            timeout: DEFAULT_QUERY_TIMEOUT,
            writer: Slot::default(),
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

    async fn open(&self) -> Result<Client, QueryError> {
        let (client, connection) = self
            .config
            .connect(self.tls.clone())
            .await
            .map_err(QueryError::Pg)?;
        let target = self.target.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(target = %target, error = %QueryError::Pg(e), "PostgreSQL connection lost");
            }
        });
        Ok(client)
    }

    /// The slot's connection, opened if it has none or it closed.
    async fn get(&self, slot: &Slot) -> Result<Arc<Conn>, QueryError> {
        let mut guard = slot.0.lock().await;
        if let Some(conn) = guard.as_ref() {
            if !conn.client.is_closed() {
                return Ok(conn.clone());
            }
        }
        *guard = None;
        let client = tokio::time::timeout(self.timeout, self.open())
            .await
            .map_err(|_| QueryError::Timeout(self.timeout))??;
        let conn = Arc::new(Conn {
            client,
            statements: OnceCell::new(),
        });
        *guard = Some(conn.clone());
        Ok(conn)
    }

    /// Forgets `conn` (if still current) so the next call opens a new connection.
    async fn drop_conn(&self, slot: &Slot, conn: &Arc<Conn>) {
        let mut guard = slot.0.lock().await;
        if guard.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
            *guard = None;
        }
    }

    /// Awaits `fut` (a statement on `conn`, from `slot`) with the timeout; drops
    /// the connection when the failure says it is broken.
    async fn finish<T>(
        &self,
        slot: &Slot,
        conn: &Arc<Conn>,
        fut: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, QueryError> {
        let result = match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(QueryError::Pg(e)),
            Err(_) => Err(QueryError::Timeout(self.timeout)),
        };
        if let Err(e) = &result {
            if e.breaks_connection() {
                self.drop_conn(slot, conn).await;
            }
        }
        result
    }

    /// Creates or upgrades the schema to the latest version. Idempotent, and safe
    /// when several processes migrate at once: the whole upgrade runs in one
    /// transaction holding an advisory lock, so one applies it and the others then
    /// find nothing to do.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let fail = |e: tokio_postgres::Error| {
            anyhow::anyhow!(
                "cannot migrate the PostgreSQL schema at {}: {}",
                self.target,
                QueryError::Pg(e)
            )
        };
        let mut client = self
            .open()
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to PostgreSQL at {}: {e}", self.target))?;
        let tx = client.transaction().await.map_err(fail)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(fail)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS button_schema_migrations (
                 version    integer PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(fail)?;
        let applied: Vec<i32> = tx
            .query("SELECT version FROM button_schema_migrations", &[])
            .await
            .map_err(fail)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let latest = MIGRATIONS.len() as i32;
        if let Some(newer) = applied.iter().copied().filter(|v| *v > latest).max() {
            tracing::warn!(
                target = %self.target,
                schema_version = newer,
                known = latest,
                "the PostgreSQL schema is newer than this program knows"
            );
        }
        for (i, sql) in MIGRATIONS.iter().enumerate() {
            let version = i as i32 + 1;
            if applied.contains(&version) {
                continue;
            }
            tx.batch_execute(sql).await.map_err(fail)?;
            tx.execute(
                "INSERT INTO button_schema_migrations (version) VALUES ($1)",
                &[&version],
            )
            .await
            .map_err(fail)?;
            tracing::info!(target = %self.target, version, "PostgreSQL schema migrated");
        }
        tx.commit().await.map_err(fail)?;
        Ok(())
    }

    /// Runs one statistics query on the read connection.
    async fn stats_query<T, Q, Fut>(&self, query: Q) -> Result<T, StatsError>
    where
        Q: FnOnce(Arc<Conn>) -> Fut,
        Fut: std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let fail = |e: QueryError| StatsError::read(format!("PostgreSQL at {}", self.target), e);
        let conn = self.get(&self.reader).await.map_err(fail)?;
        self.finish(&self.reader, &conn, query(conn.clone()))
            .await
            .map_err(fail)
    }
}

/// The batch as one array per column, for `unnest`.
struct Columns<'a> {
    event_id: Vec<Uuid>,
    session_id: Vec<Uuid>,
    timestamp: Vec<i64>,
    action: Vec<&'a str>,
    country_name: Vec<&'a str>,
    country_code: Vec<&'a str>,
    subdivision_name: Vec<&'a str>,
    subdivision_code: Vec<&'a str>,
    city_name: Vec<&'a str>,
    cohort: Vec<Option<i32>>,
    latitude: Vec<Option<f64>>,
    longitude: Vec<Option<f64>>,
}

impl<'a> Columns<'a> {
    /// The columns of `events`, in `event_id` order: concurrent writers of
    /// overlapping batches then take their row locks in the same order and cannot
    /// deadlock each other.
    fn new(events: &'a [PressEvent]) -> Self {
        let mut sorted: Vec<&PressEvent> = events.iter().collect();
        sorted.sort_unstable_by_key(|e| e.event_id);
        let events = sorted;
        Columns {
            event_id: events.iter().map(|e| e.event_id).collect(),
            session_id: events.iter().map(|e| e.session_id).collect(),
            timestamp: events.iter().map(|e| e.timestamp).collect(),
            action: events.iter().map(|e| e.action.as_str()).collect(),
            country_name: events.iter().map(|e| &*e.location.country_name).collect(),
            country_code: events.iter().map(|e| &*e.location.country_code).collect(),
            subdivision_name: events
                .iter()
                .map(|e| &*e.location.subdivision_name)
                .collect(),
            subdivision_code: events
                .iter()
                .map(|e| &*e.location.subdivision_code)
                .collect(),
            city_name: events.iter().map(|e| &*e.location.city_name).collect(),
            cohort: events.iter().map(|e| e.cohort).collect(),
            latitude: events.iter().map(|e| e.location.latitude).collect(),
            longitude: events.iter().map(|e| e.location.longitude).collect(),
        }
    }
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
        let cols = Columns::new(events);
        let fail = |e: QueryError| WriteError {
            store: STORE,
            message: format!(
                "cannot write {} events to {}: {e}",
                events.len(),
                self.target
            ),
            retryable: e.retryable(),
        };
        let conn = self.get(&self.writer).await.map_err(fail)?;
        let insert = async {
            let st = conn.statements().await?;
            conn.client
                .execute(
                    &st.insert,
                    &[
                        &cols.event_id,
                        &cols.session_id,
                        &cols.timestamp,
                        &cols.action,
                        &cols.country_name,
                        &cols.country_code,
                        &cols.subdivision_name,
                        &cols.subdivision_code,
                        &cols.city_name,
                        &cols.cohort,
                        &cols.latitude,
                        &cols.longitude,
                    ],
                )
                .await
        };
        self.finish(&self.writer, &conn, insert)
            .await
            .map(drop)
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_postgres::config::SslMode;

    #[test]
    fn libpq_sslmodes_map_to_tokio_postgres_and_tls_checks() {
        let p = parse_url("postgres://u:p@h:1/db?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem")
            .unwrap();
        assert_eq!(p.mode, TlsMode::VerifyFull);
        assert_eq!(p.root_cert.as_deref(), Some("/tmp/ca.pem"));
        assert_eq!(p.conn_str, "postgres://u:p@h:1/db?sslmode=require");
        let c: Config = p.conn_str.parse().unwrap();
        assert_eq!(c.get_ssl_mode(), SslMode::Require);

        let p = parse_url("postgresql://h/db?application_name=x&sslmode=disable").unwrap();
        assert_eq!(p.mode, TlsMode::Disable);
        assert_eq!(
            p.conn_str,
            "postgresql://h/db?application_name=x&sslmode=disable"
        );

        let p = parse_url("postgres://h/db").unwrap();
        assert_eq!(p.mode, TlsMode::Prefer);
        assert_eq!(p.conn_str, "postgres://h/db");

        let p = parse_url("postgres://h/db?sslmode=verify-ca&sslsni=1").unwrap();
        assert_eq!(p.mode, TlsMode::VerifyCa);
        assert_eq!(p.conn_str, "postgres://h/db?sslmode=require");

        assert!(parse_url("postgres://h/db?sslmode=bogus").is_err());
        let err = parse_url("postgres://h/db?sslcert=x").unwrap_err();
        assert!(err.to_string().contains("sslcert"), "{err}");
        // key=value strings pass through untouched.
        let p = parse_url("host=h dbname=db").unwrap();
        assert_eq!(p.conn_str, "host=h dbname=db");
    }

    #[test]
    fn tls_connectors_build_for_every_mode() {
        for mode in [
            TlsMode::Disable,
            TlsMode::Prefer,
            TlsMode::Require,
            TlsMode::VerifyCa,
            TlsMode::VerifyFull,
        ] {
            tls_connector(mode, None).unwrap();
        }
        let err = tls_connector(TlsMode::VerifyFull, Some("/nonexistent/ca.pem"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("ca.pem");
        std::fs::write(&empty, "not a certificate").unwrap();
        let err = tls_connector(TlsMode::VerifyFull, empty.to_str())
            .err()
            .unwrap();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
    }

    #[test]
    fn pem_bundles_split_into_certificates() {
        let pem = b"junk\n-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n\
                    -----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n";
        let certs = pem_certificates(pem);
        assert_eq!(certs.len(), 2);
        assert!(String::from_utf8_lossy(&certs[1]).contains("BBB"));
    }

    #[test]
    fn percent_escapes_decode() {
        assert_eq!(percent_decode("a%2Fb%20c"), "a/b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("p%40ss+word"), "p@ss+word");
    }

    #[test]
    fn descriptions_name_host_port_and_database_only() {
        let c: Config = "postgres://avnadmin:hunter2@pg.example.com:12345/defaultdb"
            .parse()
            .unwrap();
        assert_eq!(describe(&c), "pg.example.com:12345/defaultdb");
    }

    #[test]
    fn sqlstates_are_classified_like_vector_does() {
        for code in [
            "08006", "08001", "57P01", "57P03", "57014", "53300", "53100", "40001", "40P01",
            "55P03", "58030", "25006", "XX000",
        ] {
            assert!(sqlstate_retryable(code), "{code} should be retryable");
        }
        for code in [
            "22001", "22P02", "22021", "23502", "23505", "42P01", "42703", "42501", "0A000",
            "28P01", "3D000",
        ] {
            assert!(!sqlstate_retryable(code), "{code} should not be retryable");
        }
    }
}
