//! Apache Kafka: connection settings, the producer behind `serve` and `generate`,
//! the schema registry client, and topic administration.
//!
//! Delivery contract of the producer: idempotent, `acks=all`, keyed by session id
//! (one session's events stay in order in one partition). A press is acknowledged
//! only once the broker has confirmed it; a failure is reported to the visitor and
//! never silently dropped. Duplicates are still possible end to end (a press the
//! visitor retried after a timeout may have landed), which is why every event
//! carries `event_id` and every store deduplicates on it.

pub mod admin;
pub mod config;
pub mod producer;
pub mod registry;

pub use config::KafkaArgs;
pub use producer::KafkaPublisher;
pub use registry::{RegistryArgs, SchemaRegistry};
