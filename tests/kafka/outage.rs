//! The broker stops answering (frozen with SIGSTOP) while presses continue, then
//! comes back. A private broker is started for this, so freezing it disturbs no
//! other test; the memory-backed broker would lose its data if restarted instead.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::api::spawn_app_with;
use crate::helpers::{kafka_args, read_topic};

struct Broker {
    child: Child,
    addr: String,
}

impl Drop for Broker {
    fn drop(&mut self) {
        signal(&self.child, "CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

fn private_broker() -> Option<Broker> {
    let Ok(tansu) = std::env::var("BUTTON_TANSU") else {
        eprintln!("SKIPPED: BUTTON_TANSU is not set; run scripts/test to build the test broker");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new(&tansu)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("BUTTON_TANSU={tansu} does not start: {e}"));
    let addr = format!("127.0.0.1:{port}");
    for _ in 0..100 {
        if std::net::TcpStream::connect(&addr).is_ok() {
            return Some(Broker { child, addr });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the private broker did not start listening");
}

#[tokio::test]
async fn presses_fail_fast_while_the_broker_is_frozen_and_recover_without_a_restart() {
    let Some(broker) = private_broker() else {
        return;
    };
    let topic = "outage".to_owned();
    button::kafka::admin::ensure_topic(&kafka_args(&broker.addr, &topic).require().unwrap(), 3, 1)
        .await
        .unwrap();
    let app = Arc::new(
        spawn_app_with(|a| {
            a.kafka = kafka_args(&broker.addr, &topic);
            a.delivery_timeout = Duration::from_secs(2);
        })
        .await,
    );
    let mut v = app.visitor("8.8.8.8");
    let mut acked = Vec::new();
    for _ in 0..5 {
        let r = v.press().await;
        assert_eq!(r.status, StatusCode::OK);
        acked.push(r.event_id().unwrap());
    }

    signal(&broker.child, "STOP");
    let began = Instant::now();
    let r = v.press().await;
    let waited = began.elapsed();
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert!(r.body.contains("please try again"), "{}", r.body);
    assert!(waited < Duration::from_secs(5), "answered after {waited:?}");
    // More presses during the outage: all refused, none hang, the server stays up.
    for _ in 0..3 {
        assert_eq!(v.press().await.status, StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(
        v.get("/readyz").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(v.get("/healthz").await.status, StatusCode::OK);

    signal(&broker.child, "CONT");
    let back = Instant::now();
    loop {
        let r = v.press().await;
        if r.status == StatusCode::OK {
            acked.push(r.event_id().unwrap());
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(60),
            "presses did not recover"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for _ in 0..5 {
        let r = v.press().await;
        assert_eq!(r.status, StatusCode::OK);
        acked.push(r.event_id().unwrap());
    }
    let ready_by = Instant::now() + Duration::from_secs(15);
    while v.get("/readyz").await.status != StatusCode::OK {
        assert!(Instant::now() < ready_by, "/readyz did not recover");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let records = read_topic(&broker.addr, &topic, acked.len(), Duration::from_secs(30));
    let mut seen: HashMap<_, usize> = HashMap::new();
    for r in &records {
        *seen
            .entry(button::encoding::decode(&r.value, None).unwrap().event_id)
            .or_default() += 1;
    }
    for id in &acked {
        assert_eq!(
            seen.get(id),
            Some(&1),
            "acknowledged press {id} is in the topic exactly once"
        );
    }
}
