//! A topic the original Python app wrote (Avro, its nine-field schema, no
//! `event_id`), then `button` after the switch-over: the sink stores every press
//! exactly once, and still once after a second sink, in another group and without
//! the registry, has read the whole topic again into the same databases.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::common::kafka::{read_topic, wait_for_commits};
use crate::common::registry::start_registry;
use crate::env::{assert_stores_hold, env, presses, wait_for_total};
use button::kafka::admin::dead_letter_topic;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_apps_events_are_stored_once_also_when_a_second_sink_reads_them_again() {
    let Some(env) = env().await else { return };
    let registry = start_registry().await;
    let url = registry.url.clone();
    let mut events = env.produce_as_the_original(150, 41, &url).await;
    // After the switch-over `button` writes to the same topic, its schema
    // registered under the same subject.
    let ours = env
        .produce_with(
            30,
            42,
            0.0,
            &["--format", "avro", "--schema-registry-url", &url],
        )
        .await;
    events.extend(ours);
    let subjects: Vec<String> = registry
        .schemas
        .lock()
        .unwrap()
        .iter()
        .map(|(subject, _)| subject.clone())
        .collect();
    let subject = format!("{}-value", env.topic);
    assert_eq!(
        subjects,
        [subject.clone(), subject],
        "the original's, then ours"
    );

    let records = read_topic(
        &env.broker,
        &env.topic,
        events.len(),
        Duration::from_secs(30),
    );
    assert_eq!(records.len(), events.len());
    let mut last = BTreeMap::new();
    for r in &records {
        let o = last.entry(r.partition).or_insert(r.offset);
        *o = (*o).max(r.offset);
    }

    let (stop, sink) = env.spawn_sink(&["--schema-registry-url", &url]);
    wait_for_total(&env, presses(&events), Duration::from_secs(60)).await;
    stop.cancel();
    sink.await.unwrap().unwrap();
    assert_stores_hold(&env, &events).await;

    // A second sink, a group of its own, no registry (the original's records are
    // then read by their shape): every event is delivered again and written again.
    let group = format!("second-{}", uuid::Uuid::new_v4().simple());
    let stop = CancellationToken::new();
    let sink = tokio::spawn(button::sink::run(
        env.sink_args_in_group(&group, &[]),
        stop.clone(),
    ));
    wait_for_commits(
        &env.broker,
        &env.topic,
        &group,
        &last,
        Duration::from_secs(90),
    )
    .await;
    stop.cancel();
    sink.await.unwrap().unwrap();
    assert_stores_hold(&env, &events).await;

    let dead = read_topic(
        &env.broker,
        &dead_letter_topic(&env.topic),
        0,
        Duration::from_secs(10),
    );
    assert!(dead.is_empty(), "{} dead letters", dead.len());
}
