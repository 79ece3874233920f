//! The ClickHouse store, over ClickHouse's HTTP interface (with `reqwest`).
//!
//! **Compatibility.** Every statement here is written for both ClickHouse 18.16
//! (Debian's package, which `tests/stores.rs` runs them against) and current
//! ClickHouse (Aiven), using only long-standing syntax. That rules out query
//! parameters (`{x:String}`), `DateTime64`, positional `ORDER BY 3` and newer
//! functions; values are put into the SQL text instead, strings only through
//! [`quote_str`], identifiers through [`quote_ident`], and UUIDs as their canonical
//! text. Try any new statement on both versions.
//!
//! **Schema.** `button_presses` is a `ReplacingMergeTree` ordered by
//! `(session_id, event_id)`: a redelivered event is a duplicate row until the next
//! merge collapses it. `presses_by_country` (an `AggregatingMergeTree` fed by a
//! materialized view on every insert) keeps, per country, the *set* of press
//! `event_id`s (`uniqExact` state), and every statistics query counts distinct
//! `event_id`s, so duplicates never show: the figures are exact before, during and
//! after merges. The price is memory: the per-country state holds every press id
//! (16 bytes each, more in the hash set), and reading the totals merges them all,
//! so a totals query costs time and memory in proportion to all presses ever:
//! fine at this app's volumes, not for billions of presses. The
//! per-session query uses the primary key; the per-country-since query skips
//! older monthly partitions and scans the rest.
//!
//! **Writes.** One HTTP request per batch (`INSERT .. FORMAT JSONEachRow`). A
//! failed insert may have stored part of the batch (ClickHouse inserts are not
//! transactions: parts per partition, then the materialized view); the caller
//! retries, and a retry only adds duplicates, which the queries ignore. For the
//! same reason inserts are sent with `insert_deduplicate=0`: with replicated tables
//! (Aiven), a retried identical block would otherwise be skipped *with* its
//! materialized view, losing the counts if the first attempt stored the rows but
//! failed in the view. Credentials travel in the `X-ClickHouse-User` and
//! `X-ClickHouse-Key` headers, never in a URL, a log line or `Debug` output. HTTPS
//! uses the system's trust store.

use std::fmt;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::postgres::percent_decode;
use super::{EventStore, WriteError};
use crate::config::ChConfig;
use crate::domain::PressEvent;
use crate::stats::{CountryPresses, GlobalStats, StatsError, StatsSource};

const STORE: &str = "clickhouse";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a request may take (a healthy batch of 10,000 events: ~0.1 s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Below the server's `keep_alive_timeout` (3 s by default), so a pooled connection
/// is not reused just as the server closes it.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(2);

/// Schema versions, applied in order. Each statement must be idempotent (`IF NOT
/// EXISTS`): ClickHouse has no transactions nor locks, so concurrent migrations
/// may both run a version; the version is recorded after all its statements
/// succeeded. `{db}` is replaced by the quoted database name.
const MIGRATIONS: &[&[&str]] = &[
    // v1
    &[
        "CREATE TABLE IF NOT EXISTS {db}.button_presses (
            event_id         UUID,
            session_id       UUID,
            timestamp        Int64,
            action           String,
            country_name     String,
            country_code     String,
            subdivision_name String,
            subdivision_code String,
            city_name        String,
            cohort           Nullable(Int32),
            latitude         Nullable(Float64),
            longitude        Nullable(Float64),
            event_date       Date DEFAULT toDate(toDateTime(intDiv(timestamp, 1000000)))
        )
        ENGINE = ReplacingMergeTree()
        PARTITION BY toYYYYMM(event_date)
        ORDER BY (session_id, event_id)",
        "CREATE TABLE IF NOT EXISTS {db}.presses_by_country (
            country_code String,
            country_name AggregateFunction(anyLast, String),
            presses      AggregateFunction(uniqExact, UUID)
        )
        ENGINE = AggregatingMergeTree()
        ORDER BY country_code",
        "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.presses_by_country_mv
        TO {db}.presses_by_country
        AS SELECT
            country_code,
            anyLastState(country_name) AS country_name,
            uniqExactState(event_id) AS presses
        FROM {db}.button_presses
        WHERE action = 'PressButton'
        GROUP BY country_code",
    ],
];

const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS {db}.button_schema_migrations (
        version    UInt32,
        applied_at DateTime DEFAULT now()
    )
    ENGINE = ReplacingMergeTree()
    ORDER BY version";

const COLUMNS: &str = "event_id, session_id, timestamp, action, country_name, country_code, \
     subdivision_name, subdivision_code, city_name, cohort, latitude, longitude";

/// A ClickHouse string literal: `'...'` with backslashes and quotes escaped.
/// The only way values enter SQL text in this module.
pub fn quote_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A ClickHouse identifier: `` `...` `` with backslashes and backquotes escaped.
pub fn quote_ident(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('`');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '`' => out.push_str("\\`"),
            c => out.push(c),
        }
    }
    out.push('`');
    out
}

/// Where to send requests, and as whom.
#[derive(Debug, PartialEq)]
struct Endpoint {
    /// Scheme, host, port, path and extra settings; no credentials, no database.
    url: Url,
    user: Option<String>,
    password: Option<String>,
    database: String,
}

fn parse_url(url: &str) -> anyhow::Result<Endpoint> {
    // Parse errors from `url` never echo the input, so no password leaks here.
    let mut url =
        Url::parse(url.trim()).map_err(|e| anyhow::anyhow!("invalid ClickHouse URL: {e}"))?;
    anyhow::ensure!(
        matches!(url.scheme(), "http" | "https"),
        "invalid ClickHouse URL: the scheme must be http or https, not {:?}",
        url.scheme()
    );
    anyhow::ensure!(url.has_host(), "invalid ClickHouse URL: no host");
    let user = Some(percent_decode(url.username())).filter(|u| !u.is_empty());
    let password = url.password().map(percent_decode);
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let mut database = "default".to_owned();
    let mut settings = Vec::new();
    for (k, v) in url.query_pairs() {
        match &*k {
            "database" if !v.is_empty() => database = v.into_owned(),
            "user" | "password" | "query" => anyhow::bail!(
                "invalid ClickHouse URL: put the credentials before the host \
                 (https://USER:PASSWORD@HOST:PORT), not in a `{k}` parameter"
            ),
            _ => settings.push((k.into_owned(), v.into_owned())),
        }
    }
    url.set_query(None);
    if !settings.is_empty() {
        url.query_pairs_mut().extend_pairs(settings);
    }
    Ok(Endpoint {
        url,
        user,
        password,
        database,
    })
}

/// A failed request.
#[derive(Debug)]
enum ChError {
    /// No answer: connection refused or lost, timeout, TLS.
    Transport(reqwest::Error),
    /// The server answered with an error.
    Server {
        status: u16,
        code: Option<u32>,
        message: String,
    },
    /// The server answered something we cannot read.
    Response(String),
}

/// ClickHouse error codes that retrying the same request cannot fix: bad data,
/// type mismatches, unknown tables or columns, syntax, permissions, credentials.
const PERMANENT_CODES: &[u32] = &[
    1,   // UNSUPPORTED_METHOD
    2,   // UNSUPPORTED_PARAMETER
    6,   // CANNOT_PARSE_TEXT
    8,   // THERE_IS_NO_COLUMN
    10,  // NOT_FOUND_COLUMN_IN_BLOCK
    16,  // NO_SUCH_COLUMN_IN_TABLE
    20,  // NUMBER_OF_COLUMNS_DOESNT_MATCH
    25,  // CANNOT_PARSE_ESCAPE_SEQUENCE
    26,  // CANNOT_PARSE_QUOTED_STRING
    27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
    36,  // BAD_ARGUMENTS
    38,  // CANNOT_PARSE_DATE
    41,  // CANNOT_PARSE_DATETIME
    43,  // ILLEGAL_TYPE_OF_ARGUMENT
    44,  // ILLEGAL_COLUMN
    46,  // UNKNOWN_FUNCTION
    47,  // UNKNOWN_IDENTIFIER
    48,  // NOT_IMPLEMENTED
    53,  // TYPE_MISMATCH
    60,  // UNKNOWN_TABLE
    62,  // SYNTAX_ERROR
    69,  // ARGUMENT_OUT_OF_BOUND
    70,  // CANNOT_CONVERT_TYPE
    72,  // CANNOT_PARSE_NUMBER
    73,  // UNKNOWN_FORMAT
    81,  // UNKNOWN_DATABASE
    115, // UNKNOWN_SETTING
    117, // INCORRECT_DATA
    130, // CANNOT_READ_ARRAY_FROM_TEXT
    131, // TOO_LARGE_STRING_SIZE
    164, // READONLY
    192, // UNKNOWN_USER
    193, // WRONG_PASSWORD
    194, // REQUIRED_PASSWORD
    195, // IP_ADDRESS_NOT_ALLOWED
    376, // CANNOT_PARSE_UUID
    497, // ACCESS_DENIED
    516, // AUTHENTICATION_FAILED
];

/// Whether a server error may go away by itself: by ClickHouse code when there
/// is one (too many parts, memory, timeouts, read-only replicas, ... can), else by
/// HTTP status (5xx, 408 and 429 can; other 4xx cannot).
fn server_error_retryable(status: u16, code: Option<u32>) -> bool {
    match code {
        Some(code) => !PERMANENT_CODES.contains(&code),
        None => status >= 500 || status == 408 || status == 429,
    }
}

impl ChError {
    fn retryable(&self) -> bool {
        match self {
            ChError::Transport(e) => !e.is_builder(),
            ChError::Server { status, code, .. } => server_error_retryable(*status, *code),
            ChError::Response(_) => true,
        }
    }
}

impl fmt::Display for ChError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChError::Transport(e) => {
                write!(f, "{e}")?;
                // reqwest's message is generic; the cause says what happened.
                let mut source = std::error::Error::source(e);
                while let Some(s) = source {
                    write!(f, ": {s}")?;
                    source = s.source();
                }
                Ok(())
            }
            ChError::Server {
                status, message, ..
            } => write!(f, "HTTP {status}: {message}"),
            ChError::Response(m) => write!(f, "unexpected answer: {m}"),
        }
    }
}

/// The message already carries the whole chain (see `Display`).
impl std::error::Error for ChError {}

/// The ClickHouse code in an error body: `Code: 60, e.displayText() = ...` (18.x)
/// or `Code: 60. DB::Exception: ...` (current versions).
fn error_code(body: &str) -> Option<u32> {
    let rest = &body[body.find("Code: ")? + 6..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Rows of a `FORMAT JSONEachRow` answer.
fn parse_rows<T: for<'de> Deserialize<'de>>(body: &str) -> Result<Vec<T>, ChError> {
    body.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .map_err(|e| ChError::Response(format!("{e} in {:?}", truncate(l, 200))))
        })
        .collect()
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

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

#[derive(Deserialize)]
struct VersionRow {
    version: u32,
}

/// One event as a `JSONEachRow` line (UUIDs as their hyphenated text).
#[derive(Serialize)]
struct Row<'a> {
    event_id: Uuid,
    session_id: Uuid,
    timestamp: i64,
    action: &'a str,
    country_name: &'a str,
    country_code: &'a str,
    subdivision_name: &'a str,
    subdivision_code: &'a str,
    city_name: &'a str,
    cohort: Option<i32>,
    latitude: Option<f64>,
    longitude: Option<f64>,
}

impl<'a> From<&'a PressEvent> for Row<'a> {
    fn from(e: &'a PressEvent) -> Self {
        let l = &e.location;
        Row {
            event_id: e.event_id,
            session_id: e.session_id,
            timestamp: e.timestamp,
            action: e.action.as_str(),
            country_name: &l.country_name,
            country_code: &l.country_code,
            subdivision_name: &l.subdivision_name,
            subdivision_code: &l.subdivision_code,
            city_name: &l.city_name,
            cohort: e.cohort,
            latitude: l.latitude,
            longitude: l.longitude,
        }
    }
}

/// The batch as newline-delimited JSON.
fn ndjson(events: &[PressEvent]) -> Vec<u8> {
    let mut body = Vec::with_capacity(events.len() * 300);
    for e in events {
        // Writing plain data into a Vec cannot fail.
        serde_json::to_writer(&mut body, &Row::from(e)).expect("serializing to memory");
        body.push(b'\n');
    }
    body
}

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
            .map_err(|e| anyhow::anyhow!("cannot reach ClickHouse at {}: {e}", store.target))?;
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
        let ep = parse_url(&config.url.expose())?;
        let target = format!(
            "{}://{}:{}/{}",
            ep.url.scheme(),
            ep.url.host_str().unwrap_or_default(),
            ep.url.port_or_known_default().unwrap_or(8123),
            ep.database
        );
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .user_agent(concat!("button/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot set up the HTTP client for ClickHouse")?;
        Ok(ChStore {
            http,
            endpoint: ep.url,
            user: ep.user,
            password: ep.password.map(SecretString::from),
            db: quote_ident(&ep.database),
            database: ep.database,
            target,
        })
    }

    /// `scheme://host:port/database`, for messages.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The database the tables are in.
    pub fn database(&self) -> &str {
        &self.database
    }

    fn request(&self, params: &[(&str, &str)]) -> reqwest::RequestBuilder {
        let mut url = self.endpoint.clone();
        url.query_pairs_mut()
            .append_pair("database", &self.database)
            .extend_pairs(params);
        let mut req = self.http.post(url);
        if let Some(user) = &self.user {
            req = req.header("X-ClickHouse-User", user);
        }
        if let Some(password) = &self.password {
            req = req.header("X-ClickHouse-Key", password.expose_secret());
        }
        req
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<String, ChError> {
        let resp = req
            .send()
            .await
            .map_err(|e| ChError::Transport(e.without_url()))?;
        let status = resp.status();
        let header_code = resp
            .headers()
            .get("X-ClickHouse-Exception-Code")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let body = resp
            .text()
            .await
            .map_err(|e| ChError::Transport(e.without_url()))?;
        if status.is_success() {
            return Ok(body);
        }
        Err(ChError::Server {
            status: status.as_u16(),
            code: header_code.or_else(|| error_code(&body)),
            message: truncate(body.trim(), 1000).to_owned(),
        })
    }

    /// Runs `sql` (the whole answer is computed before the status is sent, so a
    /// failure mid-query is an error status, not a truncated 200).
    async fn query(&self, sql: &str) -> Result<String, ChError> {
        self.send(
            self.request(&[("wait_end_of_query", "1")])
                .body(sql.to_owned()),
        )
        .await
    }

    async fn query_rows<T: for<'de> Deserialize<'de>>(&self, sql: &str) -> Result<Vec<T>, ChError> {
        parse_rows(&self.query(sql).await?)
    }

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

    fn sql(&self, template: &str) -> String {
        template.replace("{db}", &self.db)
    }

    /// Creates or upgrades the schema to the latest version. Idempotent, and safe
    /// when several processes migrate at once (see [`MIGRATIONS`]).
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let fail = |e: ChError| {
            anyhow::anyhow!(
                "cannot migrate the ClickHouse schema at {}: {e}",
                self.target
            )
        };
        self.ddl(&self.sql(MIGRATIONS_TABLE)).await.map_err(fail)?;
        let applied: Vec<VersionRow> = self
            .query_rows(&self.sql(
                "SELECT DISTINCT version FROM {db}.button_schema_migrations FORMAT JSONEachRow",
            ))
            .await
            .map_err(fail)?;
        let applied: Vec<u32> = applied.into_iter().map(|r| r.version).collect();
        let latest = MIGRATIONS.len() as u32;
        if let Some(newer) = applied.iter().copied().filter(|v| *v > latest).max() {
            tracing::warn!(
                target = %self.target,
                schema_version = newer,
                known = latest,
                "the ClickHouse schema is newer than this program knows"
            );
        }
        for (i, statements) in MIGRATIONS.iter().enumerate() {
            let version = i as u32 + 1;
            if applied.contains(&version) {
                continue;
            }
            for statement in *statements {
                self.ddl(&self.sql(statement)).await.map_err(fail)?;
            }
            self.query(&self.sql(&format!(
                "INSERT INTO {{db}}.button_schema_migrations (version) VALUES ({version})"
            )))
            .await
            .map_err(fail)?;
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

#[async_trait]
impl EventStore for ChStore {
    fn name(&self) -> &'static str {
        STORE
    }

    async fn write(&self, events: &[PressEvent]) -> Result<(), WriteError> {
        if events.is_empty() {
            return Ok(());
        }
        let insert = format!(
            "INSERT INTO {}.button_presses ({COLUMNS}) FORMAT JSONEachRow",
            self.db
        );
        let req = self
            .request(&[("query", &insert), ("insert_deduplicate", "0")])
            .header("Content-Type", "application/x-ndjson")
            .body(ndjson(events));
        self.send(req).await.map(drop).map_err(|e| WriteError {
            store: STORE,
            message: format!(
                "cannot write {} events to {}: {e}",
                events.len(),
                self.target
            ),
            retryable: e.retryable(),
        })
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

    #[test]
    fn strings_and_identifiers_are_escaped() {
        assert_eq!(quote_str("NL"), "'NL'");
        assert_eq!(quote_str("Côte d'Ivoire"), "'Côte d\\'Ivoire'");
        assert_eq!(quote_str("a\\'b"), "'a\\\\\\'b'");
        assert_eq!(quote_str("x\\"), "'x\\\\'");
        assert_eq!(quote_str("' OR 1=1 --"), "'\\' OR 1=1 --'");
        assert_eq!(quote_ident("button"), "`button`");
        assert_eq!(quote_ident("we`ird\\"), "`we\\`ird\\\\`");
    }

    #[test]
    fn urls_give_endpoint_credentials_and_database() {
        let ep = parse_url("https://avnadmin:p%40ss%3Aw0rd@ch.example.com:12345/?database=button")
            .unwrap();
        assert_eq!(ep.user.as_deref(), Some("avnadmin"));
        assert_eq!(ep.password.as_deref(), Some("p@ss:w0rd"));
        assert_eq!(ep.database, "button");
        assert_eq!(ep.url.as_str(), "https://ch.example.com:12345/");

        let ep = parse_url("http://127.0.0.1:8123").unwrap();
        assert_eq!(ep.user, None);
        assert_eq!(ep.password, None);
        assert_eq!(ep.database, "default");
        assert_eq!(ep.url.as_str(), "http://127.0.0.1:8123/");

        let ep = parse_url("http://h:8123/?database=d&async_insert=1").unwrap();
        assert_eq!(ep.database, "d");
        assert_eq!(ep.url.as_str(), "http://h:8123/?async_insert=1");

        assert!(parse_url("clickhouse://h:9000").is_err());
        assert!(parse_url("h:8123").is_err());
        let err = parse_url("http://h/?password=hunter2").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn error_codes_are_read_from_old_and_new_bodies() {
        assert_eq!(
            error_code("Code: 60, e.displayText() = DB::Exception: Table t1.nope doesn't exist."),
            Some(60)
        );
        assert_eq!(
            error_code("Code: 241. DB::Exception: Memory limit exceeded"),
            Some(241)
        );
        assert_eq!(error_code("Bad Gateway"), None);
    }

    #[test]
    fn errors_are_classified() {
        // Bad data, schema, syntax, credentials: retrying cannot help.
        for code in [26, 27, 38, 53, 60, 62, 117, 130, 376, 193, 516, 81] {
            assert!(!server_error_retryable(500, Some(code)), "code {code}");
        }
        // Overload, memory, timeouts, read-only replicas, network: retry.
        for code in [252, 202, 241, 159, 209, 210, 242, 319, 999] {
            assert!(server_error_retryable(500, Some(code)), "code {code}");
        }
        // No code (a proxy answered): by status.
        assert!(server_error_retryable(502, None));
        assert!(server_error_retryable(503, None));
        assert!(server_error_retryable(429, None));
        assert!(!server_error_retryable(400, None));
        assert!(!server_error_retryable(403, None));
    }

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

    #[test]
    fn rows_are_json_lines_with_uuid_text() {
        let mut l = crate::domain::Location::unknown();
        l.country_name = "Côte d'Ivoire \"x\"".into();
        let e = PressEvent::new(
            crate::domain::Action::PressButton,
            Uuid::nil(),
            l,
            None,
            std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1),
        );
        let body = String::from_utf8(ndjson(&[e.clone(), e.clone()])).unwrap();
        assert_eq!(body.lines().count(), 2);
        let v: serde_json::Value = serde_json::from_str(body.lines().next().unwrap()).unwrap();
        assert_eq!(v["session_id"], "00000000-0000-0000-0000-000000000000");
        assert_eq!(v["event_id"], e.event_id.to_string());
        assert_eq!(v["timestamp"], 1_000_000);
        assert_eq!(v["action"], "PressButton");
        assert_eq!(v["country_name"], "Côte d'Ivoire \"x\"");
        assert!(v["cohort"].is_null());
    }
}
