//! Pipeline tests against a real Kafka-protocol broker: the one `scripts/test`
//! starts (`BUTTON_TEST_KAFKA`), and for the outage test a private one started
//! from `BUTTON_TANSU`. How a missing broker is reported: see `common::services`.

mod common;

mod kafka {
    mod avro;
    mod generate;
    mod live;
    mod original;
    mod outage;
    mod produce;
    mod tls;
}
