//! `button migrate`: creates what the pipeline needs, or checks that it is there:
//! the Kafka topic, and the PostgreSQL and ClickHouse schemas (versioned). Safe to
//! run twice, and concurrently.

use clap::Args;

use crate::config::{ChArgs, KafkaArgs, PgArgs};
use crate::kafka::admin::{TopicState, dead_letter_topic, ensure_named_topic, ensure_topic};
use crate::store::clickhouse::ChStore;
use crate::store::postgres::PgStore;

/// Settings of `button migrate`.
#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// Kafka connection: the topic (and its dead-letter topic `<topic>.dlq`) are
    /// created when missing.
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Partitions of a new topic (the sink scales up to this many members).
    #[arg(long, default_value_t = 3)]
    pub partitions: i32,

    /// Replication factor of a new topic (use 2 or 3 on a managed cluster).
    #[arg(long, default_value_t = 1)]
    pub replication_factor: i32,

    /// PostgreSQL: the schema is created or upgraded.
    #[command(flatten)]
    pub postgres: PgArgs,

    /// ClickHouse: the schema is created or upgraded.
    #[command(flatten)]
    pub clickhouse: ChArgs,
}

/// `button migrate`.
pub async fn run(args: MigrateArgs) -> anyhow::Result<()> {
    let mut did_something = false;
    if let Some(kafka) = args.kafka.config() {
        did_something = true;
        let topic = &kafka.topic;
        let dlq = dead_letter_topic(topic);
        match ensure_named_topic(&kafka, &dlq, 1, args.replication_factor).await? {
            TopicState::Created => tracing::info!(topic = %dlq, "dead-letter topic created"),
            TopicState::Existed { .. } => tracing::info!(topic = %dlq, "dead-letter topic exists"),
        }
        match ensure_topic(&kafka, args.partitions, args.replication_factor).await? {
            TopicState::Created => tracing::info!(
                %topic,
                partitions = args.partitions,
                replication = args.replication_factor,
                "topic created"
            ),
            TopicState::Existed { partitions } if partitions as i32 != args.partitions => {
                tracing::warn!(
                    %topic,
                    partitions,
                    asked = args.partitions,
                    "topic exists with a different partition count; left as it is"
                )
            }
            TopicState::Existed { partitions } => {
                tracing::info!(%topic, partitions, "topic exists")
            }
        }
    }
    if let Some(pg) = args.postgres.config() {
        did_something = true;
        PgStore::connect(&pg).await?.migrate().await?;
        tracing::info!("PostgreSQL schema is up to date");
    }
    if let Some(ch) = args.clickhouse.config() {
        did_something = true;
        ChStore::connect(&ch).await?.migrate().await?;
        tracing::info!("ClickHouse schema is up to date");
    }
    anyhow::ensure!(
        did_something,
        "nothing to migrate: pass --kafka-brokers, --postgres-url and/or --clickhouse-url"
    );
    Ok(())
}
