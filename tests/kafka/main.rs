//! Pipeline tests against a real Kafka-protocol broker: the one `scripts/test`
//! starts (`BUTTON_TEST_KAFKA=host:port`), and for the outage test a private one
//! started from `BUTTON_TANSU`. Without those variables (a bare `cargo test`) each
//! test says it was skipped; when they are set, an unreachable broker fails.

#[path = "../api/helpers.rs"]
#[allow(dead_code)]
mod api;
mod avro;
mod generate;
mod helpers;
mod outage;
mod produce;
