//! Avro in the Confluent wire format, with the schema registered at start.

use std::sync::atomic::Ordering;
use std::time::Duration;

use reqwest::StatusCode;

use crate::common::app::test_args;
use crate::common::eventually;
use crate::common::kafka::{kafka_args, new_topic, read_topic};
use crate::common::registry::start_registry;
use crate::common::services;
use crate::common::spawn_app_with;
use button::encoding::{self, Format};
use button::kafka::SchemaRegistry;

#[tokio::test]
async fn avro_records_decode_with_the_schema_fetched_from_the_registry() {
    let Some(broker) = services::kafka() else {
        return;
    };
    let topic = new_topic(&broker).await;
    let registry = start_registry().await;
    let url = registry.url.clone();
    let app = spawn_app_with(|a| {
        a.kafka = kafka_args(&broker, &topic);
        a.format = Format::Avro;
        a.registry.url = Some(url.parse().unwrap());
    })
    .await;
    let mut v = app.visitor("81.2.69.142");
    let r = v.press().await;
    assert_eq!(r.status, StatusCode::OK);

    let subjects: Vec<_> = registry
        .schemas
        .lock()
        .unwrap()
        .iter()
        .map(|(s, _)| s.clone())
        .collect();
    assert_eq!(subjects, vec![format!("{topic}-value")]);

    let records = read_topic(&broker, &topic, 1, Duration::from_secs(20));
    assert_eq!(records.len(), 1);
    let bytes = &records[0].value;
    let (schema_id, _) = encoding::avro::unframe(bytes).unwrap();
    assert_eq!(schema_id, 100, "the id the registry returned");
    let client = SchemaRegistry::new(&registry.url.parse().unwrap()).unwrap();
    let writer = client.schema(schema_id).await.unwrap();
    let event = encoding::avro::decode(bytes, Some(&writer)).unwrap();
    assert_eq!(Some(event.event_id), r.event_id());
    assert_eq!(event.location.country_code, "GB");
    assert_eq!(event.session_id.to_string(), v.session_id());

    // The same event in JSON carries exactly the same fields and values.
    let via_json = encoding::json::decode(&encoding::json::encode(&event)).unwrap();
    assert_eq!(via_json, event);
    assert_eq!(
        button::kafka::decode_value(bytes, Some(&client))
            .await
            .unwrap(),
        event
    );
}

/// An event framed with a schema our stand-in registry knows, and the client.
async fn registered_event(
    registry: &crate::common::registry::Registry,
) -> (Vec<u8>, button::domain::PressEvent, SchemaRegistry) {
    let client = SchemaRegistry::new(&registry.url.parse().unwrap()).unwrap();
    let id = client
        .register("presses-value", encoding::avro::SCHEMA_JSON)
        .await
        .unwrap();
    let event = button::domain::PressEvent::new(
        button::domain::Action::PressButton,
        uuid::Uuid::new_v4(),
        button::domain::Location::unknown(),
        None,
        std::time::SystemTime::now(),
    );
    (encoding::avro::encode(&event, id), event, client)
}

#[tokio::test]
async fn while_the_registry_is_away_a_good_event_waits_instead_of_failing_to_decode() {
    let registry = start_registry().await;
    let (bytes, event, client) = registered_event(&registry).await;
    registry.unavailable.store(true, Ordering::SeqCst);
    let decoding =
        tokio::spawn(async move { button::kafka::decode_value(&bytes, Some(&client)).await });
    // Asked, refused, asked again: the decoder waits out the outage...
    eventually("two refused lookups", Duration::from_secs(10), async || {
        registry.unavailable_answers.load(Ordering::SeqCst) >= 2
    })
    .await;
    assert!(
        !decoding.is_finished(),
        "gave up during the outage: {:?}",
        decoding.await
    );
    // ...and decodes the event once the registry is back.
    registry.unavailable.store(false, Ordering::SeqCst);
    let decoded = tokio::time::timeout(Duration::from_secs(30), decoding)
        .await
        .expect("decoded after the registry came back")
        .unwrap()
        .unwrap();
    assert_eq!(decoded, event);
}

#[tokio::test]
async fn a_schema_id_the_registry_does_not_know_is_a_decode_error_at_once() {
    let registry = start_registry().await;
    let (mut bytes, _, client) = registered_event(&registry).await;
    bytes[1..5].copy_from_slice(&7777u32.to_be_bytes());
    let err = tokio::time::timeout(
        Duration::from_secs(5),
        button::kafka::decode_value(&bytes, Some(&client)),
    )
    .await
    .expect("no waiting for an unknown id")
    .unwrap_err();
    assert!(err.to_string().contains("Schema not found"), "{err}");
}

#[tokio::test]
async fn a_registry_that_refuses_the_schema_stops_the_start_with_its_reason() {
    let Some(broker) = services::kafka() else {
        return;
    };
    let topic = new_topic(&broker).await;
    let registry = start_registry().await;
    *registry.refuse.lock().unwrap() = true;
    let dir = tempfile::tempdir().unwrap();
    let mut args = test_args(dir.path());
    args.kafka = kafka_args(&broker, &topic);
    args.format = Format::Avro;
    args.registry.url = Some(registry.url.parse().unwrap());

    let err = button::web::Server::build(&args.config().unwrap())
        .await
        .err()
        .expect("start refused");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("Incompatible schema, compatibility_mode=BACKWARD"),
        "{msg}"
    );
    assert!(msg.contains(&format!("{topic}-value")), "{msg}");
}

#[tokio::test]
async fn avro_without_a_registry_is_a_clear_error() {
    let Some(broker) = services::kafka() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut args = test_args(dir.path());
    args.kafka = kafka_args(&broker, "whatever");
    args.format = Format::Avro;
    if std::env::var_os("SCHEMA_REGISTRY_URI").is_some() {
        return;
    }
    let err = button::web::Server::build(&args.config().unwrap())
        .await
        .err()
        .expect("start refused");
    assert!(
        format!("{err:#}").contains("--schema-registry-url"),
        "{err:#}"
    );
}
