//! JSON: one flat object per event, field names as in the Avro schema. The object
//! has exactly the event's columns ([`crate::domain::row::COLUMNS`]; a test checks
//! names, types and nulls), in the order its golden bytes pin.

use super::DecodeError;
use crate::domain::PressEvent;

/// Encodes an event as one JSON object.
pub fn encode(event: &PressEvent) -> Vec<u8> {
    serde_json::to_vec(event).expect("a PressEvent always serializes")
}

/// Decodes one JSON object.
pub fn decode(bytes: &[u8]) -> Result<PressEvent, DecodeError> {
    Ok(serde_json::from_slice(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::avro::tests::sample_event;

    #[test]
    fn json_golden_bytes() {
        let got = String::from_utf8(encode(&sample_event())).unwrap();
        let want = concat!(
            r#"{"event_id":"01890a5d-ac96-774b-bcce-b302099a8057","#,
            r#""session_id":"67e55044-10b1-426f-9247-bb680e5fe0c8","#,
            r#""timestamp":1688000000000000,"action":"PressButton","#,
            r#""country_code":"GB","country_name":"United Kingdom","#,
            r#""subdivision_name":"England","subdivision_code":"ENG","#,
            r#""city_name":"London","latitude":51.5142,"longitude":-0.0931,"cohort":0}"#
        );
        assert_eq!(got, want);
    }

    #[test]
    fn json_round_trips() {
        let e = sample_event();
        assert_eq!(decode(&encode(&e)).unwrap(), e);
    }

    #[test]
    fn objects_have_exactly_the_event_columns_with_their_types() {
        use crate::domain::Location;
        use crate::domain::row::{COLUMNS, ColumnType};
        let mut sparse = sample_event();
        sparse.location = Location::unknown();
        sparse.cohort = None;
        for (event, full) in [(sample_event(), true), (sparse, false)] {
            let v: serde_json::Value = serde_json::from_slice(&encode(&event)).unwrap();
            let object = v.as_object().unwrap();
            let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
            let mut names: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
            keys.sort_unstable();
            names.sort_unstable();
            assert_eq!(keys, names);
            for c in &COLUMNS {
                let value = &object[c.name];
                if value.is_null() {
                    assert!(c.nullable && !full, "{}: null", c.name);
                    continue;
                }
                let fits = match c.ty {
                    ColumnType::Uuid | ColumnType::Text => value.is_string(),
                    ColumnType::Int64 | ColumnType::Int32 => value.is_i64(),
                    ColumnType::Float64 => value.is_f64(),
                };
                assert!(fits, "{}: {value} is not a {:?}", c.name, c.ty);
            }
        }
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let err = decode(b"{\"event_id\": 3}").unwrap_err();
        assert!(
            err.to_string().starts_with("not a JSON press event"),
            "{err}"
        );
    }
}
