//! The broker stops answering (frozen with SIGSTOP) while presses continue, then
//! comes back. A private broker is started for this, so freezing it disturbs no
//! other test; the memory-backed broker would lose its data if restarted instead.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::common::kafka::{kafka_args, read_topic};
use crate::common::{eventually, free_port, listens_on, services, spawn_app_with};

/// A Tansu broker of one test's own, frozen and thawed with signals.
struct Broker {
    child: Child,
    addr: String,
}

impl Broker {
    /// Stops the broker (SIGSTOP) and waits until every thread of it is stopped, so
    /// nothing sent from now on is answered until [`Broker::thaw`].
    fn freeze(&self) {
        assert!(
            signal(&self.child, "STOP"),
            "cannot stop the private broker"
        );
        let stat = format!("/proc/{}/stat", self.child.id());
        let by = Instant::now() + Duration::from_secs(5);
        // The state follows the command name's closing parenthesis: `T` is stopped.
        while !std::fs::read_to_string(&stat)
            .unwrap_or_else(|e| panic!("the private broker is gone ({stat}: {e})"))
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('T'))
        {
            assert!(Instant::now() < by, "the private broker did not stop");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn thaw(&self) {
        assert!(
            signal(&self.child, "CONT"),
            "cannot resume the private broker"
        );
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = signal(&self.child, "CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `sig` to `child`; false if it could not be sent.
fn signal(child: &Child, sig: &str) -> bool {
    Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

/// A broker of this test's own, once it listens. Its port is free when chosen but
/// can be taken before the broker binds it (by another test's broker, or a client's
/// outgoing connection); the broker then exits, and a connection to the port would
/// reach a stranger, which no signal to our child would freeze. So the listening
/// socket must be the child's own, and a taken port means another try.
async fn private_broker() -> Option<Broker> {
    let tansu = services::tansu()?;
    for _ in 0..5 {
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let mut child = Command::new(&tansu)
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
            .unwrap_or_else(|e| panic!("BUTTON_TANSU={} does not start: {e}", tansu.display()));
        let by = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if listens_on(child.id(), port) {
                let addr = format!("127.0.0.1:{port}");
                return Some(Broker { child, addr });
            }
            assert!(
                Instant::now() < by,
                "the private broker did not listen on {url}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    panic!("the private broker exited five times: were its ports taken?");
}

#[tokio::test]
async fn presses_fail_fast_while_the_broker_is_frozen_and_recover_without_a_restart() {
    let Some(broker) = private_broker().await else {
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
            a.spool_max_mib = 0; // no spool: presses are refused during the outage
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

    broker.freeze();
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

    broker.thaw();
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

/// The event ids in `records`, first occurrences only, in partition order.
fn ids_in_topic(records: &[crate::common::kafka::Record]) -> Vec<uuid::Uuid> {
    let mut seen = std::collections::HashSet::new();
    records
        .iter()
        .map(|r| button::encoding::decode(&r.value, None).unwrap().event_id)
        .filter(|id| seen.insert(*id))
        .collect()
}

#[tokio::test]
async fn while_the_broker_is_frozen_presses_are_spooled_and_replayed_in_order_after_a_restart() {
    let Some(broker) = private_broker().await else {
        return;
    };
    let topic = "spooled".to_owned();
    button::kafka::admin::ensure_topic(&kafka_args(&broker.addr, &topic).require().unwrap(), 1, 1)
        .await
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let settings = |a: &mut button::cli::ServeArgs| {
        a.kafka = kafka_args(&broker.addr, &topic);
        a.delivery_timeout = Duration::from_secs(2);
        a.data_dir = data.path().to_owned();
    };
    let app = spawn_app_with(settings).await;
    let mut v = app.visitor("8.8.8.8");
    let mut acked = Vec::new();
    for _ in 0..3 {
        let r = v.press().await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        acked.push(r.event_id().unwrap());
    }

    // The broker stops answering: presses are still acknowledged, from the spool.
    broker.freeze();
    for _ in 0..20 {
        let r = v.press().await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        acked.push(r.event_id().unwrap());
    }
    let ready = v.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::OK, "the spool takes presses");
    assert!(
        ready.body.contains("presses wait on disk for Kafka"),
        "{}",
        ready.body
    );
    let metrics = v.get("/metrics").await.body;
    let spooled: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("button_spool_events "))
        .expect("the spool gauge")
        .parse()
        .unwrap();
    assert!(spooled >= 1.0, "{metrics}");

    // A restart with presses in the spool: the new server replays them once the
    // broker is back, before anything newer.
    app.stop().await;
    broker.thaw();
    let app = spawn_app_with(settings).await;
    let mut v = app.visitor("8.8.8.8");
    eventually(
        "the spool to be replayed",
        Duration::from_secs(60),
        async || !v.get("/readyz").await.body.contains("spooled"),
    )
    .await;
    let r = v.press().await;
    assert_eq!(r.status, StatusCode::OK);
    acked.push(r.event_id().unwrap());

    let records = read_topic(&broker.addr, &topic, acked.len(), Duration::from_secs(30));
    assert_eq!(
        ids_in_topic(&records),
        acked,
        "every acknowledged press, in order"
    );
}
