//! Avro with the Confluent wire format: byte 0, the schema id as 4 bytes big-endian,
//! then the Avro binary body. The schema lives in `schema/press_event.avsc`; its first
//! nine fields keep the original app's names and types, the new ones are nullable with
//! `null` defaults, so registries accept it as a compatible evolution.
//!
//! The original app's records (nine fields, no `event_id`) decode too: with their
//! writer schema from the registry, or without a registry by their shape (see
//! [`decode`]); they get the id [`super::original::event_id`] derives from them.

use std::sync::OnceLock;

use apache_avro::Schema;
use apache_avro::types::Value;
use uuid::Uuid;

use super::DecodeError;
use crate::domain::PressEvent;
use crate::domain::row::{self, COLUMN_COUNT, COLUMNS, Column, ColumnType, Row, wire_order};

/// The schema's JSON text, as registered with a schema registry.
pub const SCHEMA_JSON: &str = include_str!("../../schema/press_event.avsc");

/// The parsed schema.
pub fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| Schema::parse_str(SCHEMA_JSON).expect("schema/press_event.avsc is valid"))
}

const MAGIC: u8 = 0;

/// Encodes `event` framed with `schema_id`.
pub fn encode(event: &PressEvent, schema_id: u32) -> Vec<u8> {
    let body = apache_avro::to_avro_datum(schema(), to_value(event))
        .expect("a PressEvent always matches its schema");
    let mut out = Vec::with_capacity(5 + body.len());
    out.push(MAGIC);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Splits a framed message into its schema id and body.
pub fn unframe(bytes: &[u8]) -> Result<(u32, &[u8]), DecodeError> {
    match bytes {
        [MAGIC, a, b, c, d, body @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), body)),
        [_, _, _, _, _, ..] => Err(DecodeError::Framing("first byte is not the magic byte 0")),
        _ => Err(DecodeError::Framing("shorter than the 5-byte header")),
    }
}

/// Decodes a framed message written with `writer`, the schema its id names in the
/// registry (any schema whose fields resolve to ours). Without it, the body is
/// read as our schema, else as the original app's record: the two cannot be taken
/// for each other, because the original's body is ours without the last three
/// fields, so it must then be read to its last byte.
pub fn decode(bytes: &[u8], writer: Option<&Schema>) -> Result<PressEvent, DecodeError> {
    let (_id, body) = unframe(bytes)?;
    let value = match writer {
        Some(writer) => read(writer, body).map(|(value, _)| value),
        None => read(schema(), body)
            .map(|(value, _)| value)
            .or_else(|ours| match read(super::original::schema(), body) {
                Ok((value, [])) => Ok(value),
                _ => Err(ours),
            }),
    }?;
    from_value(value)
}

/// The record in `body` as `writer` wrote it, and the bytes after it. It is not
/// resolved to our schema: [`from_value`] takes its fields by name. The original
/// app's registered schema puts `logicalType`s on its fields (`uuid` on
/// `session_id`, `timestamp-millis` on a timestamp in microseconds), which the
/// Avro library applies, and which a resolution to our plain `string` and `long`
/// would refuse.
fn read<'a>(writer: &Schema, mut body: &'a [u8]) -> Result<(Value, &'a [u8]), DecodeError> {
    let value = apache_avro::from_avro_datum(writer, &mut body, None)
        .map_err(|e| DecodeError::Avro(e.to_string()))?;
    Ok((value, body))
}

/// The event as an Avro record: its columns in wire order, the optional ones as
/// `["null", T]` unions.
fn to_value(e: &PressEvent) -> Value {
    let row = e.row();
    Value::Record(
        wire_order()
            .map(|(i, column)| (column.name.to_owned(), to_avro(column, row.0[i])))
            .collect(),
    )
}

pub(super) fn to_avro(column: &Column, value: row::Value<'_>) -> Value {
    let plain = match value {
        row::Value::Null => Value::Null,
        row::Value::Uuid(u) => Value::String(u.to_string()),
        row::Value::Int64(n) => Value::Long(n),
        row::Value::Int32(n) => Value::Int(n),
        row::Value::Text(t) => Value::String(t.to_owned()),
        row::Value::Float64(x) => Value::Double(x),
    };
    match (column.optional_on_wire(), plain) {
        (false, plain) => plain,
        (true, Value::Null) => Value::Union(0, Box::new(Value::Null)),
        (true, plain) => Value::Union(1, Box::new(plain)),
    }
}

/// The event in a record, its fields taken by name. Fields a newer writer added
/// are ignored; logical types on the writer's fields count as their plain values
/// (a timestamp's number is kept as it is: the original's is in microseconds
/// whatever its annotation says); an `int` is widened to a `long` and a `float`
/// to a `double`, as Avro's resolution would. A record without `event_id` (the original app's) gets the id derived
/// from its original fields ([`super::original::event_id`]), so that every reader
/// gives it the same one; any other column it lacks is an error naming it.
fn from_value(value: Value) -> Result<PressEvent, DecodeError> {
    let Value::Record(fields) = value else {
        return Err(DecodeError::Avro("top-level value is not a record".into()));
    };
    let mut values = [row::Value::Null; COLUMN_COUNT];
    for (name, v) in &fields {
        let Some(i) = COLUMNS.iter().position(|c| c.name == name.as_str()) else {
            continue;
        };
        let v = match v {
            Value::Union(_, inner) => inner.as_ref(),
            other => other,
        };
        values[i] = match (COLUMNS[i].ty, v) {
            (ColumnType::Uuid, Value::String(s)) => {
                row::Value::Uuid(Uuid::parse_str(s).map_err(|e| DecodeError::Field {
                    field: COLUMNS[i].name,
                    reason: e.to_string(),
                })?)
            }
            (ColumnType::Uuid, Value::Uuid(u)) => row::Value::Uuid(*u),
            (
                ColumnType::Int64,
                Value::Long(n)
                | Value::TimestampMillis(n)
                | Value::TimestampMicros(n)
                | Value::TimestampNanos(n)
                | Value::LocalTimestampMillis(n)
                | Value::LocalTimestampMicros(n)
                | Value::LocalTimestampNanos(n),
            ) => row::Value::Int64(*n),
            (ColumnType::Int64, Value::Int(n)) => row::Value::Int64(i64::from(*n)),
            (ColumnType::Int32, Value::Int(n)) => row::Value::Int32(*n),
            (ColumnType::Text, Value::String(s)) => row::Value::Text(s),
            (ColumnType::Float64, Value::Double(x)) => row::Value::Float64(*x),
            (ColumnType::Float64, Value::Float(x)) => row::Value::Float64(f64::from(*x)),
            _ => row::Value::Null, // null, or a type our schema does not resolve to
        };
    }
    let id = COLUMNS
        .iter()
        .position(|c| c.name == "event_id")
        .expect("events have an event_id column");
    let derive_id = values[id] == row::Value::Null;
    if derive_id {
        // A placeholder, replaced below: the derived id needs the other fields.
        values[id] = row::Value::Uuid(Uuid::nil());
    }
    let mut event = PressEvent::from_row(&Row(values)).map_err(|e| DecodeError::Field {
        field: e.column,
        reason: e.reason,
    })?;
    if derive_id {
        event.event_id = super::original::event_id(&event);
    }
    Ok(event)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::{Action, Location};

    /// A fixed event for golden tests.
    pub(crate) fn sample_event() -> PressEvent {
        PressEvent {
            event_id: Uuid::parse_str("01890a5d-ac96-774b-bcce-b302099a8057").unwrap(),
            session_id: Uuid::parse_str("67e55044-10b1-426f-9247-bb680e5fe0c8").unwrap(),
            timestamp: 1_688_000_000_000_000,
            action: Action::PressButton,
            location: Location {
                country_code: "GB".into(),
                country_name: "United Kingdom".into(),
                subdivision_name: "England".into(),
                subdivision_code: "ENG".into(),
                city_name: "London".into(),
                latitude: Some(51.5142),
                longitude: Some(-0.0931),
            },
            cohort: Some(0),
        }
    }

    #[test]
    fn avro_golden_bytes() {
        let got = hex::encode(encode(&sample_event(), 7));
        let want = concat!(
            "0000000007", // magic, schema id 7
            "4836376535353034342d313062312d343236662d393234372d626236383065356665306338", // session_id
            "80808c86c4ceff05",               // timestamp (zigzag varint)
            "165072657373427574746f6e",       // "PressButton"
            "1c556e69746564204b696e67646f6d", // "United Kingdom"
            "0447420e456e676c616e6406454e47", // "GB", "England", "ENG"
            "0c4c6f6e646f6e",                 // "London"
            "0200",                           // cohort: union branch 1, int 0
            "02483031383930613564",           // event_id: branch 1, length 36, ...
            "2d616339362d373734622d626363652d623330323039396138303537",
            "0236cd3b4ed1c14940", // latitude: branch 1, 51.5142 little-endian
            "0213f241cf66d5b7bf", // longitude: -0.0931
        );
        assert_eq!(got, want);
    }

    #[test]
    fn avro_decodes_back_with_the_schema() {
        let e = sample_event();
        let bytes = encode(&e, 42);
        assert_eq!(unframe(&bytes).unwrap().0, 42);
        assert_eq!(decode(&bytes, None).unwrap(), e);
        // And with a plain generic reader, as any consumer would.
        let mut body = &bytes[5..];
        let v = apache_avro::from_avro_datum(schema(), &mut body, None).unwrap();
        let Value::Record(fields) = v else {
            panic!("not a record")
        };
        assert_eq!(
            fields[0],
            ("session_id".into(), Value::String(e.session_id.to_string()))
        );
    }

    #[test]
    fn unknown_location_and_null_cohort_round_trip() {
        let mut e = sample_event();
        e.location = Location::unknown();
        e.cohort = None;
        assert_eq!(decode(&encode(&e, 1), None).unwrap(), e);
    }

    #[test]
    fn bad_framing_is_a_clear_error() {
        assert!(matches!(
            decode(&[1, 0, 0, 0, 1, 2], None),
            Err(DecodeError::Framing(_))
        ));
        assert!(matches!(
            decode(&[0, 0], None),
            Err(DecodeError::Framing(_))
        ));
        assert!(matches!(
            decode(&[0, 0, 0, 0, 1, 0xff], None),
            Err(DecodeError::Avro(_))
        ));
    }

    use crate::encoding::original::tests::{
        LONDON_PRESS, OriginalFields, london_press_event, original_message,
    };

    #[test]
    fn the_original_apps_record_decodes_with_its_writer_schema_and_a_derived_id() {
        let bytes = original_message(&LONDON_PRESS, 3);
        let writer = crate::encoding::original::schema();
        let event = decode(&bytes, Some(writer)).unwrap();
        let want = london_press_event(crate::encoding::original::event_id(&event));
        assert_eq!(want.timestamp, 1_688_000_000_123_456);
        assert_eq!(event, want);
        assert_eq!(
            event.event_id.to_string(),
            "bf92ade3-1e45-5897-958e-fc9bfd5b328b"
        );
        // Read again (a redelivery, another sink, `tail`): the same id.
        assert_eq!(decode(&bytes, Some(writer)).unwrap(), event);
        // The schema id in the frame does not take part.
        assert_eq!(
            decode(&original_message(&LONDON_PRESS, 9), Some(writer))
                .unwrap()
                .event_id,
            event.event_id
        );
    }

    #[test]
    fn the_original_apps_record_decodes_without_a_registry_too() {
        let generated = OriginalFields {
            action: "EnterPage",
            country_name: "Unknown",
            country_code: "",
            subdivision_name: "",
            subdivision_code: "",
            city_name: "",
            cohort: None,
            ..LONDON_PRESS
        };
        for fields in [LONDON_PRESS, generated] {
            let bytes = original_message(&fields, 1);
            let with_registry = decode(&bytes, Some(crate::encoding::original::schema())).unwrap();
            assert_eq!(decode(&bytes, None).unwrap(), with_registry);
            assert_eq!(
                crate::encoding::decode(&bytes, None).unwrap(),
                with_registry
            );
        }
        let enter = decode(&original_message(&generated, 1), None).unwrap();
        assert_eq!(enter.action, Action::EnterPage);
        assert_eq!(enter.cohort, None);
        assert_eq!(enter.location.city_name, "");
    }

    #[test]
    fn our_events_keep_their_own_id_and_are_not_taken_for_the_originals() {
        let e = sample_event();
        assert_eq!(decode(&encode(&e, 1), None).unwrap().event_id, e.event_id);
        // The original's record followed by anything is neither its record nor ours.
        let mut bytes = original_message(&LONDON_PRESS, 1);
        bytes.push(0x02); // a stray byte after the original's record
        assert!(matches!(decode(&bytes, None), Err(DecodeError::Avro(_))));
    }

    #[test]
    fn an_original_record_with_a_bad_field_is_still_an_error_naming_it() {
        let bad = OriginalFields {
            action: "Jump",
            ..LONDON_PRESS
        };
        let err = decode(&original_message(&bad, 1), None).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::Field {
                    field: "action",
                    ..
                }
            ),
            "{err}"
        );
        let bad = OriginalFields {
            session_id: "not-a-uuid",
            ..LONDON_PRESS
        };
        let err = decode(&original_message(&bad, 1), None).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::Field {
                    field: "session_id",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn schema_keeps_the_original_fields_in_order() {
        let Schema::Record(r) = schema() else {
            panic!("not a record")
        };
        let names: Vec<_> = r.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            &names[..9],
            [
                "session_id",
                "timestamp",
                "action",
                "country_name",
                "country_code",
                "subdivision_name",
                "subdivision_code",
                "city_name",
                "cohort"
            ]
        );
    }
}
