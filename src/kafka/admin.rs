//! Topic administration for `button migrate`: create the topic when it is missing,
//! check it when it exists.

use std::time::Duration;

use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

use crate::config::KafkaConfig;

/// What `ensure_topic` found or did.
#[derive(Debug, PartialEq, Eq)]
pub enum TopicState {
    /// The topic was created.
    Created,
    /// It existed with this many partitions.
    Existed {
        /// Its partition count.
        partitions: usize,
    },
}

/// Creates `args.topic` with `partitions` and `replication` unless it exists.
pub async fn ensure_topic(
    args: &KafkaConfig,
    partitions: i32,
    replication: i32,
) -> anyhow::Result<TopicState> {
    ensure_named_topic(args, &args.topic, partitions, replication).await
}

/// The dead-letter topic of `topic`.
pub fn dead_letter_topic(topic: &str) -> String {
    format!("{topic}.dlq")
}

/// Creates `name` with `partitions` and `replication` unless it exists.
pub async fn ensure_named_topic(
    args: &KafkaConfig,
    name: &str,
    partitions: i32,
    replication: i32,
) -> anyhow::Result<TopicState> {
    let admin: AdminClient<DefaultClientContext> = super::client_config(args)?.create()?;
    if let Some(n) = partition_count(&admin, name)? {
        return Ok(TopicState::Existed { partitions: n });
    }
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(replication));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics([&topic], &opts)
        .await
        .with_context(|| format!("cannot create topic {name}"))?;
    for r in results {
        match r {
            Ok(_) => {}
            // Someone else created it meanwhile: that is what we wanted.
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => anyhow::bail!("cannot create topic {name}: {code}"),
        }
    }
    Ok(TopicState::Created)
}

fn partition_count(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
) -> anyhow::Result<Option<usize>> {
    let md = admin
        .inner()
        // All topics: asking for one by name can auto-create it on some brokers.
        .fetch_metadata(None, Duration::from_secs(10))
        .context("cannot fetch metadata from the Kafka brokers")?;
    Ok(md
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.partitions().len()))
}
