//! Sink tests against a real broker, PostgreSQL and ClickHouse, all started by
//! `scripts/test` (`BUTTON_TEST_KAFKA`, `BUTTON_TEST_POSTGRES`,
//! `BUTTON_TEST_CLICKHOUSE`). Without them each test says it was skipped; with
//! them, an unreachable service fails the test.

#[path = "../api/helpers.rs"]
#[allow(dead_code)]
mod api;
mod env;
mod exactly_once;
mod faults;
#[path = "../kafka/helpers.rs"]
#[allow(dead_code)]
mod kafka;
mod stats_down;
