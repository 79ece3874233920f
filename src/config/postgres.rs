//! PostgreSQL connection settings. The original app's `PG_SERVICE_URI` is read
//! here, with the other variables.

use clap::Args;

use super::url::{CredentialedUrl, UrlError};

/// PostgreSQL flags.
#[derive(Debug, Clone, Args)]
pub struct PgArgs {
    /// PostgreSQL URL, postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=require (libpq's
    /// sslmode values and sslrootcert=PATH are understood). Also read from the
    /// original app's PG_SERVICE_URI.
    #[arg(id = "postgres_url", long = "postgres-url", env = "BUTTON_POSTGRES_URL", hide_env_values = true, value_parser = postgres_url)]
    pub url: Option<CredentialedUrl>,

    /// The original app's variable for the PostgreSQL URL.
    #[arg(long = "pg-service-uri", env = "PG_SERVICE_URI", hide = true, hide_env_values = true, value_parser = postgres_url)]
    pub legacy_url: Option<CredentialedUrl>,
}

/// Where PostgreSQL is.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// Its address, credentials and libpq-style parameters (`sslmode`, `sslrootcert`).
    pub url: CredentialedUrl,
}

impl PgArgs {
    /// The database, when one is configured.
    pub fn config(&self) -> Option<PgConfig> {
        self.url
            .clone()
            .or_else(|| self.legacy_url.clone())
            .map(|url| PgConfig { url })
    }
}

impl std::str::FromStr for PgConfig {
    type Err = UrlError;
    fn from_str(s: &str) -> Result<Self, UrlError> {
        postgres_url(s).map(|url| PgConfig { url })
    }
}

/// A `postgres://` or `postgresql://` URL.
pub fn postgres_url(s: &str) -> Result<CredentialedUrl, UrlError> {
    CredentialedUrl::parse_with_schemes(s, &["postgres", "postgresql"])
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use secrecy::ExposeSecret;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        pg: PgArgs,
    }

    #[test]
    fn the_password_never_shows_in_debug_output() {
        let cli = Cli::try_parse_from([
            "test",
            "--postgres-url",
            "postgres://avnadmin:hunter2-secret@pg.example.com:12345/defaultdb?sslmode=require",
        ])
        .unwrap();
        assert!(!format!("{:?}", cli.pg).contains("hunter2"));
        let config = cli.pg.config().unwrap();
        assert!(!format!("{config:?}").contains("hunter2"));
        assert_eq!(
            config.url.password().unwrap().expose_secret(),
            "hunter2-secret"
        );
    }

    #[test]
    fn the_original_apps_variable_is_the_fallback_and_the_flag_wins() {
        let cli = Cli::try_parse_from(["test", "--pg-service-uri", "postgres://old@h/db"]).unwrap();
        assert_eq!(cli.pg.config().unwrap().url.expose(), "postgres://old@h/db");
        let cli = Cli::try_parse_from([
            "test",
            "--postgres-url",
            "postgres://a@b/c",
            "--pg-service-uri",
            "postgres://old@h/db",
        ])
        .unwrap();
        assert_eq!(cli.pg.config().unwrap().url.expose(), "postgres://a@b/c");
        let err = Cli::try_parse_from(["test", "--postgres-url", "mysql://x"]).unwrap_err();
        assert!(err.to_string().contains("postgres"), "{err}");
    }
}
