//! `button generate`: synthetic visitors, like the original `generate_data.py`.
//!
//! Each session is one `EnterPage` then 1..=`--max-presses` presses, 0.5 to 5 s apart
//! in event time, from a random IPv4 or IPv6 address inside the geo database's
//! networks, located with the same code as `serve`. Generated events have a null
//! `cohort`, which marks them as generated. With `--seed` a run is reproducible:
//! the same sessions, events, ids and times (event time then starts at `--start`,
//! default 2025-01-01T00:00:00Z; without a seed it starts now).
//!
//! Targets: Kafka (through the same producer as `serve`), or `--http URL` to drive
//! a running `serve` for load tests (the address goes in `X-Forwarded-For`, so the
//! server must trust the generator as a proxy); with `--viewers N`, N dashboards
//! watch meanwhile and time how soon they see each press (see [`viewers`]).

pub mod viewers;

use std::io::{IsTerminal, Write};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Args;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::{KafkaArgs, RegistryArgs};
use crate::domain::{Action, Location, PressEvent};
use crate::encoding::Format;
use crate::geo::GeoDb;
use crate::kafka::KafkaPublisher;
use crate::publish::PublishError;

/// Settings of `button generate`.
#[derive(Debug, Clone, Args)]
pub struct GenerateArgs {
    /// Kafka connection (the default target).
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Schema registry (with `--format avro`).
    #[command(flatten)]
    pub registry: RegistryArgs,

    /// Encoding of the events in Kafka.
    #[arg(long, env = "BUTTON_FORMAT", value_enum, default_value_t = Format::Json)]
    pub format: Format,

    /// How many sessions to generate.
    #[arg(long, default_value_t = 100, conflicts_with = "forever")]
    pub sessions: u64,

    /// Generate until stopped (Ctrl-C).
    #[arg(long)]
    pub forever: bool,

    /// Most presses in one session (at least 1).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_presses: u32,

    /// Events per second, paced open-loop; 0 means as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,

    /// Seed for a reproducible run.
    #[arg(long)]
    pub seed: Option<u64>,

    /// Event time of the first session, RFC 3339 [default: now; with --seed
    /// 2025-01-01T00:00:00Z].
    #[arg(long, value_parser = humantime::parse_rfc3339)]
    pub start: Option<SystemTime>,

    /// Drive a running `button serve` at this base URL instead of Kafka.
    #[arg(long)]
    pub http: Option<reqwest::Url>,

    /// Sessions in flight at once with `--http`.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,

    /// With `--http`: dashboards (`/stats/live`) to open before pressing, each on
    /// its own connection; the summary says how soon they saw the presses.
    #[arg(long, default_value_t = 0, requires = "http")]
    pub viewers: usize,

    /// Geo database to draw locations from [default: the embedded one].
    #[arg(long, env = "BUTTON_GEOIP_DB")]
    pub geoip_db: Option<std::path::PathBuf>,
}

/// One synthetic session: where it comes from and what it does.
#[derive(Debug, Clone)]
pub struct SyntheticSession {
    /// The made-up visitor address (only for `--http`, where the server looks it up).
    pub address: IpAddr,
    /// Its events, in order.
    pub events: Vec<PressEvent>,
}

/// Makes sessions from a random source. Pure: no I/O, so tests can check it.
pub struct SessionMaker<'a> {
    geo: &'a GeoDb,
    rng: StdRng,
    next_start: SystemTime,
    max_presses: u32,
}

impl<'a> SessionMaker<'a> {
    /// Sessions drawn from `geo`, the first starting at `start`.
    pub fn new(geo: &'a GeoDb, rng: StdRng, start: SystemTime, max_presses: u32) -> Self {
        SessionMaker {
            geo,
            rng,
            next_start: start,
            max_presses: max_presses.max(1),
        }
    }

    /// The next session.
    pub fn next_session(&mut self) -> SyntheticSession {
        let rng = &mut self.rng;
        let (address, location) = self
            .geo
            .random_address(rng)
            .unwrap_or((IpAddr::from([0, 0, 0, 0]), Location::unknown()));
        let session_id = uuid::Builder::from_random_bytes(rng.random()).into_uuid();
        let mut at = self.next_start;
        // Sessions start a little apart, so event time moves forward steadily.
        self.next_start += Duration::from_millis(rng.random_range(0..=1000));
        let presses = rng.random_range(1..=self.max_presses);
        let mut events = Vec::with_capacity(presses as usize + 1);
        events.push(PressEvent::with_rng(
            Action::EnterPage,
            session_id,
            location.clone(),
            None,
            at,
            rng,
        ));
        for _ in 0..presses {
            at += Duration::from_millis(rng.random_range(500..=5000));
            events.push(PressEvent::with_rng(
                Action::PressButton,
                session_id,
                location.clone(),
                None,
                at,
                rng,
            ));
        }
        SyntheticSession { address, events }
    }
}

impl Iterator for SessionMaker<'_> {
    type Item = SyntheticSession;

    /// Never ends: take as many as you need.
    fn next(&mut self) -> Option<SyntheticSession> {
        Some(self.next_session())
    }
}

/// Event time of the first session: 2025-01-01T00:00:00Z for a seeded run (so the
/// same seed gives the same events), else now.
pub fn default_start(seed: Option<u64>) -> SystemTime {
    match seed {
        Some(_) => UNIX_EPOCH + Duration::from_secs(1_735_689_600),
        None => SystemTime::now(),
    }
}

/// Open-loop pacing: event `n` is due at `start + n / rate`.
struct Pacer {
    start: Instant,
    per_event: Option<Duration>,
    sent: u64,
}

impl Pacer {
    fn new(rate: f64) -> Self {
        let per_event = (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate));
        Pacer {
            start: Instant::now(),
            per_event,
            sent: 0,
        }
    }

    async fn wait(&mut self) {
        if let Some(d) = self.per_event {
            let due = self.start + d.mul_f64(self.sent as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        self.sent += 1;
    }
}

#[derive(Default)]
struct Counters {
    events: AtomicU64,
    presses: AtomicU64,
    sessions: AtomicU64,
    errors: AtomicU64,
}

impl Counters {
    fn delivered(&self, action: Action) {
        self.events.fetch_add(1, Ordering::Relaxed);
        if action == Action::PressButton {
            self.presses.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a failure; only the first is logged, the summary counts them all.
    fn failed(&self, why: &dyn std::fmt::Display) {
        if self.errors.fetch_add(1, Ordering::Relaxed) == 0 {
            tracing::warn!("an event failed: {why}");
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Events delivered.
    pub events: u64,
    /// Of which presses.
    pub presses: u64,
    /// Sessions completed.
    pub sessions: u64,
    /// Events that failed.
    pub errors: u64,
    /// Wall time.
    pub seconds: f64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "generated {} events ({} presses) in {} sessions in {:.1} s: {:.0} events/s, {} errors",
            self.events,
            self.presses,
            self.sessions,
            self.seconds,
            self.events as f64 / self.seconds.max(1e-9),
            self.errors
        )
    }
}

/// `button generate`.
pub async fn run(args: GenerateArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let summary = generate(&args, shutdown).await?;
    println!("{summary}");
    if summary.errors > 0 {
        anyhow::bail!("{} events failed", summary.errors);
    }
    Ok(())
}

/// Runs the generator and returns its summary.
pub async fn generate(args: &GenerateArgs, shutdown: CancellationToken) -> anyhow::Result<Summary> {
    let geo = GeoDb::load(args.geoip_db.as_deref())?;
    let rng = match args.seed {
        Some(seed) => StdRng::seed_from_u64(seed),
        None => StdRng::from_os_rng(),
    };
    let start = args.start.unwrap_or_else(|| default_start(args.seed));
    let maker = SessionMaker::new(&geo, rng, start, args.max_presses);
    let sessions: Box<dyn Iterator<Item = SyntheticSession> + Send + '_> = if args.forever {
        Box::new(maker)
    } else {
        Box::new(maker.take(args.sessions as usize))
    };
    // The dashboards are open before the clock starts: connecting them is not
    // part of the run.
    let acks = Arc::new(viewers::Acks::default());
    let watching = match (&args.http, args.viewers) {
        (Some(url), n) if n > 0 => Some(viewers::Viewers::open(url, n, acks.clone()).await?),
        _ => None,
    };
    let counters = Arc::new(Counters::default());
    let began = Instant::now();
    let progress = tokio::spawn(report_progress(
        counters.clone(),
        began,
        shutdown.child_token(),
    ));

    let result = match &args.http {
        Some(url) => {
            let acks = watching.as_ref().map(|_| acks.clone());
            to_http(args, url, sessions, &counters, acks, &shutdown).await
        }
        None => to_kafka(args, sessions, &counters, &shutdown).await,
    };
    progress.abort();
    let seconds = began.elapsed().as_secs_f64();
    if let Some(w) = watching {
        // The last presses need an update interval to reach the dashboards.
        tokio::time::sleep(Duration::from_secs(1)).await;
        println!("{}", w.close().await);
    }
    result?;
    Ok(Summary {
        events: counters.events.load(Ordering::Relaxed),
        presses: counters.presses.load(Ordering::Relaxed),
        sessions: counters.sessions.load(Ordering::Relaxed),
        errors: counters.errors.load(Ordering::Relaxed),
        seconds,
    })
}

async fn report_progress(counters: Arc<Counters>, began: Instant, stop: CancellationToken) {
    let tty = std::io::stderr().is_terminal();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let events = counters.events.load(Ordering::Relaxed);
        let line = format!(
            "{} events, {} sessions, {:.0} events/s, {} errors",
            events,
            counters.sessions.load(Ordering::Relaxed),
            events as f64 / began.elapsed().as_secs_f64(),
            counters.errors.load(Ordering::Relaxed)
        );
        let mut err = std::io::stderr().lock();
        let _ = if tty {
            write!(err, "\r{line}   ")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }
}

async fn to_kafka(
    args: &GenerateArgs,
    sessions: impl Iterator<Item = SyntheticSession>,
    counters: &Counters,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let kafka = args.kafka.require()?;
    let encoder =
        crate::kafka::producer::encoder(args.format, &kafka, args.registry.config().as_ref())
            .await?;
    let producer = KafkaPublisher::new(&kafka, encoder, Duration::from_secs(30))?;
    let mut pacer = Pacer::new(args.rate);
    let mut in_flight = FuturesUnordered::new();
    let settle = |(result, action): (Result<(), PublishError>, Action)| match result {
        Ok(()) => counters.delivered(action),
        Err(e) => counters.failed(&e),
    };
    'sessions: for session in sessions {
        for event in &session.events {
            tokio::select! {
                () = shutdown.cancelled() => break 'sessions,
                () = pacer.wait() => {}
            }
            // Enqueued in order, so each session's events keep their order.
            loop {
                match producer.send(event) {
                    Ok(delivery) => {
                        let action = event.action;
                        in_flight.push(async move { (delivery.await, action) });
                        break;
                    }
                    // The local queue is full: let deliveries drain, then retry.
                    Err(PublishError::Overloaded) => {
                        if let Some(done) = in_flight.next().await {
                            settle(done);
                        }
                    }
                    Err(e) => return Err(e).context("cannot produce to Kafka"),
                }
            }
            while in_flight.len() >= 50_000 {
                if let Some(done) = in_flight.next().await {
                    settle(done);
                }
            }
        }
        counters.sessions.fetch_add(1, Ordering::Relaxed);
    }
    while let Some(done) = in_flight.next().await {
        settle(done);
    }
    producer
        .flush(Duration::from_secs(30))
        .context("cannot flush the producer")
}

async fn to_http(
    args: &GenerateArgs,
    base: &reqwest::Url,
    sessions: impl Iterator<Item = SyntheticSession>,
    counters: &Arc<Counters>,
    acks: Option<Arc<viewers::Acks>>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()?;
    let page = base.join("/").context("bad --http URL")?;
    let press = base.join("/press").context("bad --http URL")?;
    let pacer = Arc::new(tokio::sync::Mutex::new(Pacer::new(args.rate)));
    let slots = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for session in sessions {
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            p = slots.clone().acquire_owned() => p?,
        };
        let (http, page, press, pacer, counters, acks, stop) = (
            http.clone(),
            page.clone(),
            press.clone(),
            pacer.clone(),
            counters.clone(),
            acks.clone(),
            shutdown.clone(),
        );
        tasks.spawn(async move {
            let _permit = permit;
            let forwarded = session.address.to_string();
            let mut cookie: Option<String> = None;
            for event in &session.events {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = async { pacer.lock().await.wait().await } => {}
                }
                let req = match event.action {
                    Action::EnterPage => http.get(page.clone()),
                    Action::PressButton => http.post(press.clone()).header("hx-request", "true"),
                };
                let mut req = req.header("x-forwarded-for", &forwarded);
                if let Some(c) = &cookie {
                    req = req.header("cookie", c);
                }
                match req.send().await {
                    Ok(r) if r.status().is_success() || r.status().is_redirection() => {
                        if let Some(set) =
                            r.headers().get("set-cookie").and_then(|v| v.to_str().ok())
                        {
                            cookie = set.split(';').next().map(str::to_owned);
                        }
                        counters.delivered(event.action);
                        if let (Some(acks), Action::PressButton) = (&acks, event.action) {
                            acks.press();
                        }
                    }
                    Ok(r) => counters.failed(&r.status()),
                    Err(e) => counters.failed(&e),
                }
            }
            counters.sessions.fetch_add(1, Ordering::Relaxed);
        });
        // Reap finished sessions as we go, so the set stays small.
        while let Some(r) = tasks.try_join_next() {
            r?;
        }
    }
    while let Some(r) = tasks.join_next().await {
        r?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(seed: u64, n: usize) -> Vec<SyntheticSession> {
        let geo = GeoDb::embedded().unwrap();
        let start = default_start(Some(seed));
        SessionMaker::new(&geo, StdRng::seed_from_u64(seed), start, 5)
            .take(n)
            .collect()
    }

    #[test]
    fn the_same_seed_makes_the_same_sessions() {
        let a: Vec<_> = sessions(42, 20)
            .into_iter()
            .flat_map(|s| s.events)
            .collect();
        let b: Vec<_> = sessions(42, 20)
            .into_iter()
            .flat_map(|s| s.events)
            .collect();
        let c: Vec<_> = sessions(43, 20)
            .into_iter()
            .flat_map(|s| s.events)
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn a_session_is_one_page_view_then_presses_half_a_second_to_five_apart() {
        for s in sessions(7, 50) {
            let e = &s.events;
            assert_eq!(e[0].action, Action::EnterPage);
            assert!((2..=6).contains(&e.len()), "{}", e.len());
            for w in e.windows(2) {
                assert_eq!(w[1].action, Action::PressButton);
                assert_eq!(w[1].session_id, w[0].session_id);
                let gap = w[1].timestamp - w[0].timestamp;
                assert!((500_000..=5_000_000).contains(&gap), "{gap}");
            }
            assert!(
                e.iter().all(|e| e.cohort.is_none()),
                "generated data has no cohort"
            );
            assert_ne!(e[0].location.country_code, "--");
        }
    }
}
