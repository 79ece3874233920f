//! The live dashboard with Kafka: each `serve` reads the topic itself, so a
//! press taken by one instance reaches the dashboards of another.

use std::time::Duration;

use reqwest::StatusCode;

use crate::common::kafka::{kafka_args, new_topic};
use crate::common::live::LiveViewer;
use crate::common::{services, spawn_app_with};

#[tokio::test]
async fn a_press_on_one_instance_reaches_a_dashboard_on_another() {
    let Some(broker) = services::kafka() else {
        return;
    };
    let topic = new_topic(&broker).await;
    let watched = spawn_app_with(|a| a.kafka = kafka_args(&broker, &topic)).await;
    let pressed = spawn_app_with(|a| a.kafka = kafka_args(&broker, &topic)).await;

    let mut watcher = watched.visitor("8.8.8.8");
    watcher.get("/stats").await;
    let mut viewer = LiveViewer::connect(&watched, &watcher).await;
    viewer
        .wait_for("total", Duration::from_secs(10), |d| d == "0")
        .await;

    let mut presser = pressed.visitor("193.0.6.139"); // Netherlands
    for _ in 0..3 {
        assert_eq!(presser.press().await.status, StatusCode::OK);
    }

    let wait = Duration::from_secs(20);
    // In the order of the frame: total, table, ticker, legend, map.
    viewer.wait_for("total", wait, |d| d == "3").await;
    viewer
        .wait_for("ticker", wait, |d| d.contains("Netherlands"))
        .await;
    let map = viewer
        .wait_for("map", wait, |d| d.contains("\"NL\":[3,"))
        .await;
    assert!(map.data.contains("\"NL\":[3,5]"), "{}", map.data);
    // The viewer's own figures did not move: it pressed nothing.
    let mut own = Vec::new();
    while let Some(e) = viewer.next(Duration::from_millis(800)).await {
        if e.name == "session" {
            own.push(e.data);
        }
    }
    assert!(own.iter().all(|d| d == "0"), "{own:?}");
}
