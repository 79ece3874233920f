//! `button tail` over events the original Python app wrote: Avro with its
//! nine-field schema, no key, no `event_id`.

use std::process::Command;

use button::domain::PressEvent;

use crate::common::kafka::new_topic;
use crate::common::registry::start_registry;
use crate::common::{original, services};

// Multi-threaded: the registry double answers while the test waits for `tail`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_the_original_apps_events_with_the_same_derived_ids_every_time() {
    let Some(broker) = services::kafka() else {
        return;
    };
    let topic = new_topic(&broker).await;
    let registry = start_registry().await;
    let geo = button::geo::GeoDb::embedded().unwrap();
    let rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(5);
    let start = button::generate::default_start(Some(5));
    let mut events: Vec<PressEvent> = button::generate::SessionMaker::new(&geo, rng, start, 4)
        .take(8)
        .flat_map(|s| s.events)
        .map(|e| original::as_read(&e))
        .collect();
    original::produce(&broker, &topic, &registry.url, &events).await;
    events.sort_by_key(|e| e.event_id);
    let n = events.len().to_string();

    let tail = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_button"))
            .args(["tail", "--kafka-brokers", &broker, "--topic", &topic])
            .args(["--from-beginning", "--idle-timeout", "20s", "--max", &n])
            .args(extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        assert!(!stderr.contains("undecodable"), "{stderr}");
        String::from_utf8(out.stdout).unwrap()
    };
    let printed = |stdout: String| {
        let mut v: Vec<PressEvent> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        v.sort_by_key(|e| e.event_id);
        v
    };

    // With the writer schema from the registry, and without a registry (read by
    // its shape): the same events, with the ids the stores get too.
    let url = registry.url.as_str();
    let with_registry = printed(tail(&["--json", "--schema-registry-url", url]));
    assert_eq!(with_registry, events);
    assert_eq!(printed(tail(&["--json"])), events);

    let lines = tail(&["--schema-registry-url", url]);
    assert_eq!(lines.lines().count(), events.len(), "{lines}");
    assert!(lines.contains("PressButton"), "{lines}");
}
