//! Apache Kafka: client settings, the producer behind `serve` and `generate`,
//! the schema registry client, and topic administration.
//!
//! Delivery contract of the producer: idempotent, `acks=all`, keyed by session id
//! (one session's events stay in order in one partition). A press is acknowledged
//! only once the broker has confirmed it; a failure is reported to the visitor and
//! never silently dropped. Duplicates are still possible end to end (a press the
//! visitor retried after a timeout may have landed), which is why every event
//! carries `event_id` and every store deduplicates on it.

pub mod admin;
mod client;
pub mod producer;
pub mod reader;
pub mod registry;

pub use client::{ConfigError, client_config};

use crate::domain::PressEvent;
use crate::encoding::{self, DecodeError};

/// Decodes a message value of either encoding, fetching Avro writer schemas from
/// the registry when one is configured (else our own schema or the original app's
/// record is recognised by its shape). Used by everything that reads the topic:
/// `tail` and `sink`. The original app's events come with a derived `event_id`
/// ([`crate::encoding::original::event_id`]).
pub async fn decode_value(
    bytes: &[u8],
    registry: Option<&SchemaRegistry>,
) -> Result<PressEvent, DecodeError> {
    if let (Some(0), Some(registry)) = (bytes.first(), registry) {
        let (id, _) = encoding::avro::unframe(bytes)?;
        let schema = registry
            .schema(id)
            .await
            .map_err(|e| DecodeError::Avro(e.to_string()))?;
        return encoding::avro::decode(bytes, Some(&schema));
    }
    encoding::decode(bytes, None)
}
pub use producer::KafkaPublisher;
pub use registry::SchemaRegistry;
