//! What `button serve` runs behind its web tier, built from [`PipelineConfig`]:
//! where events go and where statistics come from.
//!
//! The event path is a stack of layers over the one [`Publish`] trait. Each layer
//! wraps the one below and is itself a `Publish`, so a new concern (metrics, a disk
//! spool for Kafka outages) is one more file here and one line in [`Pipeline::build`];
//! handlers and stores do not change. Outermost first:
//!
//! ```text
//! Tapped    broadcasts each event once the layers below have it (live views)
//! Metered   counts events by outcome, times the destination (`/metrics`)
//! Spooled   (Kafka only) keeps events on disk while the broker cannot take them
//! <dest>    the embedded SQLite store, or the Kafka producer
//! ```
//!
//! The live view follows what the stack commits: the tap in the embedded mode,
//! the topic itself with Kafka (see [`crate::live`]).
//!
//! Statistics come from one [`StatsService`] over one [`StatsSource`]: the embedded
//! store, the PostgreSQL or ClickHouse store the sink fills, or none. Store
//! connections are opened lazily, so `serve` starts while a statistics store is
//! down and uses it once it is back.

mod metered;
mod spool;
mod tap;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

pub use metered::Metered;
pub use spool::Spooled;
pub use tap::{Tap, Tapped};

use crate::config::{PipelineConfig, StatsConfig};
use crate::kafka::KafkaPublisher;
use crate::live::Source;
use crate::publish::Publish;
use crate::stats::{NotConfigured, StatsService, StatsSource};
use crate::store::SqliteStore;
use crate::store::clickhouse::ChStore;
use crate::store::postgres::PgStore;

/// How long the store-wide statistics are cached.
const STATS_TTL: Duration = Duration::from_secs(1);

/// The running event path and statistics.
pub struct Pipeline {
    /// Where events go: the top of the layer stack.
    pub publisher: Arc<dyn Publish>,
    /// Committed events, as they happen.
    pub tap: Tap,
    /// Statistics, cached.
    pub stats: Arc<StatsService>,
    /// Where the live view follows committed presses: the tap, or the topic.
    pub live: Source,
}

impl Pipeline {
    /// Opens the destination and the statistics source, and stacks the layers.
    pub async fn build(config: &PipelineConfig) -> anyhow::Result<Self> {
        let tap = Tap::new();
        let (destination, stats, live): (Arc<dyn Publish>, Arc<dyn StatsSource>, Source) =
            match config {
                PipelineConfig::Embedded(c) => {
                    let store = Arc::new(SqliteStore::open(&c.data_dir, c.queue_capacity)?);
                    tracing::info!(path = %store.path().display(), "embedded event store open");
                    // One store, two roles: the same `Arc` behind both trait objects.
                    (store.clone(), store, Source::Tap(tap.clone()))
                }
                PipelineConfig::Kafka(c) => {
                    let encoder =
                        crate::kafka::producer::encoder(c.format, &c.kafka, c.registry.as_ref())
                            .await?;
                    let producer =
                        Arc::new(KafkaPublisher::new(&c.kafka, encoder, c.delivery_timeout)?);
                    tracing::info!(topic = %c.kafka.topic, format = ?c.format, "producing events to Kafka");
                    let destination: Arc<dyn Publish> = match &c.spool {
                        None => producer,
                        Some(spool) => Arc::new(
                            Spooled::open(producer, &spool.dir, spool.max_bytes).with_context(
                                || format!("cannot open the spool in {}", spool.dir.display()),
                            )?,
                        ),
                    };
                    // Every instance follows the topic itself, so each sees every
                    // press, whichever instance took it.
                    let live = Source::Kafka(Box::new(c.clone()));
                    (destination, stats_source(&c.stats)?, live)
                }
            };
        let publisher = Arc::new(Tapped::new(Metered::new(destination), tap.clone()));
        Ok(Pipeline {
            publisher,
            tap,
            stats: Arc::new(StatsService::new(stats, STATS_TTL)),
            live,
        })
    }
}

/// The store `/stats` reads when events go to Kafka, set up without connecting.
fn stats_source(config: &StatsConfig) -> anyhow::Result<Arc<dyn StatsSource>> {
    Ok(match config {
        StatsConfig::None => Arc::new(NotConfigured),
        StatsConfig::Postgres(pg) => {
            let store = PgStore::new(pg)?;
            tracing::info!(target = store.target(), "statistics from PostgreSQL");
            Arc::new(store)
        }
        StatsConfig::Clickhouse(ch) => {
            let store = ChStore::new(ch)?;
            tracing::info!(target = store.target(), "statistics from ClickHouse");
            Arc::new(store)
        }
    })
}
