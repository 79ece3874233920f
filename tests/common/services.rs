//! Where the tests find the services they talk to, and what happens when one is
//! missing. Every test goes through here; none reads these variables itself.
//!
//! | service | found through | `scripts/test` sets it to |
//! |---|---|---|
//! | Kafka-protocol broker | `BUTTON_TEST_KAFKA=host:port` | a Tansu broker it started |
//! | PostgreSQL | `BUTTON_TEST_POSTGRES=postgres://...` (+ `BUTTON_TEST_POSTGRES_CA`) | a throwaway server, TLS on |
//! | ClickHouse | `BUTTON_TEST_CLICKHOUSE=http://...` (+ `BUTTON_TEST_CLICKHOUSE_USER`/`_PASSWORD`, `_READER`) | a throwaway server |
//! | Tansu, for private brokers | `BUTTON_TANSU=/path/to/tansu` | the build in `~/.cache/button/tansu` |
//! | Chromium | `chromedriver` and `chromium` on `PATH` (or `BUTTON_CHROMEDRIVER`, `BUTTON_CHROMIUM`) | Debian's packages |
//!
//! The rule: `scripts/test` starts every service and exports
//! `BUTTON_TEST_SERVICES=required`. With that marker, a test whose service is not
//! set, or set but unreachable, **fails** and says which and why. Without it (a
//! developer running `cargo test` by hand), a test whose service is not set prints
//! `SKIPPED: ...` and passes; a service that is set must still be reachable.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;

/// The variable with which `scripts/test` says it started every service.
pub const MARKER: &str = "BUTTON_TEST_SERVICES";

/// Whether the test script started the services, so that a missing one is an error.
pub fn required() -> bool {
    std::env::var(MARKER).is_ok_and(|v| v == "required")
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// A service that is not there: a failure when the script promised it, else a note.
fn missing<T>(what: &str, how: &str) -> Option<T> {
    assert!(
        !required(),
        "{what} is missing ({how}), but {MARKER}=required: scripts/test should have \
         started it; see its output"
    );
    eprintln!("SKIPPED: {what} is not available ({how}); scripts/test starts it");
    None
}

/// Fails unless something accepts connections at `host_port`. One attempt: whoever
/// set the variable (the script) waited for the service to listen.
fn assert_reachable(what: &str, variable: &str, host_port: &str) {
    let addrs: Vec<SocketAddr> = host_port
        .to_socket_addrs()
        .unwrap_or_else(|e| panic!("{variable}: cannot resolve {host_port} for {what}: {e}"))
        .collect();
    let mut last = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, Duration::from_secs(5)) {
            Ok(_) => return,
            Err(e) => last = Some(e),
        }
    }
    panic!(
        "cannot reach {what} at {host_port} ({variable}): {}",
        last.map_or("no address".to_owned(), |e| e.to_string())
    );
}

/// `host:port` of a URL, with the scheme's default port.
fn host_port(variable: &str, url: &Url, default_port: u16) -> String {
    let host = url
        .host_str()
        .unwrap_or_else(|| panic!("{variable}: no host in {url}"));
    format!("{host}:{}", url.port().unwrap_or(default_port))
}

fn parse_url(variable: &str, value: &str) -> Url {
    Url::parse(value).unwrap_or_else(|e| panic!("{variable}={value} is not a URL: {e}"))
}

/// A name for a database (or topic) of one test's own.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// The Kafka-protocol broker's bootstrap address (`host:port`).
pub fn kafka() -> Option<String> {
    const VAR: &str = "BUTTON_TEST_KAFKA";
    let Some(broker) = var(VAR) else {
        return missing("the Kafka-protocol broker", "BUTTON_TEST_KAFKA is not set");
    };
    for one in broker.split(',') {
        assert_reachable("the Kafka-protocol broker", VAR, one.trim());
    }
    Some(broker)
}

/// The Tansu executable, for tests that start (and freeze) a broker of their own.
pub fn tansu() -> Option<PathBuf> {
    let Some(path) = var("BUTTON_TANSU") else {
        return missing("the Tansu broker executable", "BUTTON_TANSU is not set");
    };
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "BUTTON_TANSU={} is not a file",
        path.display()
    );
    Some(path)
}

/// The test PostgreSQL server.
#[derive(Debug, Clone)]
pub struct Postgres {
    /// `postgres://user@host:port/db` of a superuser.
    pub url: String,
    /// The CA that signed the server's TLS certificate (issued for `localhost`),
    /// when the server has the test TLS set up (`scripts/test`'s own server does).
    pub tls_ca: Option<String>,
}

/// The test PostgreSQL server.
pub fn postgres() -> Option<Postgres> {
    const VAR: &str = "BUTTON_TEST_POSTGRES";
    let Some(url) = var(VAR) else {
        return missing("PostgreSQL", "BUTTON_TEST_POSTGRES is not set");
    };
    assert_reachable(
        "PostgreSQL",
        VAR,
        &host_port(VAR, &parse_url(VAR, &url), 5432),
    );
    Some(Postgres {
        url,
        tls_ca: var("BUTTON_TEST_POSTGRES_CA"),
    })
}

impl Postgres {
    /// A new, empty database of the test's own; its URL.
    pub async fn new_database(&self) -> String {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to BUTTON_TEST_POSTGRES: {e}"));
        tokio::spawn(conn);
        let name = unique_name("test");
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let mut url = parse_url("BUTTON_TEST_POSTGRES", &self.url);
        url.set_path(&format!("/{name}"));
        url.to_string()
    }
}

/// The test ClickHouse server (its HTTP interface).
#[derive(Debug, Clone)]
pub struct ClickHouse {
    /// `http://host:port` as user `default`.
    pub url: String,
    /// A second user that has a password (with characters URLs must escape),
    /// when the server has one (`scripts/test`'s own server does).
    pub password_user: Option<(String, String)>,
    /// A user in read-only mode (`readonly=1`), without a password, when the
    /// server has one (`scripts/test`'s own server does): see [`Self::reader`].
    reader: Option<String>,
}

/// The test ClickHouse server.
pub fn clickhouse() -> Option<ClickHouse> {
    const VAR: &str = "BUTTON_TEST_CLICKHOUSE";
    let Some(url) = var(VAR) else {
        return missing("ClickHouse", "BUTTON_TEST_CLICKHOUSE is not set");
    };
    assert_reachable(
        "ClickHouse",
        VAR,
        &host_port(VAR, &parse_url(VAR, &url), 8123),
    );
    let password_user =
        var("BUTTON_TEST_CLICKHOUSE_USER").zip(var("BUTTON_TEST_CLICKHOUSE_PASSWORD"));
    let reader = var("BUTTON_TEST_CLICKHOUSE_READER");
    Some(ClickHouse {
        url,
        password_user,
        reader,
    })
}

impl ClickHouse {
    /// A new, empty database of the test's own; its URL (`?database=NAME`).
    pub async fn new_database(&self) -> String {
        let name = unique_name("test");
        clickhouse_sql(&self.url, &format!("CREATE DATABASE {name}")).await;
        let mut url = parse_url("BUTTON_TEST_CLICKHOUSE", &self.url);
        url.query_pairs_mut().append_pair("database", &name);
        url.to_string()
    }

    /// The user in read-only mode; missing is a failure under `scripts/test`.
    pub fn reader(&self) -> Option<String> {
        self.reader.clone().or_else(|| {
            missing(
                "a ClickHouse user in read-only mode",
                "BUTTON_TEST_CLICKHOUSE_READER is not set",
            )
        })
    }
}

/// Runs `sql` on the ClickHouse server at `url` (its `database` parameter applies);
/// returns the body, failing the test on an error.
pub async fn clickhouse_sql(url: &str, sql: &str) -> String {
    let resp = reqwest::Client::new()
        .post(url)
        .body(sql.to_owned())
        .send()
        .await
        .unwrap_or_else(|e| panic!("ClickHouse at {url} does not answer: {e}"));
    let status = resp.status();
    let body = resp.text().await.unwrap();
    assert!(status.is_success(), "{sql}: HTTP {status}: {body}");
    body
}

/// The presses a ClickHouse totals table holds (`presses_by_country_minute_totals`
/// by `minute`, `presses_by_country_day_totals` by `day`): each key's latest
/// version, added up; 0 when empty.
pub async fn clickhouse_totals(url: &str, table: &str, key: &str) -> u64 {
    clickhouse_sql(
        url,
        &format!(
            "SELECT sum(p) FROM (SELECT argMax(presses, inserted) AS p \
             FROM {table} GROUP BY country_code, {key})"
        ),
    )
    .await
    .trim()
    .parse()
    .unwrap_or(0)
}

/// A headless browser: Chromium and the WebDriver server that drives it.
#[derive(Debug, Clone)]
pub struct Browser {
    /// `chromedriver`.
    pub chromedriver: PathBuf,
    /// The `chromium` executable.
    pub chromium: PathBuf,
}

/// Chromium and chromedriver.
pub fn browser() -> Option<Browser> {
    let find = |variable: &str, name: &str| match var(variable) {
        Some(path) => Some(PathBuf::from(path)),
        None => on_path(name),
    };
    match (
        find("BUTTON_CHROMEDRIVER", "chromedriver"),
        find("BUTTON_CHROMIUM", "chromium"),
    ) {
        (Some(chromedriver), Some(chromium)) => Some(Browser {
            chromedriver,
            chromium,
        }),
        (driver, _) => missing(
            "Chromium",
            if driver.is_none() {
                "no chromedriver on PATH and BUTTON_CHROMEDRIVER is not set"
            } else {
                "no chromium on PATH and BUTTON_CHROMIUM is not set"
            },
        ),
    }
}

/// The executable `name` in one of `PATH`'s directories.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
