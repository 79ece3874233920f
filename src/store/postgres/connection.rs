//! The store's connections: one for writes and one for statistics, each opened on
//! first use, with the statements prepared on it.
//!
//! Guarantee: a connection that broke (server restart, network cut, timeout) is
//! dropped, and the next call opens a new one, so the store heals without help;
//! every statement and connection attempt is bounded by the query timeout.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Mutex, OnceCell};
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, Statement};

use super::error::QueryError;
use super::{PgStore, read, write};

/// An open connection and the statements prepared on it.
pub(super) struct Conn {
    pub(super) client: Client,
    statements: OnceCell<Statements>,
    /// Held by whoever runs a transaction on the connection (statements of
    /// others would land in it).
    pub(super) exclusive: Mutex<()>,
}

/// The store's statements, prepared once per connection.
pub(super) struct Statements {
    pub(super) stored: Statement,
    pub(super) copy: Statement,
    pub(super) count: Statement,
    pub(super) global: Statement,
    pub(super) session: Statement,
    pub(super) country_since: Statement,
}

impl Conn {
    /// Prepared on first use, not on connect: `connect` must work before `migrate`.
    pub(super) async fn statements(&self) -> Result<&Statements, tokio_postgres::Error> {
        self.statements
            .get_or_try_init(|| async {
                Ok(Statements {
                    stored: self.client.prepare(write::STORED_SQL).await?,
                    copy: self.client.prepare(&write::COPY_SQL).await?,
                    count: self.client.prepare(write::COUNT_SQL).await?,
                    global: self.client.prepare(read::GLOBAL_SQL).await?,
                    session: self.client.prepare(read::SESSION_SQL).await?,
                    country_since: self.client.prepare(read::COUNTRY_SINCE_SQL).await?,
                })
            })
            .await
    }
}

/// One connection, opened on demand and replaced when it breaks.
#[derive(Default)]
pub(super) struct Slot(Mutex<Option<Arc<Conn>>>);

impl PgStore {
    /// Opens a connection (not bounded by the query timeout: see [`Self::get`]).
    pub(super) async fn open(&self) -> Result<Client, QueryError> {
        let (client, connection) = self
            .config
            .connect(self.tls.clone())
            .await
            .map_err(QueryError::Pg)?;
        let target = self.target.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                let e = anyhow::Error::new(QueryError::Pg(e));
                tracing::warn!(target = %target, error = %format_args!("{e:#}"), "PostgreSQL connection lost");
            }
        });
        Ok(client)
    }

    /// The slot's connection, opened if it has none or it closed.
    pub(super) async fn get(&self, slot: &Slot) -> Result<Arc<Conn>, QueryError> {
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
            exclusive: Mutex::new(()),
        });
        *guard = Some(conn.clone());
        Ok(conn)
    }

    /// Forgets `conn` (if still current) so the next call opens a new connection.
    pub(super) async fn drop_conn(&self, slot: &Slot, conn: &Arc<Conn>) {
        let mut guard = slot.0.lock().await;
        if guard.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
            *guard = None;
        }
    }

    /// Awaits `fut` (a statement on `conn`, from `slot`) with the timeout; drops
    /// the connection when the failure says it is broken.
    pub(super) async fn finish<T>(
        &self,
        slot: &Slot,
        conn: &Arc<Conn>,
        fut: impl Future<Output = Result<T, tokio_postgres::Error>>,
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
}

/// `host:port/dbname`, for messages (never the user or password).
pub(super) fn describe(config: &Config) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_name_host_port_and_database_only() {
        let c: Config = "postgres://avnadmin:hunter2@pg.example.com:12345/defaultdb"
            .parse()
            .unwrap();
        assert_eq!(describe(&c), "pg.example.com:12345/defaultdb");
    }
}
