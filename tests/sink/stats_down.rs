//! `serve --stats-from postgres` with PostgreSQL down: it starts, records presses,
//! answers `/stats` with 503 and `/api/stats` with a JSON error, and uses the
//! database once it is up, without a restart.

use std::time::Duration;

use reqwest::StatusCode;
use tokio::net::TcpListener;

use crate::common::spawn_app_with_flags;
use crate::env::{env, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_starts_with_its_statistics_database_down_and_uses_it_once_it_is_up() {
    let Some(env) = env().await else { return };
    // An address where nothing listens yet; PostgreSQL "comes up" there later as a
    // forwarder to the real server.
    let parked = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = parked.local_addr().unwrap().port();
    drop(parked);
    let real = host_port(&env.pg_url);
    let down_url = env.pg_url.replacen(&real, &format!("127.0.0.1:{port}"), 1);

    let app = spawn_app_with_flags(&[
        "--kafka-brokers",
        &env.broker,
        "--topic",
        &env.topic,
        "--stats-from",
        "postgres",
        "--postgres-url",
        &down_url,
    ])
    .await;
    let mut visitor = app.visitor("81.2.69.142");
    let press = visitor.press().await;
    assert_eq!(press.status, StatusCode::OK, "{}", press.body);
    assert!(press.event_id().is_some());

    let page = visitor.get("/stats").await;
    assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        page.body.contains("Statistics are not available"),
        "{}",
        page.body
    );
    let api = visitor.get("/api/stats").await;
    assert_eq!(api.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(api.headers["content-type"], "application/json");
    let json: serde_json::Value = serde_json::from_str(&api.body).unwrap();
    assert_eq!(json["error"], "Statistics are not available");
    assert_eq!(json["status"], 503);

    // PostgreSQL is up at that address now.
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let real = real.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&real).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    eventually(
        "/api/stats to answer",
        Duration::from_secs(30),
        async || visitor.get("/api/stats").await.status == StatusCode::OK,
    )
    .await;
    let page = visitor.get("/stats").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
}

/// `host:port` of a `postgres://user@host:port/db` URL.
fn host_port(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, r)| r);
    let after_at = after_scheme
        .split_once('@')
        .map_or(after_scheme, |(_, r)| r);
    after_at.split('/').next().unwrap().to_owned()
}
