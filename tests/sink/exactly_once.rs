//! Events through Kafka land exactly once in both stores, and every store's
//! statistics agree with the embedded store's for the same events.

use std::sync::Arc;
use std::time::Duration;

use button::domain::Action;
use button::stats::{StatsService, StatsSource};
use button::store::SqliteStore;

use crate::common::services::clickhouse_totals;
use crate::common::spawn_app_with_flags;
use crate::env::{assert_stores_hold, env, eventually, presses, wait_for_total};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_lands_once_in_both_stores_with_equal_per_country_counts() {
    let Some(env) = env().await else { return };
    let events = env.produce(300, 11).await;
    let (stop, sink) = env.spawn_sink(&[]);

    wait_for_total(&env, presses(&events), Duration::from_secs(60)).await;
    // Stopped cleanly, the sink has written everything it took (a duplicate
    // included), so the counts below are final.
    stop.cancel();
    sink.await.unwrap().unwrap();

    assert_stores_hold(&env, &events).await;
    // The sink settled ClickHouse's per-minute counts before it stopped, and
    // rolled their days up.
    for (table, key) in [
        ("presses_by_country_minute_totals", "minute"),
        ("presses_by_country_day_totals", "day"),
    ] {
        assert_eq!(
            clickhouse_totals(&env.ch_url, table, key).await,
            presses(&events),
            "{table}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_from_each_store_equal_the_embedded_answer_for_the_same_events() {
    let Some(env) = env().await else { return };
    let events = env.produce(120, 12).await;
    let (stop, sink) = env.spawn_sink(&[]);
    wait_for_total(&env, presses(&events), Duration::from_secs(60)).await;
    stop.cancel();
    sink.await.unwrap().unwrap();

    // The embedded store, given the same events.
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Arc::new(SqliteStore::open(dir.path(), 100_000).unwrap());
    for e in &events {
        button::publish::Publish::publish(sqlite.as_ref(), e.clone())
            .await
            .unwrap();
    }
    let sources: Vec<(&str, Arc<dyn StatsSource>)> = vec![
        ("embedded", sqlite.clone()),
        ("postgres", env.pg().await),
        ("clickhouse", env.ch().await),
    ];
    // A viewer in a session that pressed; "last hour" is from a fixed instant far
    // back, so the seeded events (event time 2025) count.
    let viewer = events
        .iter()
        .find(|e| e.action == Action::PressButton)
        .unwrap();
    let mut answers = Vec::new();
    for (name, source) in sources {
        let svc = StatsService::new(source.clone(), Duration::ZERO);
        let stats = svc
            .for_viewer(viewer.session_id, &viewer.location, 1)
            .await
            .unwrap();
        let since = source
            .country_presses_since(&viewer.location.country_code, 0)
            .await
            .unwrap();
        answers.push((name, serde_json::to_value(&stats).unwrap(), since));
    }
    assert_eq!(answers[0].1["total"], presses(&events));
    for (name, json, since) in &answers[1..] {
        assert_eq!(
            json, &answers[0].1,
            "{name} differs from the embedded store"
        );
        assert_eq!(since, &answers[0].2, "{name}: presses since the epoch");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presses_on_the_page_show_up_in_api_stats_read_from_each_store() {
    let Some(env) = env().await else { return };
    let (stop, sink) = env.spawn_sink(&[]);
    for (store, url) in [
        ("postgres", env.pg_url.clone()),
        ("clickhouse", env.ch_url.clone()),
    ] {
        let url_flag = format!("--{store}-url");
        let app = spawn_app_with_flags(&[
            "--kafka-brokers",
            &env.broker,
            "--topic",
            &env.topic,
            "--stats-from",
            store,
            &url_flag,
            &url,
        ])
        .await;
        let mut v = app.visitor("81.2.69.142");
        for _ in 0..3 {
            assert_eq!(v.press().await.status, reqwest::StatusCode::OK);
        }
        let want = if store == "postgres" { 3 } else { 6 }; // the second app adds 3 more
        eventually(
            "the presses in /api/stats",
            Duration::from_secs(30),
            async || {
                let s = v.stats().await;
                s["total"] == want && s["session"]["presses"] == 3
            },
        )
        .await;
        let s = v.stats().await;
        assert_eq!(s["your_country"]["country_code"], "GB", "{store}");
        assert_eq!(s["your_country"]["last_hour"], want, "{store}");
    }
    stop.cancel();
    sink.await.unwrap().unwrap();
}
