//! What every sink test needs: a topic, a PostgreSQL database and a ClickHouse
//! database of its own on the test services, sinks run in this process or as the
//! binary, events produced with a seed (so the test knows them), and checks of
//! what the stores' statistics queries count.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use button::domain::{Action, PressEvent};
use button::stats::StatsSource;
use button::store::clickhouse::ChStore;
use button::store::postgres::PgStore;
use tokio_util::sync::CancellationToken;

pub use crate::common::eventually;
use crate::common::{cli, kafka, original, services};

/// Everything one test needs: a fresh topic, PostgreSQL database and ClickHouse
/// database of its own.
pub struct Env {
    pub broker: String,
    pub topic: String,
    pub pg_url: String,
    pub ch_url: String,
}

/// A fresh environment on the test services, migrated; `None` (after a note)
/// when they are not available and not required (see `common::services`).
pub async fn env() -> Option<Env> {
    let (Some(broker), Some(pg), Some(ch)) = (
        services::kafka(),
        services::postgres(),
        services::clickhouse(),
    ) else {
        return None;
    };
    let topic = kafka::new_topic(&broker).await;
    let pg_url = pg.new_database().await;
    let ch_url = ch.new_database().await;

    PgStore::connect(&(&pg_url).parse().unwrap())
        .await
        .unwrap()
        .migrate()
        .await
        .unwrap();
    ChStore::connect(&(&ch_url).parse().unwrap())
        .await
        .unwrap()
        .migrate()
        .await
        .unwrap();
    Some(Env {
        broker,
        topic,
        pg_url,
        ch_url,
    })
}

impl Env {
    /// The flags every sink of this environment needs.
    fn connection_flags(&self) -> Vec<&str> {
        vec![
            "--kafka-brokers",
            &self.broker,
            "--topic",
            &self.topic,
            "--postgres-url",
            &self.pg_url,
            "--clickhouse-url",
            &self.ch_url,
        ]
    }

    /// `button sink` arguments for a sink run in this process.
    pub fn sink_args(&self, extra: &[&str]) -> button::sink::SinkArgs {
        // A group of its own: tests run at once, and one group spanning several
        // topics would rebalance every test's sink whenever another starts.
        self.sink_args_in_group(&self.topic, extra)
    }

    /// Like [`Env::sink_args`], in consumer group `group`.
    pub fn sink_args_in_group(&self, group: &str, extra: &[&str]) -> button::sink::SinkArgs {
        let mut argv = self.connection_flags();
        argv.extend([
            "--batch-max-wait",
            "200ms",
            "--progress-every",
            "2s",
            "--group",
            group,
        ]);
        argv.extend_from_slice(extra);
        cli::sink(&argv)
    }

    /// The command line (`sink` and its flags) of a sink run as the binary, in
    /// consumer group `group`.
    pub fn sink_flags(&self, group: &str) -> Vec<String> {
        let tuning = [
            "--group",
            group,
            "--batch-max-events",
            "500",
            "--batch-max-wait",
            "100ms",
        ];
        std::iter::once("sink")
            .chain(self.connection_flags())
            .chain(tuning)
            .map(|s| s.to_string())
            .collect()
    }

    /// Runs a sink in this process until the returned token is cancelled.
    pub fn spawn_sink(
        &self,
        extra: &[&str],
    ) -> (
        CancellationToken,
        tokio::task::JoinHandle<anyhow::Result<()>>,
    ) {
        let stop = CancellationToken::new();
        let task = tokio::spawn(button::sink::run(self.sink_args(extra), stop.clone()));
        (stop, task)
    }

    /// A plain client of this environment's PostgreSQL database, for a test to
    /// change it behind the sink's back.
    pub async fn pg_client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.pg_url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    }

    /// Produces `sessions` seeded sessions to the topic; returns the events.
    pub async fn produce(&self, sessions: u64, seed: u64) -> Vec<PressEvent> {
        self.produce_at_rate(sessions, seed, 0.0).await
    }

    /// Like [`Env::produce`], paced at `rate` events per second (0: at once).
    pub async fn produce_at_rate(&self, sessions: u64, seed: u64, rate: f64) -> Vec<PressEvent> {
        self.produce_with(sessions, seed, rate, &[]).await
    }

    /// Like [`Env::produce_at_rate`], with more `button generate` flags (`--format`).
    pub async fn produce_with(
        &self,
        sessions: u64,
        seed: u64,
        rate: f64,
        extra: &[&str],
    ) -> Vec<PressEvent> {
        let s = sessions.to_string();
        let sd = seed.to_string();
        let r = rate.to_string();
        let mut argv = vec![
            "--kafka-brokers",
            &self.broker,
            "--topic",
            &self.topic,
            "--sessions",
            &s,
            "--seed",
            &sd,
            "--rate",
            &r,
        ];
        argv.extend_from_slice(extra);
        let args = cli::generate(&argv);
        let summary = button::generate::generate(&args, CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(summary.errors, 0);
        // The same seed makes the same events: rebuild them here to know what to expect.
        let geo = button::geo::GeoDb::embedded().unwrap();
        let start = button::generate::default_start(Some(seed));
        let rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
        let maker = button::generate::SessionMaker::new(&geo, rng, start, args.max_presses);
        let events: Vec<_> = maker
            .take(sessions as usize)
            .flat_map(|s| s.events)
            .collect();
        assert_eq!(events.len() as u64, summary.events);
        events
    }

    /// `sessions` seeded sessions (as [`Env::produce`] makes them) written to the
    /// topic by the original app, its schema registered at `registry_url`; returns
    /// the events as `button` reads them (derived ids, no coordinates).
    pub async fn produce_as_the_original(
        &self,
        sessions: u64,
        seed: u64,
        registry_url: &str,
    ) -> Vec<PressEvent> {
        let geo = button::geo::GeoDb::embedded().unwrap();
        let start = button::generate::default_start(Some(seed));
        let rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
        let maker = button::generate::SessionMaker::new(&geo, rng, start, 10);
        let events: Vec<_> = maker
            .take(sessions as usize)
            .flat_map(|s| s.events)
            .map(|e| original::as_read(&e))
            .collect();
        original::produce(&self.broker, &self.topic, registry_url, &events).await;
        events
    }

    /// A new connection to this environment's PostgreSQL store.
    pub async fn pg(&self) -> Arc<PgStore> {
        Arc::new(
            PgStore::connect(&(&self.pg_url).parse().unwrap())
                .await
                .unwrap(),
        )
    }

    /// A new connection to this environment's ClickHouse store.
    pub async fn ch(&self) -> Arc<ChStore> {
        Arc::new(
            ChStore::connect(&(&self.ch_url).parse().unwrap())
                .await
                .unwrap(),
        )
    }
}

/// Presses per country, as the stats queries of a store count them.
pub async fn counted(store: &dyn StatsSource) -> Vec<(String, u64)> {
    let g = store.global().await.unwrap();
    let mut v: Vec<_> = g
        .by_country
        .into_iter()
        .map(|c| (c.country_code, c.presses))
        .collect();
    v.sort();
    v
}

/// Checks that both stores count exactly the presses in `events`, per country.
pub async fn assert_stores_hold(env: &Env, events: &[PressEvent]) {
    let want = expected(events);
    assert_eq!(counted(env.pg().await.as_ref()).await, want, "postgres");
    assert_eq!(counted(env.ch().await.as_ref()).await, want, "clickhouse");
}

/// Presses per country, computed from the events themselves.
pub fn expected(events: &[PressEvent]) -> Vec<(String, u64)> {
    let mut m = std::collections::BTreeMap::new();
    for e in events.iter().filter(|e| e.action == Action::PressButton) {
        *m.entry(e.location.country_code.clone()).or_insert(0) += 1;
    }
    m.into_iter().collect()
}

/// Waits until both stores count `presses` presses; panics after `timeout`.
pub async fn wait_for_total(env: &Env, presses: u64, timeout: Duration) {
    let (pg, ch) = (env.pg().await, env.ch().await);
    let until = Instant::now() + timeout;
    loop {
        let p = pg.global().await.map(|g| g.total).unwrap_or(0);
        let c = ch.global().await.map(|g| g.total).unwrap_or(0);
        if p >= presses && c >= presses {
            return;
        }
        assert!(
            Instant::now() < until,
            "after {timeout:?}: postgres {p}, clickhouse {c}, want {presses}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Presses among `events`.
pub fn presses(events: &[PressEvent]) -> u64 {
    events
        .iter()
        .filter(|e| e.action == Action::PressButton)
        .count() as u64
}

/// Where a sink started by [`start_sink`] in consumer group `group` logs.
pub fn sink_log(group: &str) -> PathBuf {
    std::env::temp_dir().join(format!("button-sink-{group}.log"))
}

/// A sink process, killed if the test fails before stopping it (so a failed
/// test leaves no sink behind).
pub struct Sink(Child);

impl Drop for Sink {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl std::ops::Deref for Sink {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Sink {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

/// Starts the `button` binary with `flags` (from [`Env::sink_flags`]); its log is
/// appended to [`sink_log`] of its group, to read when a test fails.
pub fn start_sink(flags: &[String]) -> Sink {
    let group = flags
        .iter()
        .skip_while(|f| *f != "--group")
        .nth(1)
        .expect("sink flags name a group");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(sink_log(group))
        .unwrap();
    Sink(
        Command::new(env!("CARGO_BIN_EXE_button"))
            .args(flags)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the sink starts"),
    )
}

/// SIGTERM, then waits for the sink to exit 0: after it, the sink writes nothing more.
pub async fn stop_sink(sink: &mut Child) {
    let term = Command::new("kill")
        .args(["-TERM", &sink.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let started = Instant::now();
    let status = loop {
        if let Some(s) = sink.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the sink did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "exit status {status}");
}
