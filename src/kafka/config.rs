//! Kafka connection settings: brokers, topic, TLS and SASL, as flags with env
//! fallbacks (the original app's `KAFKA_SERVICE_URI` works too). Aiven's
//! certificate files (`ca.pem`, `service.cert`, `service.key`) are found in
//! `--kafka-certs-dir`. Files are checked at start, with the file named on error.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use rdkafka::ClientConfig;
use secrecy::{ExposeSecret, SecretString};

/// How to talk to the brokers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Security {
    /// No encryption, no authentication (local brokers).
    Plaintext,
    /// TLS with a client certificate (Aiven's default).
    Ssl,
    /// TLS, authenticated with SASL SCRAM username and password.
    #[value(name = "sasl_ssl")]
    SaslSsl,
}

/// SASL mechanisms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SaslMechanism {
    /// SCRAM-SHA-256.
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    /// SCRAM-SHA-512.
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
}

/// Kafka connection settings.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Bootstrap brokers, HOST:PORT[,HOST:PORT...]. Also read from the original
    /// app's KAFKA_SERVICE_URI. Without brokers, `serve` runs the embedded pipeline.
    #[arg(long = "kafka-brokers", env = "BUTTON_KAFKA_BROKERS")]
    pub brokers: Option<String>,

    /// Topic the events go to.
    #[arg(long, env = "BUTTON_TOPIC", default_value = "button_presses")]
    pub topic: String,

    /// Transport security.
    #[arg(long = "kafka-security", env = "BUTTON_KAFKA_SECURITY", value_enum, default_value_t = Security::Plaintext)]
    pub security: Security,

    /// Directory with Aiven's `ca.pem`, `service.cert` and `service.key`.
    #[arg(long = "kafka-certs-dir", env = "BUTTON_KAFKA_CERTS_DIR")]
    pub certs_dir: Option<PathBuf>,

    /// CA certificate (PEM) [default: CERTS_DIR/ca.pem].
    #[arg(long = "kafka-ca", env = "BUTTON_KAFKA_CA")]
    pub ca: Option<PathBuf>,

    /// Client certificate (PEM) for `ssl` [default: CERTS_DIR/service.cert].
    #[arg(long = "kafka-cert", env = "BUTTON_KAFKA_CERT")]
    pub cert: Option<PathBuf>,

    /// Client key (PEM) for `ssl` [default: CERTS_DIR/service.key].
    #[arg(long = "kafka-key", env = "BUTTON_KAFKA_KEY")]
    pub key: Option<PathBuf>,

    /// SASL mechanism for `sasl_ssl`.
    #[arg(long = "kafka-sasl-mechanism", env = "BUTTON_KAFKA_SASL_MECHANISM", value_enum, default_value_t = SaslMechanism::ScramSha256)]
    pub sasl_mechanism: SaslMechanism,

    /// SASL username for `sasl_ssl`.
    #[arg(long = "kafka-username", env = "BUTTON_KAFKA_USERNAME")]
    pub username: Option<String>,

    /// How long the producer waits to fill a batch (`linger.ms`).
    #[arg(long = "kafka-linger", env = "BUTTON_KAFKA_LINGER", default_value = "1ms", value_parser = crate::cli::parse_duration)]
    pub linger: std::time::Duration,

    /// librdkafka debug contexts to log, e.g. `broker,msg,eos` (troubleshooting).
    #[arg(long = "kafka-debug", env = "BUTTON_KAFKA_DEBUG")]
    pub debug: Option<String>,

    /// SASL password for `sasl_ssl`.
    #[arg(long = "kafka-password", env = "BUTTON_KAFKA_PASSWORD", hide_env_values = true, value_parser = crate::cli::secret)]
    pub password: Option<SecretString>,
}

/// A setting that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No brokers were given.
    #[error(
        "no Kafka brokers: pass --kafka-brokers HOST:PORT (or set BUTTON_KAFKA_BROKERS or KAFKA_SERVICE_URI)"
    )]
    NoBrokers,
    /// A file is missing or unreadable.
    #[error("cannot read the Kafka {what} {}: {source}", path.display())]
    File {
        /// Which file it is.
        what: &'static str,
        /// Where we looked.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A file is needed and no path was given.
    #[error("--kafka-security {security} needs the {what}: pass {flag} or --kafka-certs-dir")]
    MissingFile {
        /// The security mode.
        security: &'static str,
        /// Which file.
        what: &'static str,
        /// The flag naming it.
        flag: &'static str,
    },
    /// SASL without credentials.
    #[error("--kafka-security sasl_ssl needs --kafka-username and --kafka-password")]
    MissingCredentials,
}

impl KafkaArgs {
    /// The brokers from the flag, `BUTTON_KAFKA_BROKERS`, or `KAFKA_SERVICE_URI`.
    pub fn brokers(&self) -> Option<String> {
        self.brokers
            .clone()
            .or_else(|| std::env::var("KAFKA_SERVICE_URI").ok())
            .filter(|b| !b.trim().is_empty())
    }

    fn file(
        &self,
        explicit: &Option<PathBuf>,
        default_name: &str,
        what: &'static str,
    ) -> Result<Option<PathBuf>, ConfigError> {
        let path = explicit
            .clone()
            .or_else(|| self.certs_dir.as_ref().map(|d| d.join(default_name)));
        if let Some(p) = &path {
            check_readable(p, what)?;
        }
        Ok(path)
    }

    /// The librdkafka settings every client (producer, consumer, admin) shares.
    pub fn client_config(&self) -> Result<ClientConfig, ConfigError> {
        let brokers = self.brokers().ok_or(ConfigError::NoBrokers)?;
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &brokers)
            .set("client.id", "button");
        if let Some(debug) = &self.debug {
            c.set("debug", debug);
        }
        let mode = match self.security {
            Security::Plaintext => "plaintext",
            Security::Ssl => "ssl",
            Security::SaslSsl => "sasl_ssl",
        };
        c.set("security.protocol", mode);
        if self.security == Security::Plaintext {
            return Ok(c);
        }
        let need = |p: Option<PathBuf>, what, flag| {
            p.ok_or(ConfigError::MissingFile {
                security: mode,
                what,
                flag,
            })
        };
        let ca = self.file(&self.ca, "ca.pem", "CA certificate")?;
        match self.security {
            Security::Ssl => {
                let ca = need(ca, "CA certificate", "--kafka-ca")?;
                let cert = self.file(&self.cert, "service.cert", "client certificate")?;
                let key = self.file(&self.key, "service.key", "client key")?;
                let cert = need(cert, "client certificate", "--kafka-cert")?;
                let key = need(key, "client key", "--kafka-key")?;
                c.set("ssl.ca.location", path_str(&ca))
                    .set("ssl.certificate.location", path_str(&cert))
                    .set("ssl.key.location", path_str(&key));
            }
            Security::SaslSsl => {
                // Without a CA file, the system's trust store is used.
                if let Some(ca) = ca {
                    c.set("ssl.ca.location", path_str(&ca));
                }
                let (Some(user), Some(password)) = (&self.username, &self.password) else {
                    return Err(ConfigError::MissingCredentials);
                };
                let mechanism = match self.sasl_mechanism {
                    SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
                    SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
                };
                c.set("sasl.mechanisms", mechanism)
                    .set("sasl.username", user)
                    .set("sasl.password", password.expose_secret());
            }
            Security::Plaintext => unreachable!("returned above"),
        }
        Ok(c)
    }
}

fn check_readable(path: &Path, what: &'static str) -> Result<(), ConfigError> {
    std::fs::File::open(path)
        .map(drop)
        .map_err(|source| ConfigError::File {
            what,
            path: path.to_owned(),
            source,
        })
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        kafka: KafkaArgs,
    }

    fn args(extra: &[&str]) -> KafkaArgs {
        let mut v = vec!["test", "--kafka-brokers", "k1:9092,k2:9092"];
        v.extend_from_slice(extra);
        Cli::try_parse_from(v).unwrap().kafka
    }

    fn certs_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for f in ["ca.pem", "service.cert", "service.key"] {
            std::fs::write(dir.path().join(f), "pem").unwrap();
        }
        dir
    }

    #[test]
    fn plaintext_needs_only_brokers() {
        let c = args(&[]).client_config().unwrap();
        assert_eq!(c.get("bootstrap.servers"), Some("k1:9092,k2:9092"));
        assert_eq!(c.get("security.protocol"), Some("plaintext"));
        assert_eq!(c.get("ssl.ca.location"), None);
    }

    #[test]
    fn ssl_takes_aivens_files_from_the_certs_dir() {
        let dir = certs_dir();
        let d = dir.path().to_str().unwrap();
        let c = args(&["--kafka-security", "ssl", "--kafka-certs-dir", d])
            .client_config()
            .unwrap();
        assert_eq!(c.get("security.protocol"), Some("ssl"));
        assert_eq!(c.get("ssl.ca.location").unwrap(), format!("{d}/ca.pem"));
        assert_eq!(
            c.get("ssl.certificate.location").unwrap(),
            format!("{d}/service.cert")
        );
        assert_eq!(
            c.get("ssl.key.location").unwrap(),
            format!("{d}/service.key")
        );
    }

    #[test]
    fn individual_file_flags_override_the_certs_dir() {
        let dir = certs_dir();
        let d = dir.path().to_str().unwrap();
        let other = dir.path().join("other-ca.pem");
        std::fs::write(&other, "pem").unwrap();
        let c = args(&[
            "--kafka-security",
            "ssl",
            "--kafka-certs-dir",
            d,
            "--kafka-ca",
            other.to_str().unwrap(),
        ])
        .client_config()
        .unwrap();
        assert_eq!(c.get("ssl.ca.location").unwrap(), other.to_str().unwrap());
    }

    #[test]
    fn a_missing_certificate_is_named_in_the_error() {
        let dir = certs_dir();
        std::fs::remove_file(dir.path().join("service.key")).unwrap();
        let d = dir.path().to_str().unwrap();
        let err = args(&["--kafka-security", "ssl", "--kafka-certs-dir", d])
            .client_config()
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("client key") && msg.contains("service.key"),
            "{msg}"
        );
        let err = args(&["--kafka-security", "ssl"])
            .client_config()
            .unwrap_err();
        assert!(err.to_string().contains("--kafka-ca"), "{err}");
    }

    #[test]
    fn sasl_scram_sets_mechanism_and_credentials() {
        let c = args(&[
            "--kafka-security",
            "sasl_ssl",
            "--kafka-sasl-mechanism",
            "SCRAM-SHA-512",
            "--kafka-username",
            "avnadmin",
            "--kafka-password",
            "hunter2-secret",
        ])
        .client_config()
        .unwrap();
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("sasl.mechanisms"), Some("SCRAM-SHA-512"));
        assert_eq!(c.get("sasl.username"), Some("avnadmin"));
        assert_eq!(c.get("sasl.password"), Some("hunter2-secret"));
        let err = args(&["--kafka-security", "sasl_ssl"])
            .client_config()
            .unwrap_err();
        assert!(matches!(err, ConfigError::MissingCredentials));
    }

    #[test]
    fn the_password_never_shows_in_debug_output() {
        let a = args(&[
            "--kafka-username",
            "u",
            "--kafka-password",
            "hunter2-secret",
        ]);
        assert!(!format!("{a:?}").contains("hunter2"));
    }

    #[test]
    fn no_brokers_is_a_clear_error() {
        let a = Cli::try_parse_from(["test"]).unwrap().kafka;
        if std::env::var_os("KAFKA_SERVICE_URI").is_none() {
            assert!(
                a.client_config()
                    .unwrap_err()
                    .to_string()
                    .contains("--kafka-brokers")
            );
        }
    }
}
