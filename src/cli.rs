//! Command line: subcommands, and every setting as a flag with a `BUTTON_*`
//! environment fallback (a `.env` file in the working directory is read too).
//! This module composes: the flag groups and value parsers live in [`crate::config`],
//! and `serve`'s flags become a [`ServeConfig`] here, checked once.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use anyhow::Context;
use secrecy::SecretString;

use crate::config::{
    ChArgs, EmbeddedConfig, KafkaArgs, KafkaPipelineConfig, LimitConfig, PgArgs, PipelineConfig,
    RegistryArgs, ServeConfig, SpoolConfig, StatsConfig,
};
use crate::domain::TrustedProxies;
use crate::encoding::Format;

/// Pushing this button does nothing. Every press is still counted, privately.
#[derive(Debug, Parser)]
#[command(name = "button", version, about, long_about = None)]
pub struct Cli {
    /// Log format.
    #[arg(long, env = "BUTTON_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty, global = true)]
    pub log_format: LogFormat,

    /// What to run; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Log output styles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the button page, record presses, show the stats.
    Serve(ServeArgs),
    /// Create or check the Kafka topic (and, later, the database schemas).
    Migrate(crate::migrate::MigrateArgs),
    /// Print the events in the topic.
    Tail(crate::tail::TailArgs),
    /// Generate synthetic sessions, to Kafka or over HTTP to a running server.
    Generate(crate::generate::GenerateArgs),
    /// Consume the topic into PostgreSQL and/or ClickHouse, effectively once.
    Sink(crate::sink::SinkArgs),
    /// Print the click patterns (per minute, per session, gaps) from the topic or
    /// the embedded store.
    Analyze(crate::analyze::AnalyzeArgs),
}

/// Stores `serve` can read statistics from when events go to Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatsFrom {
    /// The ClickHouse store the sink writes to.
    Clickhouse,
    /// The PostgreSQL store the sink writes to.
    Postgres,
}

/// Settings of `button serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "BUTTON_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,

    /// Directory for the embedded event store and the generated session secret.
    #[arg(long, env = "BUTTON_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// A MaxMind DB (.mmdb) file to geolocate with, country or city level
    /// [default: the embedded country database].
    #[arg(long, env = "BUTTON_GEOIP_DB")]
    pub geoip_db: Option<PathBuf>,

    /// Proxies whose X-Forwarded-For / Forwarded headers are believed, as
    /// CIDR[,CIDR...]. Headers from any other peer are ignored.
    #[arg(long, env = "BUTTON_TRUSTED_PROXIES", default_value = "", value_parser = parse_proxies)]
    pub trusted_proxies: TrustedProxies,

    /// Key material for signing session cookies (at least 32 bytes)
    /// [default: generated on first start and kept in the data directory].
    #[arg(long, env = "BUTTON_SECRET", hide_env_values = true, value_parser = crate::config::parse::secret)]
    pub secret: Option<SecretString>,

    /// A text file of replies, one per line, replacing the built-in list.
    #[arg(long, env = "BUTTON_RESPONSES")]
    pub responses: Option<PathBuf>,

    /// Give loopback and private addresses "unknown" instead of a random public location.
    #[arg(long, env = "BUTTON_NO_FAKE_LOCAL_IP")]
    pub no_fake_local_ip: bool,

    /// Cohort recorded with visitors' events.
    #[arg(long, env = "BUTTON_COHORT", default_value_t = 0)]
    pub cohort: i32,

    /// Events that may wait for the store before presses are refused with 503.
    #[arg(long, env = "BUTTON_QUEUE_CAPACITY", default_value_t = 16_384)]
    pub queue_capacity: usize,

    /// Mark the session cookie `Secure` (when served over HTTPS).
    #[arg(long, env = "BUTTON_COOKIE_SECURE")]
    pub cookie_secure: bool,

    /// Presses a second allowed from one client address (an IPv6 /64 counts as
    /// one), with a burst of three seconds' worth; more get 429. Generous, because
    /// a whole workshop may share one address. 0 turns the limit off (load tests
    /// from one machine).
    #[arg(long, env = "BUTTON_PRESS_LIMIT_PER_ADDRESS", default_value_t = 50)]
    pub press_limit_per_address: u32,

    /// Most connections open at once; more wait until one closes.
    #[arg(long, env = "BUTTON_MAX_CONNECTIONS", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Presses a second allowed in one session, with a burst of three seconds'
    /// worth; more get 429. 0 turns the limit off.
    #[arg(long, env = "BUTTON_PRESS_LIMIT_PER_SESSION", default_value_t = 10)]
    pub press_limit_per_session: u32,

    /// Public views (the dashboard, its map and ticker, `/api/stats`) leave out
    /// countries with fewer presses than this, so that a country with one or two
    /// visitors does not single them out. 1 shows every country.
    #[arg(long, env = "BUTTON_MIN_COUNT", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub min_count: u64,

    /// Kafka: when brokers are given, events go to the topic instead of the
    /// embedded store.
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Encoding of the events in Kafka.
    #[arg(long, env = "BUTTON_FORMAT", value_enum, default_value_t = Format::Json)]
    pub format: Format,

    /// Schema registry (needed with `--format avro`).
    #[command(flatten)]
    pub registry: RegistryArgs,

    /// With Kafka: the store `/stats` reads from (written by `button sink`).
    #[arg(long, env = "BUTTON_STATS_FROM", value_enum)]
    pub stats_from: Option<StatsFrom>,

    /// PostgreSQL, for `--stats-from postgres`.
    #[command(flatten)]
    pub postgres: PgArgs,

    /// ClickHouse, for `--stats-from clickhouse`.
    #[command(flatten)]
    pub clickhouse: ChArgs,

    /// With Kafka: MiB of presses kept on disk (in DATA_DIR/spool) while the broker
    /// cannot take them, replayed in order once it can; presses beyond get 503.
    /// 0 turns the spool off (presses are refused while the broker is away).
    #[arg(long, env = "BUTTON_SPOOL_MAX_MIB", default_value_t = 256)]
    pub spool_max_mib: u64,

    /// How long a press waits for the broker's confirmation before the visitor is
    /// asked to try again.
    #[arg(long, env = "BUTTON_DELIVERY_TIMEOUT", default_value = "5s", value_parser = crate::config::parse::duration)]
    pub delivery_timeout: Duration,
}

fn parse_proxies(s: &str) -> Result<TrustedProxies, String> {
    s.parse()
}

impl ServeArgs {
    /// What `serve` runs, checked: a statistics store named without its URL, say,
    /// is refused here with the flag to add.
    pub fn config(&self) -> anyhow::Result<ServeConfig> {
        let pipeline = match self.kafka.config() {
            None => PipelineConfig::Embedded(EmbeddedConfig {
                data_dir: self.data_dir.clone(),
                queue_capacity: self.queue_capacity,
            }),
            Some(kafka) => PipelineConfig::Kafka(KafkaPipelineConfig {
                kafka,
                format: self.format,
                registry: self.registry.config(),
                delivery_timeout: self.delivery_timeout,
                spool: (self.spool_max_mib > 0).then(|| SpoolConfig {
                    dir: self.data_dir.join("spool"),
                    max_bytes: self.spool_max_mib.saturating_mul(1 << 20),
                }),
                stats: match self.stats_from {
                    None => StatsConfig::None,
                    Some(StatsFrom::Postgres) => StatsConfig::Postgres(
                        self.postgres
                            .config()
                            .context("--stats-from postgres needs --postgres-url")?,
                    ),
                    Some(StatsFrom::Clickhouse) => StatsConfig::Clickhouse(
                        self.clickhouse
                            .config()
                            .context("--stats-from clickhouse needs --clickhouse-url")?,
                    ),
                },
            }),
        };
        Ok(ServeConfig {
            listen: self.listen,
            data_dir: self.data_dir.clone(),
            geoip_db: self.geoip_db.clone(),
            trusted_proxies: self.trusted_proxies.clone(),
            secret: self.secret.clone(),
            responses: self.responses.clone(),
            fake_local_ip: !self.no_fake_local_ip,
            cohort: self.cohort,
            cookie_secure: self.cookie_secure,
            max_connections: self.max_connections as usize,
            min_count: self.min_count,
            limits: LimitConfig {
                per_address: NonZeroU32::new(self.press_limit_per_address),
                per_session: NonZeroU32::new(self.press_limit_per_session),
            },
            pipeline,
        })
    }

    /// The settings when `serve` was not named: defaults and environment.
    pub fn from_env() -> Self {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            args: ServeArgs,
        }
        Only::parse_from(["button"]).args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn every_url_flag_reaches_its_own_field() {
        let cli = Cli::try_parse_from([
            "button",
            "sink",
            "--schema-registry-url",
            "http://registry:8081",
            "--postgres-url",
            "postgres://pg/db",
            "--clickhouse-url",
            "http://ch:8123",
        ])
        .unwrap();
        let Some(Command::Sink(s)) = cli.command else {
            panic!("not sink")
        };
        assert_eq!(
            s.postgres.config().unwrap().url.expose(),
            "postgres://pg/db"
        );
        assert_eq!(
            s.clickhouse.config().unwrap().url.expose(),
            "http://ch:8123/"
        );
        assert!(format!("{:?}", s.registry.config().unwrap().url).contains("registry:8081"));
    }

    #[test]
    fn bad_trusted_proxies_are_refused_at_parse_time() {
        let err = Cli::try_parse_from(["button", "serve", "--trusted-proxies", "10.0.0.0/33"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("10.0.0.0/33"), "{err}");
    }
}
