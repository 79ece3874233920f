//! librdkafka settings from [`KafkaConfig`]: what every client (producer,
//! consumer, admin) shares. Certificate files are checked here, at start, with the
//! file named on error.

use std::path::{Path, PathBuf};

use rdkafka::ClientConfig;
use secrecy::ExposeSecret;

use crate::config::{KafkaConfig, Security};

/// A setting that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
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

/// The librdkafka settings every client (producer, consumer, admin) shares.
pub fn client_config(k: &KafkaConfig) -> Result<ClientConfig, ConfigError> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.brokers)
        .set("client.id", "button");
    if let Some(debug) = &k.debug {
        c.set("debug", debug);
    }
    let mode = k.security.as_str();
    c.set("security.protocol", mode);
    if k.security == Security::Plaintext {
        return Ok(c);
    }
    let need = |p: Option<&PathBuf>, what: &'static str, flag| {
        let p = p.ok_or(ConfigError::MissingFile {
            security: mode,
            what,
            flag,
        })?;
        check_readable(p, what)?;
        Ok::<_, ConfigError>(p.display().to_string())
    };
    match k.security {
        Security::Ssl => {
            let ca = need(k.ca.as_ref(), "CA certificate", "--kafka-ca")?;
            let cert = need(k.cert.as_ref(), "client certificate", "--kafka-cert")?;
            let key = need(k.key.as_ref(), "client key", "--kafka-key")?;
            c.set("ssl.ca.location", ca)
                .set("ssl.certificate.location", cert)
                .set("ssl.key.location", key);
        }
        Security::SaslSsl => {
            // Without a CA file, the system's trust store is used.
            if let Some(ca) = &k.ca {
                check_readable(ca, "CA certificate")?;
                c.set("ssl.ca.location", ca.display().to_string());
            }
            let (Some(user), Some(password)) = (&k.username, &k.password) else {
                return Err(ConfigError::MissingCredentials);
            };
            c.set("sasl.mechanisms", k.sasl_mechanism.as_str())
                .set("sasl.username", user)
                .set("sasl.password", password.expose_secret());
        }
        Security::Plaintext => unreachable!("returned above"),
    }
    Ok(c)
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        kafka: crate::config::KafkaArgs,
    }

    struct Args(KafkaConfig);

    impl Args {
        fn client_config(&self) -> Result<ClientConfig, ConfigError> {
            client_config(&self.0)
        }
    }

    fn args(extra: &[&str]) -> Args {
        let mut v = vec!["test", "--kafka-brokers", "k1:9092,k2:9092"];
        v.extend_from_slice(extra);
        Args(Cli::try_parse_from(v).unwrap().kafka.require().unwrap())
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
        assert!(!format!("{:?}", a.0).contains("hunter2"));
    }

    #[test]
    fn no_brokers_is_a_clear_error() {
        let a = Cli::try_parse_from(["test", "--kafka-brokers", " "])
            .unwrap()
            .kafka;
        if std::env::var_os("KAFKA_SERVICE_URI").is_none() {
            assert!(
                a.require()
                    .unwrap_err()
                    .to_string()
                    .contains("--kafka-brokers")
            );
        }
    }
}
