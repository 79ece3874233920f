//! The original Python app as a producer, for tests that read the events it left
//! in a topic: its schema as it registers it under `<topic>-value` (record named
//! after its hard-coded topic, field-level `logicalType`s and all), its framing
//! (byte 0, the schema id big-endian, the Avro body), no key, no `event_id` and no
//! coordinates. The bytes are built here with a generic Avro writer, not with
//! `button`'s encoder.

use std::collections::BTreeMap;
use std::time::Duration;

use apache_avro::Schema;
use apache_avro::types::Value;
use button::domain::PressEvent;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// The schema text the original app registers (its `json.dumps` of the record).
pub const SCHEMA: &str = r#"{"doc": "Web app interactions", "name": "button_presses", "type": "record", "fields": [{"name": "session_id", "type": "string", "logicalType": "uuid"}, {"name": "timestamp", "type": "long", "logicalType": "timestamp-millis"}, {"name": "action", "type": "string"}, {"name": "country_name", "type": "string"}, {"name": "country_code", "type": "string"}, {"name": "subdivision_name", "type": "string"}, {"name": "subdivision_code", "type": "string"}, {"name": "city_name", "type": "string"}, {"name": "cohort", "type": ["null", "int"], "default": null}]}"#;

/// `event` as the original app would have written it with schema `schema_id`:
/// its nine fields only.
pub fn frame(event: &PressEvent, schema_id: u32) -> Vec<u8> {
    let schema = Schema::parse_str(SCHEMA).unwrap();
    let l = &event.location;
    let s = |v: &str| Value::String(v.to_owned());
    let cohort = match event.cohort {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(c) => Value::Union(1, Box::new(Value::Int(c))),
    };
    let record = Value::Record(vec![
        ("session_id".into(), s(&event.session_id.to_string())),
        ("timestamp".into(), Value::Long(event.timestamp)),
        ("action".into(), s(event.action.as_str())),
        ("country_name".into(), s(&l.country_name)),
        ("country_code".into(), s(&l.country_code)),
        ("subdivision_name".into(), s(&l.subdivision_name)),
        ("subdivision_code".into(), s(&l.subdivision_code)),
        ("city_name".into(), s(&l.city_name)),
        ("cohort".into(), cohort),
    ]);
    let mut out = vec![0];
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend(apache_avro::to_avro_datum(&schema, record).unwrap());
    out
}

/// What the original app writes for `event`: the event without `event_id` and
/// coordinates, which it does not have (the id is what `button` derives).
pub fn as_read(event: &PressEvent) -> PressEvent {
    let mut e = event.clone();
    e.location.latitude = None;
    e.location.longitude = None;
    e.event_id = button::encoding::original::event_id(&e);
    e
}

/// Registers the original's schema under `<topic>-value` at `registry_url` as the
/// original app does, then produces `events` framed with the returned id, without
/// a key, each confirmed by the broker. Returns the last offset of each partition.
pub async fn produce(
    broker: &str,
    topic: &str,
    registry_url: &str,
    events: &[PressEvent],
) -> BTreeMap<i32, i64> {
    let registered: serde_json::Value = reqwest::Client::new()
        .post(format!("{registry_url}/subjects/{topic}-value/versions"))
        .json(&serde_json::json!({ "schema": SCHEMA }))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    let schema_id = u32::try_from(registered["id"].as_u64().unwrap()).unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .create()
        .unwrap();
    let sends = events.iter().map(|e| {
        let value = frame(e, schema_id);
        let producer = &producer;
        async move {
            producer
                .send(
                    FutureRecord::<(), _>::to(topic).payload(&value),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(e, _)| e)
                .expect("the broker takes the original's events")
        }
    });
    let mut last = BTreeMap::new();
    for delivery in futures::future::join_all(sends).await {
        let offset = last.entry(delivery.partition).or_insert(delivery.offset);
        *offset = (*offset).max(delivery.offset);
    }
    last
}
