//! Typed settings, parsed once at the edge.
//!
//! Each connection has a clap flag group (`KafkaArgs`, `PgArgs`, `ChArgs`,
//! `RegistryArgs`: flags, `BUTTON_*` variables and the original app's variable
//! names, all read here in one pass) and a plain config struct (`KafkaConfig`,
//! `PgConfig`, ...) that the components take. Stores, the Kafka clients, the sink
//! and `tail` depend on the plain structs only, never on the command line.
//!
//! This module is a leaf: it depends on no other module of the crate except the
//! domain types it names.

mod clickhouse;
mod kafka;
pub(crate) mod parse;
mod postgres;
mod registry;
mod serve;
mod url;

pub use clickhouse::{ChArgs, ChConfig};
pub use kafka::{KafkaArgs, KafkaConfig, NoBrokers, SaslMechanism, Security};
pub use postgres::{PgArgs, PgConfig};
pub use registry::{RegistryArgs, RegistryConfig};
pub use serve::{
    EmbeddedConfig, KafkaPipelineConfig, LimitConfig, PipelineConfig, ServeConfig, SpoolConfig,
    StatsConfig,
};
pub use url::{CredentialedUrl, UrlError};
