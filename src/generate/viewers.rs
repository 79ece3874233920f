//! `generate --http URL --viewers N`: dashboards watching while the generator
//! presses, to measure what viewers cost and how soon they see a press.
//!
//! N viewers follow `/stats/live` (each its own connection, like N browsers);
//! [`MEASURED`] of them also time each press: the generator notes when its k-th
//! press was acknowledged, and a viewer that sees the total reach k (counted from
//! the total before the run) records how long after that acknowledgement it
//! arrived. A press that arrives before its acknowledgement does counts as 0.
//! Presses from anyone else during the run would skew the figures: run it against
//! a server nobody else presses.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// Viewers that time presses; the others only read.
pub const MEASURED: usize = 50;
/// Latency histogram resolution and range: 1 ms buckets up to 60 s.
const BUCKETS: usize = 60_000;

/// When each press of this run was acknowledged, in order.
#[derive(Default)]
pub struct Acks(std::sync::Mutex<Vec<Instant>>);

impl Acks {
    /// Notes one acknowledged press.
    pub fn press(&self) {
        self.0.lock().expect("never poisoned").push(Instant::now());
    }

    fn get(&self, k: usize) -> Option<Instant> {
        self.0.lock().expect("never poisoned").get(k).copied()
    }
}

/// Open dashboards and what they measured.
pub struct Viewers {
    connected: Arc<AtomicUsize>,
    lost: Arc<AtomicU64>,
    histogram: Arc<Mutex<Vec<u64>>>,
    stop: CancellationToken,
    tasks: tokio::task::JoinSet<()>,
}

/// What the viewers saw.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewerReport {
    /// Viewers connected at the end.
    pub connected: usize,
    /// Streams that ended or failed during the run.
    pub lost: u64,
    /// Press acknowledgement to arrival at a viewer, ms: p50, p99, max.
    pub latency_ms: Option<(u64, u64, u64)>,
    /// Arrivals timed.
    pub samples: u64,
}

impl std::fmt::Display for ViewerReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "viewers: {} connected, {} lost",
            self.connected, self.lost
        )?;
        match self.latency_ms {
            Some((p50, p99, max)) => write!(
                f,
                "; press acknowledged -> on the dashboard: p50 {p50} ms, p99 {p99} ms, max {max} ms ({} arrivals timed)",
                self.samples
            ),
            None => write!(f, "; no press was seen"),
        }
    }
}

impl Viewers {
    /// Opens `n` dashboards on `base` and waits until each has its first picture;
    /// the measuring ones start counting from the total they saw then.
    pub async fn open(base: &reqwest::Url, n: usize, acks: Arc<Acks>) -> anyhow::Result<Viewers> {
        let url = base.join("/stats/live").context("bad --http URL")?;
        // One connection per viewer, as browsers would hold; no pool limit.
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()?;
        let connected = Arc::new(AtomicUsize::new(0));
        let lost = Arc::new(AtomicU64::new(0));
        let histogram = Arc::new(Mutex::new(vec![0u64; BUCKETS]));
        let stop = CancellationToken::new();
        let mut tasks = tokio::task::JoinSet::new();
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<anyhow::Result<()>>(n.max(1));
        // Connect a few hundred at a time: a burst of thousands at once only
        // measures the listen backlog.
        let gate = Arc::new(tokio::sync::Semaphore::new(256));
        for i in 0..n {
            let viewer = Viewer {
                http: http.clone(),
                url: url.clone(),
                // Addresses from a documentation range: "unknown" to the geo lookup.
                forwarded: format!("198.51.100.{}", i % 250 + 1),
                measure: (i < MEASURED).then(|| (acks.clone(), histogram.clone())),
                connected: connected.clone(),
                lost: lost.clone(),
            };
            let (ready, stop, gate) = (ready_tx.clone(), stop.clone(), gate.clone());
            tasks.spawn(async move {
                let permit = gate.acquire_owned().await;
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = viewer.run(ready, permit.ok()) => {}
                }
            });
        }
        drop(ready_tx);
        let mut ready = 0;
        let began = Instant::now();
        while ready < n {
            match tokio::time::timeout(Duration::from_secs(60), ready_rx.recv()).await {
                Ok(Some(Ok(()))) => ready += 1,
                Ok(Some(Err(e))) => return Err(e.context(format!("viewer {ready} of {n}"))),
                Ok(None) => break,
                Err(_) => anyhow::bail!("only {ready} of {n} viewers connected within a minute"),
            }
        }
        eprintln!(
            "{ready} viewers connected in {:.1} s",
            began.elapsed().as_secs_f64()
        );
        Ok(Viewers {
            connected,
            lost,
            histogram,
            stop,
            tasks,
        })
    }

    /// Closes the dashboards and reports.
    pub async fn close(mut self) -> ViewerReport {
        let connected = self.connected.load(Ordering::Relaxed);
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
        let histogram = self.histogram.lock().await;
        let samples: u64 = histogram.iter().sum();
        let at = |q: f64| {
            let want = ((samples as f64 * q).ceil() as u64).max(1);
            let mut seen = 0;
            histogram
                .iter()
                .position(|n| {
                    seen += n;
                    seen >= want
                })
                .unwrap_or(BUCKETS - 1) as u64
        };
        let max = histogram.iter().rposition(|n| *n > 0).unwrap_or(0) as u64;
        ViewerReport {
            connected,
            lost: self.lost.load(Ordering::Relaxed),
            latency_ms: (samples > 0).then(|| (at(0.5), at(0.99), max)),
            samples,
        }
    }
}

struct Viewer {
    http: reqwest::Client,
    url: reqwest::Url,
    forwarded: String,
    measure: Option<(Arc<Acks>, Arc<Mutex<Vec<u64>>>)>,
    connected: Arc<AtomicUsize>,
    lost: Arc<AtomicU64>,
}

impl Viewer {
    async fn run(
        self,
        ready: tokio::sync::mpsc::Sender<anyhow::Result<()>>,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
    ) {
        let response = self
            .http
            .get(self.url.clone())
            .header("x-forwarded-for", &self.forwarded)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status);
        let mut response = match response {
            Ok(r) => r,
            Err(e) => {
                let _ = ready.send(Err(e.into())).await;
                return;
            }
        };
        let mut buffer = String::new();
        let mut base: Option<u64> = None;
        let mut seen: u64 = 0;
        self.connected.fetch_add(1, Ordering::Relaxed);
        let mut ready = Some(ready);
        let mut permit = permit;
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) | Err(_) => break,
            };
            let now = Instant::now();
            if self.measure.is_none() && ready.is_none() {
                continue; // only reading
            }
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let total = buffer[..end]
                    .strip_prefix("event: total\ndata: ")
                    .and_then(|d| d.trim().parse::<u64>().ok());
                buffer.drain(..end + 2);
                let Some(total) = total else { continue };
                if let Some(r) = ready.take() {
                    let _ = r.send(Ok(())).await;
                    permit.take();
                }
                let Some((acks, histogram)) = &self.measure else {
                    continue;
                };
                let base = *base.get_or_insert(total);
                let reached = total.saturating_sub(base);
                if reached > seen {
                    let mut h = histogram.lock().await;
                    for k in seen..reached {
                        let ms = acks
                            .get(k as usize)
                            .map_or(0, |acked| now.saturating_duration_since(acked).as_millis());
                        h[(ms as usize).min(BUCKETS - 1)] += 1;
                    }
                    seen = reached;
                }
            }
            if self.measure.is_none() {
                buffer.clear();
            }
        }
        self.connected.fetch_sub(1, Ordering::Relaxed);
        self.lost.fetch_add(1, Ordering::Relaxed);
        if let Some(r) = ready {
            let _ = r
                .send(Err(anyhow::anyhow!(
                    "the stream ended before its first picture"
                )))
                .await;
        }
    }
}
