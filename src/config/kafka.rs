//! Kafka connection settings: brokers, topic, TLS and SASL. Aiven's certificate
//! files (`ca.pem`, `service.cert`, `service.key`) are found in `--kafka-certs-dir`.
//! The original app's `KAFKA_SERVICE_URI` is read here, with the other variables.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use secrecy::SecretString;

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

impl Security {
    /// librdkafka's `security.protocol` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Security::Plaintext => "plaintext",
            Security::Ssl => "ssl",
            Security::SaslSsl => "sasl_ssl",
        }
    }
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

impl SaslMechanism {
    /// librdkafka's `sasl.mechanisms` value.
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// Kafka connection flags.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Bootstrap brokers, HOST:PORT[,HOST:PORT...]. Also read from the original
    /// app's KAFKA_SERVICE_URI. Without brokers, `serve` runs the embedded pipeline.
    #[arg(long = "kafka-brokers", env = "BUTTON_KAFKA_BROKERS")]
    pub brokers: Option<String>,

    /// The original app's variable for the brokers.
    #[arg(long = "kafka-service-uri", env = "KAFKA_SERVICE_URI", hide = true)]
    pub service_uri: Option<String>,

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
    #[arg(long = "kafka-linger", env = "BUTTON_KAFKA_LINGER", default_value = "1ms", value_parser = super::parse::duration)]
    pub linger: Duration,

    /// librdkafka debug contexts to log, e.g. `broker,msg,eos` (troubleshooting).
    #[arg(long = "kafka-debug", env = "BUTTON_KAFKA_DEBUG")]
    pub debug: Option<String>,

    /// SASL password for `sasl_ssl`.
    #[arg(long = "kafka-password", env = "BUTTON_KAFKA_PASSWORD", hide_env_values = true, value_parser = super::parse::secret)]
    pub password: Option<SecretString>,
}

/// No brokers were given where they are needed.
#[derive(Debug, thiserror::Error)]
#[error(
    "no Kafka brokers: pass --kafka-brokers HOST:PORT (or set BUTTON_KAFKA_BROKERS or KAFKA_SERVICE_URI)"
)]
pub struct NoBrokers;

/// Where Kafka is and how to reach it.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Bootstrap brokers, comma separated.
    pub brokers: String,
    /// The events' topic.
    pub topic: String,
    /// Transport security.
    pub security: Security,
    /// CA certificate file, when given (or found in the certs directory).
    pub ca: Option<PathBuf>,
    /// Client certificate file for `ssl`.
    pub cert: Option<PathBuf>,
    /// Client key file for `ssl`.
    pub key: Option<PathBuf>,
    /// SASL mechanism for `sasl_ssl`.
    pub sasl_mechanism: SaslMechanism,
    /// SASL user name.
    pub username: Option<String>,
    /// SASL password.
    pub password: Option<SecretString>,
    /// Producer linger.
    pub linger: Duration,
    /// librdkafka debug contexts.
    pub debug: Option<String>,
}

impl KafkaConfig {
    /// Plaintext settings for `brokers` and `topic`, everything else default.
    pub fn plaintext(brokers: impl Into<String>, topic: impl Into<String>) -> Self {
        KafkaConfig {
            brokers: brokers.into(),
            topic: topic.into(),
            security: Security::Plaintext,
            ca: None,
            cert: None,
            key: None,
            sasl_mechanism: SaslMechanism::ScramSha256,
            username: None,
            password: None,
            linger: Duration::from_millis(1),
            debug: None,
        }
    }
}

impl KafkaArgs {
    /// The settings, or `None` when no brokers were given (flag, `BUTTON_KAFKA_BROKERS`
    /// or `KAFKA_SERVICE_URI`).
    pub fn config(&self) -> Option<KafkaConfig> {
        let brokers = [&self.brokers, &self.service_uri]
            .into_iter()
            .flatten()
            .map(|b| b.trim())
            .find(|b| !b.is_empty())?
            .to_owned();
        let in_dir = |name: &str| self.certs_dir.as_ref().map(|d| d.join(name));
        Some(KafkaConfig {
            brokers,
            topic: self.topic.clone(),
            security: self.security,
            ca: self.ca.clone().or_else(|| in_dir("ca.pem")),
            cert: self.cert.clone().or_else(|| in_dir("service.cert")),
            key: self.key.clone().or_else(|| in_dir("service.key")),
            sasl_mechanism: self.sasl_mechanism,
            username: self.username.clone(),
            password: self.password.clone(),
            linger: self.linger,
            debug: self.debug.clone(),
        })
    }

    /// The settings, where brokers are required.
    pub fn require(&self) -> Result<KafkaConfig, NoBrokers> {
        self.config().ok_or(NoBrokers)
    }
}
