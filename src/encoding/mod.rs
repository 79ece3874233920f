//! Wire encodings of [`PressEvent`]: JSON, and Avro in the Confluent wire format.
//!
//! Both encode exactly the fields of the event; neither can see a client address,
//! because the event has none.

pub mod avro;
pub mod json;

use crate::domain::PressEvent;

/// Why bytes could not be turned back into an event.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
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

/// Encodes `event` as JSON.
pub fn to_json(event: &PressEvent) -> Vec<u8> {
    json::encode(event)
}
