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
pub(crate) mod producer;
pub(crate) mod reader;
pub(crate) mod registry;

pub use client::{ConfigError, client_config};

use std::time::Duration;

use crate::domain::PressEvent;
use crate::encoding::{self, DecodeError};
use crate::retry::Backoff;

/// Decodes a message value of either encoding, fetching Avro writer schemas from
/// the registry when one is configured (else our own schema or the original app's
/// record is recognised by its shape). Used by everything that reads the topic:
/// `tail` and `sink`. The original app's events come with a derived `event_id`
/// ([`crate::encoding::original::event_id`]).
///
/// While the registry cannot be asked (down, overloaded, refusing our
/// credentials), this waits and asks again, with capped backoff, for as long as
/// it takes: a good event must not be called undecodable (and sent to the
/// dead-letter topic) because the registry was away. An unknown schema id is the
/// message's fault and an error at once.
pub async fn decode_value(
    bytes: &[u8],
    registry: Option<&SchemaRegistry>,
) -> Result<PressEvent, DecodeError> {
    if let (Some(0), Some(registry)) = (bytes.first(), registry) {
        let (id, _) = encoding::avro::unframe(bytes)?;
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let schema = loop {
            match registry.schema(id).await {
                Ok(schema) => break schema,
                Err(e) if e.is_transient() => {
                    let attempts = backoff.attempts();
                    // Every failure while few, then every tenth.
                    if attempts < 5 || attempts % 10 == 0 {
                        tracing::warn!(
                            schema_id = id,
                            attempts,
                            "cannot fetch the writer schema (waiting, then asking again): {:#}",
                            anyhow::Error::new(e)
                        );
                    }
                    // The generator is dropped before the wait: it cannot cross threads.
                    let delay = backoff.next_delay(&mut rand::rng());
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(DecodeError::Avro(format!("{:#}", anyhow::Error::new(e)))),
            }
        };
        return encoding::avro::decode(bytes, Some(&schema));
    }
    encoding::decode(bytes, None)
}
pub use producer::KafkaPublisher;
pub use registry::SchemaRegistry;
