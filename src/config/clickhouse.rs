//! ClickHouse connection settings. The original app's `CH_HOST`, `CH_HTTPS_PORT`,
//! `CH_USER` and `CH_PASSWORD` are read here, with the other variables.

use std::path::PathBuf;

use clap::Args;
use secrecy::{ExposeSecret, SecretString};

use super::registry::http_url;
use super::url::CredentialedUrl;

/// ClickHouse flags.
#[derive(Debug, Clone, Args)]
pub struct ChArgs {
    /// ClickHouse HTTP(S) URL, e.g. https://USER:PASSWORD@HOST:8443/?database=button or
    /// http://127.0.0.1:8123 (database `default`). Other query parameters are sent
    /// as settings. Also built from the original app's CH_HOST, CH_HTTPS_PORT,
    /// CH_USER and CH_PASSWORD.
    #[arg(id = "clickhouse_url", long = "clickhouse-url", env = "BUTTON_CLICKHOUSE_URL", hide_env_values = true, value_parser = http_url)]
    pub url: Option<CredentialedUrl>,

    /// CA certificate (PEM) that ClickHouse's HTTPS certificate chains to, trusted
    /// besides the system's: Aiven's project CA, certs/ca.pem. The host name is
    /// verified either way.
    #[arg(
        id = "clickhouse_ca",
        long = "clickhouse-ca",
        env = "BUTTON_CLICKHOUSE_CA"
    )]
    pub ca: Option<PathBuf>,

    /// The original app's ClickHouse host.
    #[arg(long = "ch-host", env = "CH_HOST", hide = true)]
    pub legacy_host: Option<String>,

    /// The original app's ClickHouse HTTPS port.
    #[arg(long = "ch-https-port", env = "CH_HTTPS_PORT", hide = true)]
    pub legacy_port: Option<String>,

    /// The original app's ClickHouse user.
    #[arg(long = "ch-user", env = "CH_USER", hide = true)]
    pub legacy_user: Option<String>,

    /// The original app's ClickHouse password.
    #[arg(long = "ch-password", env = "CH_PASSWORD", hide = true, hide_env_values = true, value_parser = super::parse::secret)]
    pub legacy_password: Option<SecretString>,
}

/// Where ClickHouse is.
#[derive(Debug, Clone)]
pub struct ChConfig {
    /// Its HTTP(S) interface, credentials, and `database` plus settings as query
    /// parameters.
    pub url: CredentialedUrl,
    /// A CA certificate file to trust besides the system's.
    pub ca: Option<PathBuf>,
}

impl ChArgs {
    /// The database, when one is configured: the URL, or one built from the
    /// original app's variables.
    pub fn config(&self) -> Option<ChConfig> {
        self.url
            .clone()
            .or_else(|| {
                url_from_parts(
                    self.legacy_host.as_deref(),
                    self.legacy_port.as_deref(),
                    self.legacy_user.as_deref(),
                    self.legacy_password.as_ref().map(|p| p.expose_secret()),
                )
            })
            .map(|url| ChConfig {
                url,
                ca: self.ca.clone(),
            })
    }
}

impl std::str::FromStr for ChConfig {
    type Err = super::url::UrlError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        http_url(s).map(|url| ChConfig { url, ca: None })
    }
}

/// `https://USER:PASSWORD@HOST:PORT` from the original app's variables (port 8443
/// when not given; a host that already is a URL keeps its scheme and port).
fn url_from_parts(
    host: Option<&str>,
    port: Option<&str>,
    user: Option<&str>,
    password: Option<&str>,
) -> Option<CredentialedUrl> {
    let host = host.map(str::trim).filter(|h| !h.is_empty())?;
    let port = port
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .unwrap_or("8443");
    let mut url = if host.starts_with("http://") || host.starts_with("https://") {
        url::Url::parse(host).ok()?
    } else {
        url::Url::parse(&format!("https://{host}:{port}/")).ok()?
    };
    if let Some(user) = user.filter(|u| !u.is_empty()) {
        url.set_username(user).ok()?;
        if let Some(password) = password {
            url.set_password(Some(password)).ok()?;
        }
    }
    url.as_str().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        ch: ChArgs,
    }

    #[test]
    fn the_original_apps_variables_make_an_https_url() {
        let url = url_from_parts(
            Some("ch-demo.aivencloud.com"),
            Some("24947"),
            Some("avnadmin"),
            Some("s3cr@t"),
        )
        .unwrap();
        assert_eq!(
            url.expose(),
            "https://avnadmin:s3cr%40t@ch-demo.aivencloud.com:24947/"
        );
        assert_eq!(url.password().unwrap().expose_secret(), "s3cr@t");
        assert_eq!(
            url_from_parts(Some("h"), None, None, None).map(|u| u.expose()),
            Some("https://h:8443/".to_owned())
        );
        assert!(url_from_parts(None, Some("1"), Some("u"), Some("p")).is_none());
        assert!(url_from_parts(Some(" "), None, None, None).is_none());
        let u = url_from_parts(Some("http://localhost:8123"), Some("9"), None, None).unwrap();
        assert_eq!(u.url().as_str(), "http://localhost:8123/");
    }

    #[test]
    fn the_flag_wins_and_the_password_never_shows_in_debug_output() {
        let cli = Cli::try_parse_from([
            "test",
            "--clickhouse-url",
            "https://u:hunter2-secret@h:8443/?database=b",
            "--ch-host",
            "other.example",
        ])
        .unwrap();
        assert!(!format!("{:?}", cli.ch).contains("hunter2"));
        let config = cli.ch.config().unwrap();
        assert!(!format!("{config:?}").contains("hunter2"));
        assert_eq!(
            config.url.expose(),
            "https://u:hunter2-secret@h:8443/?database=b"
        );
    }

    #[test]
    fn the_original_apps_variables_are_the_fallback() {
        let cli = Cli::try_parse_from([
            "test",
            "--ch-host",
            "ch.example",
            "--ch-https-port",
            "24947",
            "--ch-user",
            "avnadmin",
            "--ch-password",
            "pw",
        ])
        .unwrap();
        assert_eq!(
            cli.ch.config().unwrap().url.expose(),
            "https://avnadmin:pw@ch.example:24947/"
        );
    }
}
