//! `button migrate`: creates what the pipeline needs, or checks that it is there.
//! Safe to run twice, and concurrently.

use clap::Args;

use crate::kafka::KafkaArgs;
use crate::kafka::admin::{TopicState, ensure_topic};

/// Settings of `button migrate`.
#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// Kafka connection: the topic is created when missing.
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Partitions of a new topic (the sink scales up to this many members).
    #[arg(long, default_value_t = 3)]
    pub partitions: i32,

    /// Replication factor of a new topic (use 2 or 3 on a managed cluster).
    #[arg(long, default_value_t = 1)]
    pub replication_factor: i32,
}

/// `button migrate`.
pub async fn run(args: MigrateArgs) -> anyhow::Result<()> {
    let mut did_something = false;
    if args.kafka.brokers().is_some() {
        did_something = true;
        let topic = &args.kafka.topic;
        match ensure_topic(&args.kafka, args.partitions, args.replication_factor).await? {
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
    anyhow::ensure!(
        did_something,
        "nothing to migrate: pass --kafka-brokers HOST:PORT"
    );
    Ok(())
}
