//! Sinks killed in quick succession while events arrive: the group must not be
//! left with a live member that owns nothing, whatever the broker's coordinator
//! does with the dead members (the watchdog rejoins), with or without static
//! membership, and behind a dead static member that never left.

use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use button::domain::PressEvent;
use button::stats::StatsSource;

use crate::env::{
    Env, counted, env, eventually, expected, presses, sink_log, start_sink, stop_sink,
};

/// Events per second while the sinks die: the production outlasts the kills.
const RATE: f64 = 1500.0;

/// Starts producing about 20 s of events (30,000), kills the sink three times within
/// about six seconds (each time restarting it at once), then checks that every
/// event lands exactly once in both stores.
async fn kill_three_times_while_producing(env: Env, extra_flags: &[&str]) {
    let env = Arc::new(env);
    let group = format!("rapid-kill-{}", uuid::Uuid::new_v4().simple());
    let mut flags = env.sink_flags(&group);
    flags.extend(extra_flags.iter().map(|f| f.to_string()));
    let log = sink_log(&group);

    let producing = {
        let env = env.clone();
        tokio::spawn(async move { env.produce_at_rate(4600, 26, RATE).await })
    };
    let mut sink = start_sink(&flags);
    eventually(
        "the first sink to store events",
        Duration::from_secs(60),
        async || pg_total(&env).await > 0,
    )
    .await;

    // The fault itself, not a synchronisation: kill -9 every two seconds, each
    // time starting the next sink at once (the interval's first tick is now).
    let mut every = tokio::time::interval(Duration::from_secs(2));
    for _ in 0..3 {
        every.tick().await;
        sink.kill().unwrap(); // SIGKILL: no LeaveGroup, no final commit
        sink.wait().unwrap();
        sink = start_sink(&flags);
    }
    assert!(
        !producing.is_finished(),
        "events must still be arriving when the last sink starts; lower RATE's pace"
    );

    let events = producing.await.unwrap();
    wait_until_stored(&env, &events, Duration::from_secs(180), &mut sink, &log).await;
    stop_sink(&mut sink).await;
    // After a clean stop nothing is in flight: the counts are final.
    let want = expected(&events);
    assert_eq!(counted(env.pg().await.as_ref()).await, want, "postgres");
    assert_eq!(counted(env.ch().await.as_ref()).await, want, "clickhouse");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_killed_three_times_in_six_seconds_while_events_arrive_stores_each_event_once() {
    let Some(env) = env().await else { return };
    kill_three_times_while_producing(env, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_member_killed_three_times_in_six_seconds_stores_each_event_once() {
    // Every incarnation is the same replica. Brokers without static membership
    // treat it as dynamic; either way nothing may be lost or left waiting.
    let Some(env) = env().await else { return };
    kill_three_times_while_producing(env, &["--instance-id", "sink-0"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_sink_behind_a_dead_static_member_still_stores_every_event() {
    // A static member that owned every partition and died without leaving (a
    // static member never sends LeaveGroup). Apache Kafka expires it after its
    // session timeout and gives the partitions to the live sink. Tansu 0.6 expires
    // members only on requests of dynamic ones, so in a group of static members
    // the dead one stays leader for good and the sink waits in its join: the
    // watchdog has it rejoin as a dynamic member. Either way, every event lands.
    let Some(env) = env().await else { return };
    let group = format!("dead-static-{}", uuid::Uuid::new_v4().simple());
    assign_and_abandon_as_static(&env, &group, "ghost").await;

    let events = env.produce(300, 27).await;
    let mut flags = env.sink_flags(&group);
    flags.extend(["--instance-id", "sink-0"].map(String::from));
    let log = sink_log(&group);
    let mut sink = start_sink(&flags);
    wait_until_stored(&env, &events, Duration::from_secs(150), &mut sink, &log).await;
    stop_sink(&mut sink).await;
    let want = expected(&events);
    assert_eq!(counted(env.pg().await.as_ref()).await, want, "postgres");
    assert_eq!(counted(env.ch().await.as_ref()).await, want, "clickhouse");
}

/// Joins `group` as static member `instance`, waits until it owns every
/// partition of the environment's topic, and drops it: it leaves no LeaveGroup
/// behind, as if killed.
async fn assign_and_abandon_as_static(env: &Env, group: &str, instance: &str) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &env.broker)
        .set("group.id", group)
        .set("group.instance.id", instance)
        .set("session.timeout.ms", "10000")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[&env.topic]).unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        // Polling drives the join; the topic is empty, so nothing is read.
        let _ = consumer.poll(Duration::from_millis(200));
        let owned = consumer.assignment().map(|a| a.count()).unwrap_or(0);
        if owned == 3 {
            break;
        }
        assert!(
            Instant::now() < until,
            "the static member was assigned {owned} of 3 partitions in 60 s"
        );
    }
    drop(consumer);
}

async fn pg_total(env: &Env) -> u64 {
    env.pg().await.global().await.map(|g| g.total).unwrap_or(0)
}

/// Polls both stores until each counts exactly the presses of `events` per
/// country; on timeout, fails saying what each store lacks and how the sink
/// (which must still be running) fared.
async fn wait_until_stored(
    env: &Env,
    events: &[PressEvent],
    timeout: Duration,
    sink: &mut Child,
    log: &std::path::Path,
) {
    let want = expected(events);
    let (pg, ch) = (env.pg().await, env.ch().await);
    let until = Instant::now() + timeout;
    loop {
        let p = counted(pg.as_ref()).await;
        let c = counted(ch.as_ref()).await;
        if p == want && c == want {
            return;
        }
        if let Some(status) = sink.try_wait().unwrap() {
            panic!("the sink exited ({status}); its log: {}", log.display());
        }
        if Instant::now() >= until {
            let total = |v: &[(String, u64)]| v.iter().map(|(_, n)| n).sum::<u64>();
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<_> = tail.lines().rev().take(15).collect();
            panic!(
                "after {timeout:?}, of {} presses: postgres has {} ({}), clickhouse {} ({}); \
                 the sink's last log lines ({}):\n{}",
                presses(events),
                total(&p),
                differences(&want, &p),
                total(&c),
                differences(&want, &c),
                log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Countries whose counts differ: `GB 10 of 12` (missing) or `US 13 of 12` (extra).
fn differences(want: &[(String, u64)], got: &[(String, u64)]) -> String {
    let got: std::collections::BTreeMap<_, _> = got.iter().cloned().collect();
    let mut out: Vec<String> = want
        .iter()
        .filter(|(c, n)| got.get(c) != Some(n))
        .map(|(c, n)| format!("{c} {} of {n}", got.get(c).copied().unwrap_or(0)))
        .collect();
    let wanted: std::collections::BTreeSet<_> = want.iter().map(|(c, _)| c).collect();
    out.extend(
        got.iter()
            .filter(|(c, _)| !wanted.contains(c))
            .map(|(c, n)| format!("{c} {n} of 0")),
    );
    if out.is_empty() {
        "all there".into()
    } else {
        out.join(", ")
    }
}
