//! The original Python app's events: its nine-field Avro record (no `event_id`, no
//! coordinates), and the id such an event is given when it is read.
//!
//! Guarantee: [`event_id`] is a pure function of the event's nine original fields,
//! so every reader (a redelivery to the same sink, a second sink in another group,
//! `tail`) gives the same event the same id, and the stores, which deduplicate on
//! `event_id`, count it once.
//!
//! Why the record's content and not where it sits in the topic (topic, partition,
//! offset): the content is the same wherever the message is read, so the id also
//! survives a copy of the topic (MirrorMaker, a topic recreated and refilled) and
//! a producer retry that wrote the same record twice; and two different events can
//! never be handed one id because a topic was deleted and recreated, offsets then
//! starting again at 0. The limit: two events with identical fields (same session,
//! same microsecond, same action and place) are one event. The original stamps
//! every event with the microsecond it happened, so for it that is a duplicate, not
//! a second press; a visitor who presses twice makes two events with two ids.

use std::sync::OnceLock;

use apache_avro::Schema;
use apache_avro::types::Value;
use uuid::Uuid;

use crate::domain::PressEvent;
use crate::domain::row::{Origin, wire_order};

/// The original app's record, as it registers it: `schema/original_press_event.avsc`.
pub const SCHEMA_JSON: &str = include_str!("../../schema/original_press_event.avsc");

/// The parsed original schema.
pub fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        Schema::parse_str(SCHEMA_JSON).expect("schema/original_press_event.avsc is valid")
    })
}

/// The namespace of derived ids: the name-based (v5) UUID of the URL
/// `https://github.com/Aiven-Labs/kafka-button-app#button_presses` in the URL
/// namespace (a test checks it), so that anyone can recompute an id.
pub const ID_NAMESPACE: Uuid = Uuid::from_u128(0x43f3_87c9_2e80_52f1_b217_ae8d_d514_df00);

/// The id of an event that came without one: the name-based UUID (v5, SHA-1) in
/// [`ID_NAMESPACE`] of [`body`]. For a message the original app wrote, that is its
/// value after the 5-byte header, byte for byte.
pub fn event_id(event: &PressEvent) -> Uuid {
    Uuid::new_v5(&ID_NAMESPACE, &body(event))
}

/// The event's nine original fields, Avro-encoded with the original schema: what
/// the original app would have written for it (`event_id` and coordinates do not
/// take part).
pub fn body(event: &PressEvent) -> Vec<u8> {
    let row = event.row();
    let record = wire_order()
        .filter(|(_, c)| c.origin == Origin::Original)
        .map(|(i, c)| (c.name.to_owned(), super::avro::to_avro(c, row.0[i])))
        .collect();
    apache_avro::to_avro_datum(schema(), Value::Record(record))
        .expect("an event's original fields always match the original schema")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::{Action, Location};

    /// A message as the original app frames it: byte 0, `schema_id` big-endian,
    /// then the record, built here with a generic Avro writer and the original's
    /// schema (not with our encoder), the way its Python code fills it.
    pub(crate) fn original_message(fields: &OriginalFields, schema_id: u32) -> Vec<u8> {
        let cohort = match fields.cohort {
            None => Value::Union(0, Box::new(Value::Null)),
            Some(c) => Value::Union(1, Box::new(Value::Int(c))),
        };
        let s = |v: &str| Value::String(v.to_owned());
        let record = Value::Record(vec![
            ("session_id".into(), s(fields.session_id)),
            ("timestamp".into(), Value::Long(fields.timestamp)),
            ("action".into(), s(fields.action)),
            ("country_name".into(), s(fields.country_name)),
            ("country_code".into(), s(fields.country_code)),
            ("subdivision_name".into(), s(fields.subdivision_name)),
            ("subdivision_code".into(), s(fields.subdivision_code)),
            ("city_name".into(), s(fields.city_name)),
            ("cohort".into(), cohort),
        ]);
        let mut out = vec![0];
        out.extend_from_slice(&schema_id.to_be_bytes());
        out.extend(apache_avro::to_avro_datum(schema(), record).unwrap());
        out
    }

    /// The original's nine fields, as its Python code holds them.
    #[derive(Clone, Copy)]
    pub(crate) struct OriginalFields {
        pub session_id: &'static str,
        pub timestamp: i64,
        pub action: &'static str,
        pub country_name: &'static str,
        pub country_code: &'static str,
        pub subdivision_name: &'static str,
        pub subdivision_code: &'static str,
        pub city_name: &'static str,
        pub cohort: Option<i32>,
    }

    /// The schema text the original app registers: field-level `logicalType`s and
    /// all (its `timestamp` says millis and holds microseconds).
    pub(crate) const REGISTERED_JSON: &str = r#"{"doc": "Web app interactions", "name": "button_presses", "type": "record", "fields": [{"name": "session_id", "type": "string", "logicalType": "uuid"}, {"name": "timestamp", "type": "long", "logicalType": "timestamp-millis"}, {"name": "action", "type": "string"}, {"name": "country_name", "type": "string"}, {"name": "country_code", "type": "string"}, {"name": "subdivision_name", "type": "string"}, {"name": "subdivision_code", "type": "string"}, {"name": "city_name", "type": "string"}, {"name": "cohort", "type": ["null", "int"], "default": null}]}"#;

    pub(crate) const LONDON_PRESS: OriginalFields = OriginalFields {
        session_id: "67e55044-10b1-426f-9247-bb680e5fe0c8",
        timestamp: 1_688_000_000_123_456,
        action: "PressButton",
        country_name: "United Kingdom",
        country_code: "GB",
        subdivision_name: "England",
        subdivision_code: "ENG",
        city_name: "London",
        cohort: Some(0),
    };

    #[test]
    fn the_namespace_is_the_documented_name_based_uuid() {
        let url = "https://github.com/Aiven-Labs/kafka-button-app#button_presses";
        assert_eq!(
            ID_NAMESPACE,
            Uuid::new_v5(&Uuid::NAMESPACE_URL, url.as_bytes())
        );
    }

    #[test]
    fn our_schema_names_the_original_record_as_an_alias() {
        // Registries check record names: the alias lets ours follow the original's.
        let ours: serde_json::Value =
            serde_json::from_str(crate::encoding::avro::SCHEMA_JSON).unwrap();
        let original: serde_json::Value = serde_json::from_str(SCHEMA_JSON).unwrap();
        assert_eq!(ours["aliases"], serde_json::json!([original["name"]]));
    }

    #[test]
    fn the_body_is_what_the_original_app_writes() {
        let bytes = original_message(&LONDON_PRESS, 1);
        let registered = Schema::parse_str(REGISTERED_JSON).unwrap();
        let event = crate::encoding::avro::decode(&bytes, Some(&registered)).unwrap();
        assert_eq!(
            event.timestamp, LONDON_PRESS.timestamp,
            "microseconds, as written"
        );
        assert_eq!(event.session_id.to_string(), LONDON_PRESS.session_id);
        assert_eq!(
            crate::encoding::avro::decode(&bytes, Some(schema())).unwrap(),
            event
        );
        assert_eq!(body(&event), &bytes[5..]);
        assert_eq!(event.event_id, Uuid::new_v5(&ID_NAMESPACE, &bytes[5..]));
        assert_eq!(event.event_id.get_version_num(), 5);
    }

    /// [`LONDON_PRESS`] as the event it decodes to, with `event_id`.
    pub(crate) fn london_press_event(event_id: Uuid) -> PressEvent {
        PressEvent {
            event_id,
            session_id: Uuid::parse_str(LONDON_PRESS.session_id).unwrap(),
            timestamp: LONDON_PRESS.timestamp,
            action: Action::PressButton,
            location: Location {
                country_code: "GB".into(),
                country_name: "United Kingdom".into(),
                subdivision_name: "England".into(),
                subdivision_code: "ENG".into(),
                city_name: "London".into(),
                latitude: None,
                longitude: None,
            },
            cohort: Some(0),
        }
    }

    #[test]
    fn the_id_depends_on_the_original_fields_only() {
        let event = london_press_event(Uuid::nil());
        let id = event_id(&event);
        // Deterministic, and fixed forever: stores already hold ids made this way.
        // (Computed apart from this code, with Python's hashlib over the body.)
        assert_eq!(id, event_id(&event.clone()));
        assert_eq!(id.to_string(), "bf92ade3-1e45-5897-958e-fc9bfd5b328b");
        // Neither the id field nor the coordinates take part...
        let mut other = event.clone();
        other.event_id = Uuid::new_v4();
        other.location.latitude = Some(51.5);
        assert_eq!(event_id(&other), id);
        // ...every original field does.
        let changes: [fn(&mut PressEvent); 5] = [
            |e| e.timestamp += 1,
            |e| e.action = Action::EnterPage,
            |e| e.location.city_name.clear(),
            |e| e.cohort = None,
            |e| e.session_id = Uuid::from_u128(1),
        ];
        for change in changes {
            let mut e = event.clone();
            change(&mut e);
            assert_ne!(event_id(&e), id);
        }
    }
}
