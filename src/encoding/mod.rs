//! Wire encodings of [`PressEvent`]: JSON, and Avro in the Confluent wire format.
//!
//! Both encode exactly the fields of the event; neither can see a client address,
//! because the event has none. [`original`] reads the original app's Avro records
//! (no `event_id`) and derives their ids.

pub mod avro;
pub mod json;
pub mod original;

use crate::domain::PressEvent;

/// Why bytes could not be turned back into an event.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// No bytes at all.
    #[error("empty message")]
    Empty,
    /// Not JSON, or not an event.
    #[error("not a JSON press event: {0}")]
    Json(#[from] serde_json::Error),
    /// Too short, or does not start with the Confluent magic byte 0.
    #[error("not in the Confluent wire format: {0}")]
    Framing(&'static str),
    /// The Avro body does not match the schema.
    #[error("Avro body does not decode: {0}")]
    Avro(String),
    /// Decoded, but a field has a value no event can have.
    #[error("field `{field}` is invalid: {reason}")]
    Field {
        /// Which field.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

/// Which encoding a message uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object.
    Json,
    /// Avro, Confluent framing (magic 0, 4-byte schema id, body).
    Avro,
}

/// How events are written to Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoder {
    /// JSON objects.
    Json,
    /// Avro, framed with the id the registry gave our schema.
    Avro {
        /// Registry id of `schema/press_event.avsc`.
        schema_id: u32,
    },
}

impl Encoder {
    /// The message value for `event`.
    pub fn encode(&self, event: &PressEvent) -> Vec<u8> {
        match self {
            Encoder::Json => json::encode(event),
            Encoder::Avro { schema_id } => avro::encode(event, *schema_id),
        }
    }
}

/// Decodes a message value of either encoding: Confluent-framed Avro starts with
/// byte 0, JSON with `{`. `writer` is the Avro writer schema, when known.
pub fn decode(
    bytes: &[u8],
    writer: Option<&apache_avro::Schema>,
) -> Result<PressEvent, DecodeError> {
    match bytes.first() {
        Some(0) => avro::decode(bytes, writer),
        _ => json::decode(bytes),
    }
}

#[cfg(test)]
mod properties {
    use super::*;

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_what_decodes_encodes_back_the_same(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400),
        ) {
            for framed in [bytes.clone(), [&[0u8][..], &bytes].concat()] {
                if let Ok(event) = decode(&framed, None) {
                    // Nothing is made up: the event is exactly what its own encoding says.
                    proptest::prop_assert_eq!(json::decode(&json::encode(&event)).unwrap(), event);
                }
            }
        }

        #[test]
        fn json_that_looks_like_an_event_but_is_not_one_is_refused(
            field in "[a-z_]{1,20}",
            value in proptest::prelude::any::<i64>(),
        ) {
            let text = format!("{{\"{field}\": {value}}}");
            proptest::prop_assert!(json::decode(text.as_bytes()).is_err());
        }
    }
}
