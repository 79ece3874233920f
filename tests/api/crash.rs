//! The real binary, killed with SIGKILL mid-stream: every acknowledged press is
//! in the store.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;

use crate::common::eventually;
use crate::common::process::ServerProcess;

#[tokio::test]
async fn every_acknowledged_press_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    // Sixteen clients pressing as fast as they can from one address: no limits.
    let mut server =
        ServerProcess::start(dir.path(), &[("BUTTON_PRESS_LIMIT_PER_ADDRESS", "0")]).await;
    let http = reqwest::Client::new();
    let acked = Arc::new(Mutex::new(HashSet::new()));

    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (http, url, acked) = (http.clone(), server.url("/press"), acked.clone());
            tokio::spawn(async move {
                // Press until the server dies under us.
                loop {
                    let res = http
                        .post(&url)
                        .header("hx-request", "true")
                        .header("x-forwarded-for", "81.2.69.142")
                        .send()
                        .await;
                    match res {
                        Ok(r) if r.status() == StatusCode::OK => {
                            let id = r.headers()["x-event-id"].to_str().unwrap().to_owned();
                            acked
                                .lock()
                                .unwrap()
                                .insert(id.parse::<uuid::Uuid>().unwrap());
                        }
                        Ok(r) => panic!("unexpected status {}", r.status()),
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    // Kill mid-stream: once presses are being acknowledged.
    eventually(
        "presses to be acknowledged",
        Duration::from_secs(60),
        async || acked.lock().unwrap().len() > 100,
    )
    .await;
    server.kill(); // SIGKILL: no chance to flush anything
    for t in tasks {
        t.await.unwrap();
    }

    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 100,
        "only {} presses before the kill",
        acked.len()
    );
    let stored: HashSet<_> = button::store::sqlite::read_all(&dir.path().join("events.sqlite3"))
        .unwrap()
        .into_iter()
        .map(|e| e.event_id)
        .collect();
    let lost: Vec<_> = acked.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged presses lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
}
