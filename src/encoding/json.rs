//! JSON: one flat object per event, field names as in the Avro schema.

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
    fn garbage_is_a_clear_error() {
        let err = decode(b"{\"event_id\": 3}").unwrap_err();
        assert!(
            err.to_string().starts_with("not a JSON press event"),
            "{err}"
        );
    }
}
