use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use button::stats::StatsSource;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::net::{TcpListener, TcpStream};

use crate::env::{
    assert_stores_hold, env, eventually, presses, start_sink, stop_sink, wait_for_total,
};

async fn pg_total(env: &crate::env::Env) -> u64 {
    env.pg().await.global().await.map(|g| g.total).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_killed_with_sigkill_mid_stream_and_restarted_loses_and_duplicates_nothing() {
    let Some(env) = env().await else { return };
    let events = env.produce(2000, 21).await;
    let want = presses(&events);
    let flags = env.sink_flags("kill-test");

    let mut sink = start_sink(&flags);
    eventually("some progress", Duration::from_secs(60), async || {
        pg_total(&env).await > 0
    })
    .await;
    sink.kill().unwrap(); // SIGKILL: the open batch and uncommitted offsets are lost
    sink.wait().unwrap();
    let at_kill = pg_total(&env).await;
    assert!(
        at_kill < want,
        "the sink finished before it was killed ({at_kill} of {want})"
    );
    // Restarted at once, while the dead member is still in the group: the watchdog
    // rejoins should the coordinator leave the new member without partitions.
    let mut sink = start_sink(&flags);
    wait_for_total(&env, want, Duration::from_secs(90)).await;
    // Stopped, it writes nothing more: a duplicate would be in the stores now.
    stop_sink(&mut sink).await;
    assert_stores_hold(&env, &events).await;
}

/// The sink's own count of messages read (`--status-listen` on `status`).
async fn messages_read(status: &str) -> u64 {
    let Ok(r) = reqwest::get(format!("http://{status}/metrics")).await else {
        return 0;
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("button_sink_messages_read_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_killed_while_one_batch_is_written_and_the_next_is_read_loses_and_duplicates_nothing()
 {
    let Some(env) = env().await else { return };
    let events = env.produce(300, 27).await;
    let want = presses(&events);
    assert!(
        events.len() > 1000,
        "{} events: two batches of 500 and more",
        events.len()
    );
    // PostgreSQL holds the first batch's write: the table is locked against
    // writes (not reads) until the test rolls back.
    let pg = env.pg_client().await;
    pg.batch_execute("BEGIN; LOCK TABLE button_presses IN EXCLUSIVE MODE")
        .await
        .unwrap();
    let status = format!("127.0.0.1:{}", crate::common::free_port());
    let flags = env.sink_flags("pipeline-kill-test");
    // The first sink's batches close at 500 events only, never by age, so that
    // the first one is 500 too.
    let mut held = flags.clone();
    let wait = held.iter().position(|f| f == "--batch-max-wait").unwrap() + 1;
    held[wait] = "1h".into();
    held.extend(["--status-listen".to_string(), status.clone()]);

    let mut sink = start_sink(&held);
    // Batches of 500: with 1,000 read, one batch is being written (held) and the
    // next has been read while it was.
    eventually(
        "a second batch read while the first is written",
        Duration::from_secs(60),
        async || messages_read(&status).await >= 1000,
    )
    .await;
    assert_eq!(pg_total(&env).await, 0, "the first write is still held");
    sink.kill().unwrap(); // SIGKILL: both batches and their offsets are lost
    sink.wait().unwrap();
    pg.batch_execute("ROLLBACK").await.unwrap();

    let mut sink = start_sink(&flags);
    wait_for_total(&env, want, Duration::from_secs(90)).await;
    stop_sink(&mut sink).await;
    assert_stores_hold(&env, &events).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sinks_share_the_topic_and_one_killed_midway_loses_nothing() {
    let Some(env) = env().await else { return };
    let events = env.produce(2000, 22).await;
    let want = presses(&events);
    let flags = env.sink_flags("pair-test");

    let mut a = start_sink(&flags);
    let mut b = start_sink(&flags);
    eventually("some progress", Duration::from_secs(60), async || {
        pg_total(&env).await > 0
    })
    .await;
    a.kill().unwrap();
    a.wait().unwrap();
    // The survivor takes over the dead member's partitions after the session timeout.
    wait_for_total(&env, want, Duration::from_secs(120)).await;
    stop_sink(&mut b).await;
    assert_stores_hold(&env, &events).await;
}

/// A TCP proxy that can be cut (all connections dropped, new ones refused) and
/// restored on the same port: a database "down for a while" without touching
/// the shared test server.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    refused: Arc<AtomicUsize>,
    generation: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Proxy {
    async fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let refused = Arc::new(AtomicUsize::new(0));
        let (tx, _) = tokio::sync::watch::channel(0u64);
        let generation = Arc::new(tx);
        let (u, g, r) = (up.clone(), generation.clone(), refused.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                if !u.load(Ordering::SeqCst) {
                    r.fetch_add(1, Ordering::SeqCst);
                    drop(client); // refused while down
                    continue;
                }
                let target = target.clone();
                let mut cut = g.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {} // dropping both ends cuts the connection
                    }
                });
            }
        });
        Proxy {
            port,
            up,
            refused,
            generation,
        }
    }

    /// Connections refused so far (made while cut).
    fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_down_for_a_while_pauses_the_sink_which_then_catches_up() {
    let Some(mut env) = env().await else { return };
    let events = env.produce(1500, 23).await;
    let want = presses(&events);
    // Route the sink's PostgreSQL connections through the proxy.
    let pg = url_host_port(&env.pg_url);
    let proxy = Proxy::start(pg.clone()).await;
    let direct_pg = env.pg_url.clone();
    env.pg_url = env
        .pg_url
        .replace(&pg, &format!("127.0.0.1:{}", proxy.port));
    let (stop, sink) = env.spawn_sink(&["--batch-max-events", "300"]);
    env.pg_url = direct_pg;

    eventually("some progress", Duration::from_secs(60), async || {
        pg_total(&env).await > 0
    })
    .await;
    proxy.cut();
    // The sink keeps trying to reach the database, and keeps running.
    let refused_at_cut = proxy.refused();
    eventually(
        "three refused reconnections",
        Duration::from_secs(60),
        async || proxy.refused() >= refused_at_cut + 3,
    )
    .await;
    assert!(
        !sink.is_finished(),
        "the sink must wait for the database, not exit"
    );
    let during = pg_total(&env).await;
    assert!(
        during < want,
        "everything was written before the outage ({during})"
    );
    proxy.restore();

    wait_for_total(&env, want, Duration::from_secs(90)).await;
    assert!(!sink.is_finished());
    stop.cancel();
    sink.await.unwrap().unwrap();
    assert_stores_hold(&env, &events).await;
}

fn url_host_port(url: &str) -> String {
    let after_at = url.split_once('@').map_or(url, |(_, r)| r);
    let after_scheme = after_at.split_once("://").map_or(after_at, |(_, r)| r);
    after_scheme.split('/').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_messages_go_to_the_dead_letter_topic_and_good_events_land() {
    let Some(env) = env().await else { return };
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &env.broker)
        .create()
        .unwrap();
    let junk: [&[u8]; 3] = [
        b"not json at all",
        b"{\"event_id\": 42}",
        &[0, 0, 0, 0, 1, 0xff, 0xff],
    ];
    for j in junk {
        producer
            .send(
                FutureRecord::<str, [u8]>::to(&env.topic)
                    .key("junk")
                    .payload(j),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
    }
    let events = env.produce(50, 24).await;
    let (stop, sink) = env.spawn_sink(&[]);
    wait_for_total(&env, presses(&events), Duration::from_secs(60)).await;

    let dlq = format!("{}.dlq", env.topic);
    let mut dead = Vec::new();
    eventually("dead letters", Duration::from_secs(30), async || {
        dead = crate::common::kafka::read_topic(&env.broker, &dlq, 3, Duration::from_secs(3));
        dead.len() >= 3
    })
    .await;
    assert_eq!(dead.len(), 3, "each bad message exactly once");
    let values: HashSet<_> = dead.iter().map(|r| r.value.clone()).collect();
    assert_eq!(values, junk.iter().map(|j| j.to_vec()).collect());
    for r in &dead {
        let error = r
            .headers
            .iter()
            .find(|(k, _)| k == "error")
            .expect("a reason header");
        assert!(!error.1.is_empty());
        assert!(
            r.headers
                .iter()
                .any(|(k, v)| k == "source.topic" && v == env.topic.as_bytes())
        );
    }
    assert_stores_hold(&env, &events).await;
    stop.cancel();
    sink.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_commits_the_offsets_and_exits_zero() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let Some(env) = env().await else { return };
    let events = env.produce(200, 25).await;
    let mut sink = start_sink(&env.sink_flags("sigterm-test"));
    wait_for_total(&env, presses(&events), Duration::from_secs(60)).await;

    stop_sink(&mut sink).await;

    // The group's committed offsets cover every message: a new member starts after them.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &env.broker)
        .set("group.id", "sigterm-test")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition(&env.topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    let total: i64 = committed
        .elements()
        .iter()
        .filter_map(|e| e.offset().to_raw())
        .filter(|o| *o > 0)
        .sum();
    assert_eq!(
        total as usize,
        events.len(),
        "committed offsets = messages in the topic"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_fails_permanently_makes_the_sink_unready_with_the_cause_and_loses_nothing() {
    let Some(env) = env().await else { return };
    let pg = env.pg_client().await;
    // A schema that no longer matches: every write fails, and retrying cannot help.
    pg.batch_execute("ALTER TABLE button_presses RENAME COLUMN cohort TO cohort_was")
        .await
        .unwrap();
    let events = env.produce(300, 26).await;
    let status = format!("127.0.0.1:{}", crate::common::free_port());
    let (stop, sink) = env.spawn_sink(&["--status-listen", &status]);
    let get = async |path: &str| {
        let r = reqwest::get(format!("http://{status}{path}")).await.ok()?;
        Some((r.status().as_u16(), r.text().await.ok()?))
    };

    eventually(
        "the sink to report itself unready",
        Duration::from_secs(60),
        async || matches!(get("/readyz").await, Some((503, body)) if body.contains("cohort")),
    )
    .await;
    let (_, metrics) = get("/metrics").await.unwrap();
    assert!(metrics.contains("button_sink_unready 1"), "{metrics}");
    assert!(
        metrics.contains("button_sink_write_failures_total{store=\"postgres\",kind=\"permanent\"}"),
        "{metrics}"
    );
    assert_eq!(
        pg_total(&env).await,
        0,
        "nothing skipped, nothing half written"
    );

    // Fixed: the same batches are written, and the sink is ready again.
    pg.batch_execute("ALTER TABLE button_presses RENAME COLUMN cohort_was TO cohort")
        .await
        .unwrap();
    wait_for_total(&env, presses(&events), Duration::from_secs(90)).await;
    eventually(
        "the sink to be ready again",
        Duration::from_secs(30),
        async || matches!(get("/readyz").await, Some((200, _))),
    )
    .await;
    stop.cancel();
    sink.await.unwrap().unwrap();
    assert_stores_hold(&env, &events).await;
}
