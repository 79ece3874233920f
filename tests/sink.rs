//! Sink tests against a real broker, PostgreSQL and ClickHouse, all started by
//! `scripts/test`. Every test works in a topic and databases of its own
//! ([`env::env`]). How a missing service is reported: see `common::services`.

mod common;

mod sink {
    pub mod env;
    mod exactly_once;
    mod faults;
    mod original;
    mod restarts;
    mod stats_down;
}

// The suites name their shared helpers `crate::env`.
use sink::env;
