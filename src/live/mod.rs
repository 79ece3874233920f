//! The live view behind the dashboard: one task per `serve` instance follows the
//! committed presses, keeps the [`Board`], and every [`INTERVAL`] hands one
//! [`Update`] to all viewers, however many presses came in and however many
//! viewers there are. Viewers cost no store queries: the store is asked only at
//! start and every [`RECONCILE_EVERY`] (through the cached [`StatsService`]).
//!
//! Where presses come from:
//! - embedded: the pipeline's [`Tap`], which sees each event once SQLite has
//!   committed it;
//! - Kafka: this instance reads the topic itself with the app's one
//!   [`Reader`](crate::kafka::reader::Reader), unmanaged (no group, nothing
//!   committed), from the end. Presses older than the view are skipped, so a
//!   broker that starts "the end" too early cannot count history twice.
//!
//! Guarantee: embedded, exact: the counts are the store's at start, then every
//! committed press once (the tap is subscribed before the store is read, and
//! nothing is pressed before the server listens). With Kafka, at least what the
//! store says, raised to it every [`RECONCILE_EVERY`]. Best effort under
//! overload: a viewer that falls behind gets a full snapshot, and a tap that
//! overflows is corrected from the store; presses are never slowed down.

mod board;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

pub use board::{Board, Dot, Reconcile, TICKER_LEN, Tick, Update};

use crate::config::KafkaPipelineConfig;
use crate::domain::PressEvent;
use crate::domain::event::micros_since_epoch;
use crate::kafka::SchemaRegistry;
use crate::kafka::reader::{Next, QuietEof, Reader, Start};
use crate::pipeline::Tap;
use crate::stats::{GlobalStats, StatsError, StatsService};

/// How often viewers get news (presses in between are coalesced).
pub const INTERVAL: Duration = Duration::from_millis(250);
/// How often the click patterns are recomputed.
const PATTERNS_EVERY: Duration = Duration::from_secs(1);
/// How often the counts are brought back in line with the store.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(30);
/// How long the live view waits for the store's first answer at start.
const FIRST_ANSWER: Duration = Duration::from_secs(3);
/// Updates a viewer may fall behind by before it gets a full snapshot instead.
const UPDATES_BUFFERED: usize = 64;
/// Most presses counted in one round of the hub's loop (those already waiting).
const DRAIN: usize = 256;
/// With Kafka: presses older than the view by more than this are history.
const KAFKA_SLACK: Duration = Duration::from_secs(10);

/// Where the live view's presses come from.
pub enum Source {
    /// The embedded pipeline's tap.
    Tap(Tap),
    /// The topic, read by this instance.
    Kafka(Box<KafkaPipelineConfig>),
}

/// The running live view. Cheap to clone.
#[derive(Clone)]
pub struct Live {
    latest: watch::Receiver<Arc<Update>>,
    updates: broadcast::Sender<Arc<Update>>,
    following: watch::Receiver<bool>,
}

impl Live {
    /// Starts following `source`, with counts from `stats`, until `shutdown`.
    pub fn spawn(source: Source, stats: Arc<StatsService>, shutdown: CancellationToken) -> Live {
        let now = micros_since_epoch(SystemTime::now());
        let mut board = Board::new(now);
        let (latest_tx, latest) = watch::channel(Arc::new(board.flush(true)));
        let (updates, _) = broadcast::channel(UPDATES_BUFFERED);
        let (following_tx, following) = watch::channel(false);
        let (mode, events, loaded) = match source {
            // Subscribed before the store is read, and nothing is pressed before
            // the server listens: every press is either in the store's first
            // answer or on the tap afterwards, never both.
            Source::Tap(tap) => (
                Reconcile::Exact,
                Events::Tap(tap.subscribe()),
                Some(following_tx),
            ),
            Source::Kafka(config) => {
                let (tx, rx) = mpsc::channel(8192);
                tokio::spawn(read_topic(*config, now, tx, following_tx, shutdown.clone()));
                (Reconcile::AtLeast, Events::Kafka(rx), None)
            }
        };
        let hub = Hub {
            board,
            events,
            mode,
            behind: false,
            stats,
            latest: latest_tx,
            updates: updates.clone(),
        };
        tokio::spawn(hub.run(loaded, shutdown));
        Live {
            latest,
            updates,
            following,
        }
    }

    /// Waits up to `limit` until the view follows its source (with Kafka: the
    /// reader knows where the topic ends, so every press from then on is seen).
    /// A broker that is away is no reason to wait longer: the view catches up
    /// once it is back.
    pub async fn wait_following(&self, limit: Duration) -> bool {
        let mut following = self.following.clone();
        tokio::time::timeout(limit, following.wait_for(|f| *f))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The latest update (for a new viewer's snapshot) and the news after it.
    pub fn subscribe(&self) -> (Arc<Update>, broadcast::Receiver<Arc<Update>>) {
        // Subscribe first: an update sent in between is then seen twice (and
        // skipped by its sequence number), never missed.
        let rx = self.updates.subscribe();
        (self.latest.borrow().clone(), rx)
    }

    /// The latest update.
    pub fn latest(&self) -> Arc<Update> {
        self.latest.borrow().clone()
    }
}

enum Events {
    Tap(broadcast::Receiver<Arc<PressEvent>>),
    Kafka(mpsc::Receiver<PressEvent>),
}

/// A press; `Err(n)` when `n` were lost to an overflow; `None` at the end.
type Received = Option<Result<Arc<PressEvent>, u64>>;

impl Events {
    /// The next press.
    async fn next(&mut self) -> Received {
        match self {
            Events::Tap(rx) => match rx.recv().await {
                Ok(e) => Some(Ok(e)),
                Err(broadcast::error::RecvError::Lagged(n)) => Some(Err(n)),
                Err(broadcast::error::RecvError::Closed) => None,
            },
            Events::Kafka(rx) => rx.recv().await.map(|e| Ok(Arc::new(e))),
        }
    }

    /// What [`Self::next`] would give now, or `None` when nothing is waiting.
    fn try_next(&mut self) -> Option<Received> {
        match self {
            Events::Tap(rx) => match rx.try_recv() {
                Ok(e) => Some(Some(Ok(e))),
                Err(broadcast::error::TryRecvError::Lagged(n)) => Some(Some(Err(n))),
                Err(broadcast::error::TryRecvError::Closed) => Some(None),
                Err(broadcast::error::TryRecvError::Empty) => None,
            },
            Events::Kafka(rx) => match rx.try_recv() {
                Ok(e) => Some(Some(Ok(Arc::new(e)))),
                Err(mpsc::error::TryRecvError::Disconnected) => Some(None),
                Err(mpsc::error::TryRecvError::Empty) => None,
            },
        }
    }
}

struct Hub {
    board: Board,
    events: Events,
    mode: Reconcile,
    /// The tap overflowed: the counts are off until the store is asked again.
    behind: bool,
    stats: Arc<StatsService>,
    latest: watch::Sender<Arc<Update>>,
    updates: broadcast::Sender<Arc<Update>>,
}

type Reconciled = (board::Mark, Result<Arc<GlobalStats>, StatsError>);

impl Hub {
    /// Counts what the events gave; an overflow has the store asked at once.
    /// Whether the events go on.
    fn take(&mut self, received: Received, reconcile: &mut tokio::time::Interval) -> bool {
        match received {
            Some(Ok(event)) => self.board.apply(&event),
            Some(Err(lost)) => {
                tracing::warn!(
                    lost,
                    "the live view fell behind; counts are corrected from the store"
                );
                self.behind = true;
                reconcile.reset_immediately();
            }
            None => return false,
        }
        true
    }

    async fn run(mut self, loaded: Option<watch::Sender<bool>>, shutdown: CancellationToken) {
        // The counts so far, before any live press is counted (a store that
        // does not answer soon is asked again later).
        match tokio::time::timeout(FIRST_ANSWER, self.stats.global_fresh()).await {
            Ok(Ok(global)) => self.board.reconcile(&global, &self.board.mark(), self.mode),
            Ok(Err(StatsError::NotConfigured)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "live view: the counts so far are not known yet")
            }
            Err(_) => tracing::warn!(
                "live view: the store did not answer in time; counting from zero for now"
            ),
        }
        if let Some(loaded) = loaded {
            loaded.send_replace(true);
        }
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut patterns_at = tokio::time::Instant::now();
        let mut reconcile = tokio::time::interval(RECONCILE_EVERY);
        reconcile.reset(); // just asked
        let mut pending: Option<oneshot::Receiver<Reconciled>> = None;
        let mut events_open = true;
        loop {
            // With Kafka the store lags the topic: raise the counts to it now and
            // then. Embedded, the tap is exact: only an overflow needs the store.
            let ask = self.mode == Reconcile::AtLeast || self.behind;
            tokio::select! {
                () = shutdown.cancelled() => break,
                next = self.events.next(), if events_open => {
                    // With it, what else is waiting (a group commit's worth), before
                    // the next round of the select; a bounded number, so that the
                    // ticks are not held up.
                    events_open = self.take(next, &mut reconcile);
                    let mut taken = 1;
                    while events_open
                        && taken < DRAIN
                        && let Some(next) = self.events.try_next()
                    {
                        events_open = self.take(next, &mut reconcile);
                        taken += 1;
                    }
                }
                _ = reconcile.tick(), if pending.is_none() && ask => {
                    pending = Some(self.ask_store());
                }
                answer = async { pending.as_mut().expect("guarded").await }, if pending.is_some() => {
                    pending = None;
                    if let Ok((mark, result)) = answer {
                        match result {
                            Ok(global) => {
                                self.board.reconcile(&global, &mark, self.mode);
                                self.behind = false;
                            }
                            Err(StatsError::NotConfigured) => {}
                            Err(e) => tracing::debug!(error = %e, "live view: no reconciliation this time"),
                        }
                    }
                }
                _ = tick.tick() => {
                    let mut patterns = false;
                    if patterns_at.elapsed() >= PATTERNS_EVERY {
                        patterns_at = tokio::time::Instant::now();
                        patterns = self.board.refresh_patterns(micros_since_epoch(SystemTime::now()));
                    }
                    if patterns || self.board.is_dirty() {
                        let update = Arc::new(self.board.flush(patterns));
                        self.latest.send_replace(update.clone());
                        // No viewer is normal.
                        let _ = self.updates.send(update);
                    }
                }
            }
        }
    }

    /// Asks the store in the background; the board goes on counting meanwhile.
    fn ask_store(&self) -> oneshot::Receiver<Reconciled> {
        let (tx, rx) = oneshot::channel();
        let mark = self.board.mark();
        let stats = self.stats.clone();
        tokio::spawn(async move {
            let _ = tx.send((mark, stats.global_fresh().await));
        });
        rx
    }
}

/// With Kafka: reads the topic from the end and passes on presses no older than
/// the view (minus [`KAFKA_SLACK`]). Retries when the broker is away.
async fn read_topic(
    config: KafkaPipelineConfig,
    since_us: i64,
    tx: mpsc::Sender<PressEvent>,
    following: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    let oldest = since_us - KAFKA_SLACK.as_micros() as i64;
    let mut backoff = Duration::from_secs(1);
    while !shutdown.is_cancelled() {
        // Connecting waits for the brokers' metadata: not on a runtime thread.
        let (kafka, registry) = (config.kafka.clone(), config.registry.clone());
        let reader = tokio::task::spawn_blocking(move || {
            SchemaRegistry::configured(registry.as_ref())
                .and_then(|registry| Reader::unmanaged(&kafka, registry, Start::End, QuietEof))
        })
        .await
        .unwrap_or_else(|e| Err(anyhow::anyhow!("the connecting task failed: {e}")));
        let reader = match reader {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "live view: cannot read the topic yet; retrying"
                );
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        tracing::info!(topic = reader.topic(), "live view follows the topic");
        following.send_replace(true);
        loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => return,
                n = reader.next() => n,
            };
            match next {
                Ok(Next::Record(r)) => match r.event {
                    Ok(e) if e.timestamp >= oldest => {
                        // A full channel means the hub is behind: drop rather than
                        // slow the reader; reconciliation corrects the counts.
                        let _ = tx.try_send(e);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "live view: skipping a message that does not decode")
                    }
                },
                Ok(Next::EndOfPartition(_)) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "live view: reading the topic failed; reconnecting");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Action, Location};
    use crate::stats::NotConfigured;

    /// Presses waiting all at once, more than one round of the hub takes: every
    /// one is counted, in later rounds.
    #[tokio::test]
    async fn presses_waiting_at_once_are_all_counted() {
        let tap = Tap::new();
        let stats = Arc::new(StatsService::new(
            Arc::new(NotConfigured),
            Duration::from_secs(1),
        ));
        let live = Live::spawn(Source::Tap(tap.clone()), stats, CancellationToken::new());
        assert!(live.wait_following(Duration::from_secs(5)).await);
        let presses = 3 * DRAIN + 5;
        let mut at = SystemTime::now();
        // A current-thread runtime: the hub runs only once these are all sent.
        for _ in 0..presses {
            at += Duration::from_micros(1);
            let location = Location {
                country_code: "FI".into(),
                country_name: "Finland".into(),
                ..Location::unknown()
            };
            tap.send(PressEvent::new(
                Action::PressButton,
                uuid::Uuid::new_v4(),
                location,
                None,
                at,
            ));
        }
        let mut latest = live.latest();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while latest.total < presses as u64 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(INTERVAL).await;
            latest = live.latest();
        }
        assert_eq!(latest.total, presses as u64);
        assert_eq!(latest.countries.len(), 1);
        assert_eq!(latest.countries[0].presses, presses as u64);
    }
}
