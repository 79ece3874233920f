//! The one way the app reads the topic: `tail`, the sink, and live views.
//!
//! A [`Reader`] is either a member of a consumer group ([`Reader::group`]: the
//! caller stores the offsets of what it has finished with, and librdkafka commits
//! stored offsets in the background), or a reader of every partition from the
//! beginning or the end that belongs to no group and never commits
//! ([`Reader::unmanaged`]: it cannot disturb anyone's offsets). Every message
//! comes out as a [`Record`]: where it was, its raw bytes, and the decoded event
//! or why it does not decode (JSON, or Avro with writer schemas from the registry;
//! the original app's events, which have no `event_id`, with the one derived from
//! their content, so it does not depend on where or by whom they are read).

use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use super::{ConfigError, SchemaRegistry, client_config, decode_value};
use crate::config::KafkaConfig;
use crate::domain::PressEvent;
use crate::encoding::DecodeError;

/// Where an unmanaged reader starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The oldest message still in the topic.
    Beginning,
    /// Only messages written from now on.
    End,
}

/// How a group member behaves.
#[derive(Debug, Clone)]
pub struct GroupOptions {
    /// The consumer group.
    pub group: String,
    /// A stable identity (`group.instance.id`, static membership): a restarted
    /// member with the same id takes its partitions back at once.
    pub instance_id: Option<String>,
    /// How long the group waits for a silent member before giving its partitions
    /// to the others.
    pub session_timeout: Duration,
}

/// One message from the topic.
#[derive(Debug)]
pub struct Record {
    /// Its partition.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// The raw key.
    pub key: Option<Vec<u8>>,
    /// The raw value.
    pub value: Option<Vec<u8>>,
    /// The event, or why the value is not one.
    pub event: Result<PressEvent, DecodeError>,
}

impl Record {
    /// Bytes of the value.
    pub fn len(&self) -> usize {
        self.value.as_ref().map_or(0, Vec::len)
    }
}

/// What reading gave.
#[derive(Debug)]
pub enum Next {
    /// A message.
    Record(Record),
    /// The reader reached the end of this partition (unmanaged readers only).
    EndOfPartition(i32),
}

/// A consumer of the events' topic.
pub struct Reader<C: ConsumerContext + 'static> {
    consumer: StreamConsumer<C>,
    registry: Option<SchemaRegistry>,
    topic: String,
    /// A message taken from the consumer whose decoding was interrupted (see
    /// [`Reader::next`]); the next call decodes it first.
    pending: Mutex<Option<Raw>>,
}

/// A message as it came, before decoding.
struct Raw {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
}

/// Holds a message while it is decoded; puts it back into the reader's pending
/// slot if the decoding is dropped half way (the caller's timeout or `select!`).
struct Decoding<'a> {
    slot: &'a Mutex<Option<Raw>>,
    raw: Option<Raw>,
}

impl Drop for Decoding<'_> {
    fn drop(&mut self) {
        if let Some(raw) = self.raw.take() {
            *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(raw);
        }
    }
}

impl<C: ConsumerContext + 'static> Reader<C> {
    /// A member of consumer group `options.group`, subscribed to the topic. Offsets
    /// are stored by the caller ([`Reader::store_offset`]) once it is done with a
    /// message, and committed every second; a new group starts at the beginning.
    pub fn group(
        kafka: &KafkaConfig,
        registry: Option<SchemaRegistry>,
        options: &GroupOptions,
        context: C,
    ) -> anyhow::Result<Self> {
        let consumer: StreamConsumer<C> =
            group_config(kafka, options)?.create_with_context(context)?;
        consumer
            .subscribe(&[&kafka.topic])
            .with_context(|| format!("cannot subscribe to {}", kafka.topic))?;
        Ok(Reader {
            consumer,
            registry,
            topic: kafka.topic.clone(),
            pending: Mutex::new(None),
        })
    }

    /// A reader of every partition from `start`, in no group, never committing.
    /// It reports the end of each partition ([`Next::EndOfPartition`]).
    pub fn unmanaged(
        kafka: &KafkaConfig,
        registry: Option<SchemaRegistry>,
        start: Start,
        context: C,
    ) -> anyhow::Result<Self> {
        let mut config = client_config(kafka)?;
        config
            // Required by librdkafka for a consumer; never joined, never committed.
            .set(
                "group.id",
                format!("button-reader-{}", uuid::Uuid::new_v4()),
            )
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true");
        let consumer: StreamConsumer<C> = config.create_with_context(context)?;
        let topic = &kafka.topic;
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
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
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            let offset = match start {
                Start::Beginning => Offset::Beginning,
                // Resolved now rather than at the first fetch: whatever is written
                // after this call returns is read.
                Start::End => {
                    let (_, high) = consumer
                        .fetch_watermarks(topic, *p, Duration::from_secs(10))
                        .with_context(|| format!("cannot find the end of {topic}/{p}"))?;
                    Offset::Offset(high)
                }
            };
            tpl.add_partition_offset(topic, *p, offset)?;
        }
        consumer.assign(&tpl)?;
        Ok(Reader {
            consumer,
            registry,
            topic: topic.clone(),
            pending: Mutex::new(None),
        })
    }

    /// The next message, decoded.
    ///
    /// Cancel safe: a message is taken from the consumer only inside this call,
    /// and one whose decoding is interrupted (the decoder may wait for the schema
    /// registry) is kept and returned by the next call, so a caller that drops
    /// this future (a timeout, a `select!`) loses nothing and skips nothing.
    pub async fn next(&self) -> Result<Next, KafkaError> {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let raw = match pending {
            Some(raw) => raw,
            None => {
                let msg = match self.consumer.recv().await {
                    Ok(m) => m,
                    Err(KafkaError::PartitionEOF(p)) => return Ok(Next::EndOfPartition(p)),
                    Err(e) => return Err(e),
                };
                Raw {
                    partition: msg.partition(),
                    offset: msg.offset(),
                    key: msg.key().map(<[u8]>::to_vec),
                    value: msg.payload().map(<[u8]>::to_vec),
                }
            }
        };
        let mut decoding = Decoding {
            slot: &self.pending,
            raw: Some(raw),
        };
        let value = decoding.raw.as_ref().and_then(|r| r.value.as_deref());
        let event = match value {
            None | Some([]) => Err(DecodeError::Empty),
            Some(bytes) => decode_value(bytes, self.registry.as_ref()).await,
        };
        let Raw {
            partition,
            offset,
            key,
            value,
        } = decoding.raw.take().expect("taken only here");
        Ok(Next::Record(Record {
            partition,
            offset,
            key,
            value,
            event,
        }))
    }

    /// Marks the message at `partition`/`offset` as finished with: auto-commit
    /// commits it (librdkafka stores `offset + 1`, the next message to read). Fails
    /// when the partition has moved to another member, which then reads it again.
    pub fn store_offset(&self, partition: i32, offset: i64) -> KafkaResult<()> {
        self.consumer.store_offset(&self.topic, partition, offset)
    }

    /// Commits the stored offsets now and waits for the broker; nothing stored
    /// since the last commit is no error.
    pub fn commit_stored(&self) -> KafkaResult<()> {
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
            other => other,
        }
    }

    /// Leaves the consumer group (its partitions move to the other members now,
    /// not after the session timeout).
    pub fn leave(&self) {
        self.consumer.unsubscribe();
    }

    /// The error that stopped the client for good (a fenced static member, say).
    pub fn fatal_error(&self) -> Option<(RDKafkaErrorCode, String)> {
        self.consumer.client().fatal_error()
    }

    /// Partitions of the topic this reader was assigned, as far as it knows.
    pub fn partition_count(&self) -> usize {
        self.consumer
            .assignment()
            .map(|a| a.elements_for_topic(&self.topic).len())
            .unwrap_or(0)
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The consumer context given at creation (rebalance callbacks see it).
    pub fn context(&self) -> &C {
        self.consumer.context()
    }
}

/// The settings of a group member: see [`Reader::group`].
fn group_config(kafka: &KafkaConfig, options: &GroupOptions) -> Result<ClientConfig, ConfigError> {
    let mut config = client_config(kafka)?;
    config
        .set("group.id", &options.group)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        // Offsets are stored by hand, after the caller is done with the message.
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set(
            "session.timeout.ms",
            options.session_timeout.as_millis().to_string(),
        )
        // librdkafka's rule of thumb: a third of the session timeout or less.
        .set(
            "heartbeat.interval.ms",
            (options.session_timeout.as_millis() / 5)
                .max(100)
                .to_string(),
        );
    if let Some(id) = &options.instance_id {
        config.set("group.instance.id", id);
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(instance_id: Option<&str>) -> GroupOptions {
        GroupOptions {
            group: "g".into(),
            instance_id: instance_id.map(str::to_owned),
            session_timeout: Duration::from_secs(10),
        }
    }

    #[test]
    fn an_instance_id_makes_a_static_member() {
        let kafka = KafkaConfig::plaintext("localhost:9092", "t");
        let config = group_config(&kafka, &options(Some("sink-0"))).unwrap();
        assert_eq!(config.get("group.instance.id"), Some("sink-0"));
        assert_eq!(config.get("session.timeout.ms"), Some("10000"));
        assert_eq!(config.get("heartbeat.interval.ms"), Some("2000"));
        assert_eq!(config.get("enable.auto.offset.store"), Some("false"));
    }

    #[test]
    fn without_an_instance_id_a_member_is_dynamic() {
        let kafka = KafkaConfig::plaintext("localhost:9092", "t");
        let config = group_config(&kafka, &options(None)).unwrap();
        assert_eq!(config.get("group.instance.id"), None);
    }
}

/// Reaching the end of a partition is how an unmanaged reader (`tail`, `analyze`) knows it is done, not an error
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
