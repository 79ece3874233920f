//! What `button serve` runs, as plain data: the web tier's settings and the event
//! pipeline behind it (embedded, or Kafka with an optional statistics store).

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use super::{ChConfig, KafkaConfig, PgConfig, RegistryConfig};
use crate::domain::TrustedProxies;
use crate::encoding::Format;

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Directory for the session secret (and the embedded store).
    pub data_dir: PathBuf,
    /// An `.mmdb` file; `None` is the embedded country database.
    pub geoip_db: Option<PathBuf>,
    /// Proxies whose forwarding headers are believed.
    pub trusted_proxies: TrustedProxies,
    /// Cookie signing key material; `None` generates one in the data directory.
    pub secret: Option<SecretString>,
    /// Replies file; `None` is the built-in list.
    pub responses: Option<PathBuf>,
    /// Whether loopback and private visitors get a random real location.
    pub fake_local_ip: bool,
    /// Cohort recorded with visitors' events.
    pub cohort: i32,
    /// Whether the session cookie is `Secure`.
    pub cookie_secure: bool,
    /// How often one client may press.
    pub limits: LimitConfig,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Public views leave out countries with fewer presses than this.
    pub min_count: u64,
    /// Where events go and where statistics come from.
    pub pipeline: PipelineConfig,
}

/// Press rate limits; `None` is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitConfig {
    /// Presses a second from one client address (IPv6: one /64).
    pub per_address: Option<NonZeroU32>,
    /// Presses a second in one session.
    pub per_session: Option<NonZeroU32>,
}

impl LimitConfig {
    /// No limits.
    pub const OFF: LimitConfig = LimitConfig {
        per_address: None,
        per_session: None,
    };
}

/// The event path behind the web tier.
#[derive(Debug, Clone)]
pub enum PipelineConfig {
    /// Everything in this process: SQLite in the data directory.
    Embedded(EmbeddedConfig),
    /// Events to Kafka; statistics from a store the sink fills.
    Kafka(KafkaPipelineConfig),
}

/// The embedded pipeline.
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// Where `events.sqlite3` lives.
    pub data_dir: PathBuf,
    /// Events that may wait for the writer before presses get 503.
    pub queue_capacity: usize,
}

/// Events through Kafka.
#[derive(Debug, Clone)]
pub struct KafkaPipelineConfig {
    /// The brokers and topic.
    pub kafka: KafkaConfig,
    /// Message encoding.
    pub format: Format,
    /// Schema registry (Avro).
    pub registry: Option<RegistryConfig>,
    /// How long a press waits for the broker.
    pub delivery_timeout: Duration,
    /// Where presses wait while the broker cannot take them; `None`: refused.
    pub spool: Option<SpoolConfig>,
    /// Where `/stats` reads from.
    pub stats: StatsConfig,
}

/// The disk spool in front of Kafka.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// Its directory.
    pub dir: PathBuf,
    /// Most bytes it holds.
    pub max_bytes: u64,
}

/// The store `/stats` reads when events go to Kafka.
#[derive(Debug, Clone)]
pub enum StatsConfig {
    /// None: `/stats` answers "not available".
    None,
    /// PostgreSQL, as written by `button sink`.
    Postgres(PgConfig),
    /// ClickHouse, as written by `button sink`.
    Clickhouse(ChConfig),
}
