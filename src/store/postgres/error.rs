//! Why a PostgreSQL statement failed, and what that means for the caller: whether
//! retrying can help (classified like Vector's `RetryLogic`, by SQLSTATE), and
//! whether the connection it ran on is still good.
//!
//! Guarantee: [`QueryError`]'s message says what failed at this level and its
//! [`source`](std::error::Error::source) gives the cause (an I/O or TLS error), so
//! the chain is rendered once, where it is reported; none of it holds a password.

use std::fmt;
use std::time::Duration;

use tokio_postgres::error::SqlState;

/// Why a statement (or a connection attempt) failed.
#[derive(Debug)]
pub(super) enum QueryError {
    /// The server or the connection said no.
    Pg(tokio_postgres::Error),
    /// No answer in time; the connection is given up.
    Timeout(Duration),
}

impl QueryError {
    /// Whether the same statement may succeed if tried again.
    pub(super) fn retryable(&self) -> bool {
        match self {
            QueryError::Pg(e) => error_retryable(e),
            QueryError::Timeout(_) => true,
        }
    }

    /// Whether a transaction failed only because a concurrent one got in its way
    /// (a duplicate key it stored first, a deadlock or serialization failure):
    /// running it again sees that one's work.
    pub(super) fn is_conflict(&self) -> bool {
        let QueryError::Pg(e) = self else {
            return false;
        };
        e.code().is_some_and(|c| {
            [
                &SqlState::UNIQUE_VIOLATION,
                &SqlState::T_R_DEADLOCK_DETECTED,
                &SqlState::T_R_SERIALIZATION_FAILURE,
            ]
            .contains(&c)
        })
    }

    /// Whether the connection should be dropped and opened again.
    pub(super) fn breaks_connection(&self) -> bool {
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
                None => write!(f, "{e}"),
            },
            QueryError::Timeout(d) => write!(f, "no answer within {}s", d.as_secs_f64()),
        }
    }
}

/// The cause below this level: for a server error, none (its message and SQLSTATE
/// are this level); otherwise what tokio-postgres wraps (an I/O or TLS error).
impl std::error::Error for QueryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            QueryError::Pg(e) if e.as_db_error().is_none() => std::error::Error::source(e),
            _ => None,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn messages_say_this_level_and_the_cause_follows() {
        let err = QueryError::Timeout(Duration::from_millis(1500));
        assert_eq!(err.to_string(), "no answer within 1.5s");
        assert!(std::error::Error::source(&err).is_none());
        // A connection error: tokio-postgres's message, then the I/O error below it.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let e = rt
            .block_on(tokio_postgres::connect(
                "host=localhost port=1 user=u connect_timeout=5",
                tokio_postgres::NoTls,
            ))
            .err()
            .expect("nothing listens on port 1");
        let err = QueryError::Pg(e);
        let chain = format!("{:#}", anyhow::Error::new(err));
        assert!(chain.starts_with("error connecting to server: "), "{chain}");
        assert_eq!(
            chain.matches("error connecting to server").count(),
            1,
            "{chain}"
        );
    }
}
