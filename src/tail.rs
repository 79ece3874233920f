//! `button tail`: prints the events in the topic, as readable lines or JSON.
//!
//! It assigns itself every partition at an explicit offset (the beginning, or the
//! end) instead of joining a consumer group, and never commits: it cannot move the
//! offsets of the sink or of anyone else.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use rdkafka::ClientContext;
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::domain::PressEvent;
use crate::encoding;
use crate::config::{KafkaArgs, RegistryArgs};
use crate::kafka::{SchemaRegistry, decode_value};

/// Settings of `button tail`.
#[derive(Debug, Clone, Args)]
pub struct TailArgs {
    /// Kafka connection.
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Schema registry, to decode Avro written with another schema version.
    #[command(flatten)]
    pub registry: RegistryArgs,

    /// Start at the oldest event instead of the end of the topic.
    #[arg(long)]
    pub from_beginning: bool,

    /// Keep waiting for new events instead of stopping at the end of the topic.
    #[arg(long, short = 'f')]
    pub follow: bool,

    /// Stop after this many events.
    #[arg(long)]
    pub max: Option<u64>,

    /// One JSON object per line instead of readable lines.
    #[arg(long)]
    pub json: bool,

    /// Without --follow, stop when no event arrived for this long (the end of the
    /// topic is also detected directly where the broker reports it).
    #[arg(long, default_value = "5s", value_parser = crate::config::parse::duration)]
    pub idle_timeout: Duration,
}

/// Reaching the end of a partition is how `tail` knows it is done, not an error
/// worth a log line; everything else is logged as usual.
pub struct QuietEof;

impl ClientContext for QuietEof {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(error, KafkaError::PartitionEOF(_)) {
            tracing::error!("librdkafka: {error}: {reason}");
        }
    }
}

impl ConsumerContext for QuietEof {}

/// One readable line for an event.
pub fn format_line(e: &PressEvent) -> String {
    let at = std::time::UNIX_EPOCH + Duration::from_micros(e.timestamp.max(0) as u64);
    let time = humantime::format_rfc3339_millis(at);
    let l = &e.location;
    let mut place = format!("{} {}", l.country_code, l.country_name);
    if !l.city_name.is_empty() {
        place.push_str(", ");
        place.push_str(&l.city_name);
    }
    format!(
        "{time} {:<11} {place:<30} session {}",
        e.action.as_str(),
        e.session_id
    )
}

/// `button tail`.
pub async fn run(args: TailArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let registry = args.registry.config().as_ref().map(SchemaRegistry::new);
    let kafka = args.kafka.require()?;
    let mut config = crate::kafka::client_config(&kafka)?;
    config
        // Required by librdkafka for a consumer; never joined, never committed.
        .set("group.id", format!("button-tail-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true");
    let consumer: StreamConsumer<QuietEof> = config.create_with_context(QuietEof)?;

    let topic = &kafka.topic;
    let md = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .context("cannot fetch metadata from the Kafka brokers")?;
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    anyhow::ensure!(
        !partitions.is_empty(),
        "topic {topic} does not exist (create it with `button migrate`)"
    );
    let start = if args.from_beginning {
        Offset::Beginning
    } else {
        Offset::End
    };
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        tpl.add_partition_offset(topic, *p, start)?;
    }
    consumer.assign(&tpl)?;

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut printed = 0u64;
    let mut at_end = std::collections::HashSet::new();
    loop {
        if args.max.is_some_and(|m| printed >= m) {
            break;
        }
        let wait = if args.follow {
            Duration::from_secs(3600)
        } else {
            args.idle_timeout
        };
        let msg = tokio::select! {
            () = shutdown.cancelled() => break,
            r = tokio::time::timeout(wait, consumer.recv()) => match r {
                Err(_) if args.follow => continue,
                Err(_) => break, // idle: the end of the topic
                Ok(m) => m,
            },
        };
        let msg = match msg {
            Ok(m) => m,
            Err(KafkaError::PartitionEOF(p)) => {
                at_end.insert(p);
                if !args.follow && at_end.len() == partitions.len() {
                    break;
                }
                continue;
            }
            Err(e) => return Err(e).context("cannot read from Kafka"),
        };
        at_end.remove(&msg.partition());
        let Some(bytes) = msg.payload() else { continue };
        match decode_value(bytes, registry.as_ref()).await {
            Ok(event) => {
                if args.json {
                    out.write_all(&encoding::json::encode(&event))?;
                    out.write_all(b"\n")?;
                } else {
                    writeln!(out, "{}", format_line(&event))?;
                }
                printed += 1;
            }
            Err(e) => tracing::warn!(
                partition = msg.partition(),
                offset = msg.offset(),
                "skipping an undecodable message: {e}"
            ),
        }
        if args.follow {
            out.flush()?;
        }
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_shows_time_action_place_and_session() {
        let e = crate::encoding::avro::tests::sample_event();
        let line = format_line(&e);
        assert!(
            line.starts_with("2023-06-29T00:53:20.000Z PressButton"),
            "{line}"
        );
        assert!(line.contains("GB United Kingdom, London"), "{line}");
        assert!(
            line.ends_with("session 67e55044-10b1-426f-9247-bb680e5fe0c8"),
            "{line}"
        );
    }
}
