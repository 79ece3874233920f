//! Getting one batch into every store and its undecodable messages into the
//! dead-letter topic, for as long as it takes. Guarantee: [`Destinations::store`]
//! returns only once every store has every event of the batch and the broker has
//! confirmed every dead letter; a store that is down pauses the sink, it never
//! skips data.
//!
//! Retries: every failure is retried with capped, jittered backoff. The store's
//! classification (`WriteError::retryable`) decides how loudly: a transient
//! failure (connection lost, timeout) is a warning; a permanent one (a schema that
//! does not match, say) is an error that says the store must be fixed, because
//! skipping the batch would lose presses. While a permanent failure lasts, the
//! sink is unready: [`Health::unready`] names the store and the cause, and the
//! progress line carries it until a write succeeds.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::future::join_all;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

use super::batch::{Batch, DeadLetter};
use super::steps::Output;
use crate::config::{ChConfig, KafkaConfig, PgConfig};
use crate::domain::PressEvent;
use crate::retry::Backoff;
use crate::store::clickhouse::ChStore;
use crate::store::postgres::PgStore;
use crate::store::{EventStore, WriteError};
use crate::telemetry::metric;

/// Waits between retries: from 100 ms, doubling up to 10 s.
const RETRY_BASE: Duration = Duration::from_millis(100);
const RETRY_CAP: Duration = Duration::from_secs(10);

/// Connects to every configured store (at least one).
pub async fn connect_stores(
    pg: Option<&PgConfig>,
    ch: Option<&ChConfig>,
) -> anyhow::Result<Vec<Arc<dyn EventStore>>> {
    let mut stores: Vec<Arc<dyn EventStore>> = Vec::new();
    if let Some(pg) = pg {
        stores.push(Arc::new(PgStore::connect(pg).await?));
    }
    if let Some(ch) = ch {
        stores.push(Arc::new(ChStore::connect(ch).await?));
    }
    anyhow::ensure!(
        !stores.is_empty(),
        "no store to write to: pass --postgres-url and/or --clickhouse-url"
    );
    Ok(stores)
}

/// How often the sink settles what the stores keep for reads
/// ([`EventStore::settle`]): reads cost more for what was written since.
pub const SETTLE_EVERY: Duration = Duration::from_secs(5);

/// Settles every store every [`SETTLE_EVERY`] until `stop`, then once more, so
/// that what the last batches wrote is settled too. A failure is tried again
/// next time (reads stay exact meanwhile); it is logged as a warning once per
/// outage (the sink's writes report the store's trouble too), and its end once.
pub async fn settle_until(stores: Vec<Arc<dyn EventStore>>, stop: CancellationToken) {
    let mut failing = vec![false; stores.len()];
    loop {
        let stopping = tokio::select! {
            _ = stop.cancelled() => true,
            _ = tokio::time::sleep(SETTLE_EVERY) => false,
        };
        for (store, failing) in stores.iter().zip(&mut failing) {
            match store.settle().await {
                Ok(()) if *failing => {
                    *failing = false;
                    tracing::info!(store = store.name(), "counts settled again");
                }
                Ok(()) => {}
                Err(e) if *failing => {
                    tracing::debug!(store = store.name(), error = %format_args!("{e:#}"), "counts still not settled");
                }
                Err(e) => {
                    *failing = true;
                    tracing::warn!(store = store.name(), error = %format_args!("{e:#}"), "counts not settled; reads count from event ids meanwhile (retrying every {}s, logged again once it works)", SETTLE_EVERY.as_secs());
                }
            }
        }
        if stopping {
            return;
        }
    }
}

/// Where a batch goes: the stores, and the dead-letter topic `<topic>.dlq`.
pub struct Destinations {
    stores: Vec<Arc<dyn EventStore>>,
    dlq: FutureProducer,
    dlq_topic: String,
    source_topic: String,
    health: Arc<Health>,
}

/// The stores that fail permanently right now, and why.
#[derive(Debug, Default)]
pub struct Health {
    failing: Mutex<BTreeMap<&'static str, Failing>>,
}

#[derive(Debug, Clone)]
struct Failing {
    cause: String,
    since: Instant,
}

impl Health {
    /// `None` when every store takes writes (or fails only transiently);
    /// otherwise which stores cannot, since when, and why.
    pub fn unready(&self) -> Option<String> {
        let failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        if failing.is_empty() {
            return None;
        }
        let lines: Vec<String> = failing
            .values()
            .map(|f| format!("{} (for {}s)", f.cause, f.since.elapsed().as_secs()))
            .collect();
        Some(lines.join("; "))
    }

    fn record(&self, store: &'static str, outcome: Result<(), &WriteError>) {
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        match outcome {
            Err(e) if !e.retryable => {
                let since = failing.get(store).map_or_else(Instant::now, |f| f.since);
                failing.insert(
                    store,
                    Failing {
                        cause: cause(e),
                        since,
                    },
                );
            }
            _ => {
                failing.remove(store);
            }
        }
    }
}

/// The error with its causes, on one line.
fn cause(e: &WriteError) -> String {
    format!("{:#}", anyhow::Error::new(e.clone()))
}

impl Destinations {
    /// The stores, and a producer to the dead-letter topic of `kafka.topic`, which
    /// is created if missing (one partition, one replica) when the broker allows.
    pub async fn build(
        kafka: &KafkaConfig,
        stores: Vec<Arc<dyn EventStore>>,
    ) -> anyhow::Result<Self> {
        let mut config = crate::kafka::client_config(kafka)?;
        config.set("acks", "all").set("enable.idempotence", "true");
        let dlq: FutureProducer = config.create()?;
        let dlq_topic = crate::kafka::admin::dead_letter_topic(&kafka.topic);
        // Without it, a bad message would stall the sink.
        crate::kafka::admin::ensure_named_topic(kafka, &dlq_topic, 1, 1).await.with_context(|| {
            format!("the dead-letter topic {dlq_topic} is missing and cannot be created: run `button migrate --kafka-brokers ... --replication-factor N`")
        })?;
        Ok(Destinations {
            stores,
            dlq,
            dlq_topic,
            source_topic: kafka.topic.clone(),
            health: Arc::default(),
        })
    }

    /// Whether the stores take writes; shared with the progress line.
    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    /// The stores' names, for the log.
    pub fn names(&self) -> Vec<&'static str> {
        self.stores.iter().map(|s| s.name()).collect()
    }

    /// Writes the batch to every store (concurrently) and the dead letters to the
    /// dead-letter topic, retrying until all succeed.
    pub async fn store(&self, batch: &Batch) {
        let writes = self
            .stores
            .iter()
            .map(|s| write_with_retry(s.as_ref(), &batch.events, &self.health));
        join_all(writes).await;
        for letter in &batch.dead {
            self.send_dead_letter(letter).await;
        }
    }

    async fn send_dead_letter(&self, letter: &DeadLetter) {
        let partition = letter.partition.to_string();
        let offset = letter.offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "error",
                value: Some(letter.reason.as_str()),
            })
            .insert(Header {
                key: "source.topic",
                value: Some(self.source_topic.as_str()),
            })
            .insert(Header {
                key: "source.partition",
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: "source.offset",
                value: Some(offset.as_str()),
            });
        let mut backoff = Backoff::new(RETRY_BASE, RETRY_CAP);
        loop {
            let mut record =
                FutureRecord::<[u8], [u8]>::to(&self.dlq_topic).headers(headers.clone());
            if let Some(k) = &letter.key {
                record = record.key(k.as_slice());
            }
            if let Some(v) = &letter.value {
                record = record.payload(v.as_slice());
            }
            match self.dlq.send(record, Duration::from_secs(5)).await {
                Ok(_) => {
                    tracing::warn!(partition = letter.partition, offset = letter.offset, reason = %letter.reason, "message sent to the dead-letter topic");
                    return;
                }
                Err((e, _)) => tracing::warn!(
                    "cannot send to the dead-letter topic {} (retrying): {e}",
                    self.dlq_topic
                ),
            }
            let delay = backoff.next_delay(&mut rand::rng());
            tokio::time::sleep(delay).await;
        }
    }
}

impl Output for Destinations {
    fn store(&self, batch: &Batch) -> impl Future<Output = ()> + Send {
        Destinations::store(self, batch)
    }
}

async fn write_with_retry(store: &dyn EventStore, events: &[PressEvent], health: &Health) {
    if events.is_empty() {
        return;
    }
    let mut backoff = Backoff::new(RETRY_BASE, RETRY_CAP);
    loop {
        let started = Instant::now();
        let written = store.write(events).await;
        health.record(store.name(), written.as_ref().map(|_| ()));
        match written {
            Ok(()) => {
                if backoff.attempts() > 0 {
                    tracing::info!(
                        store = store.name(),
                        attempts = backoff.attempts() + 1,
                        "store is back; batch written"
                    );
                }
                tracing::debug!(
                    store = store.name(),
                    events = events.len(),
                    took_ms = started.elapsed().as_millis() as u64,
                    "batch written"
                );
                return;
            }
            Err(e) => {
                let kind = if e.retryable {
                    "transient"
                } else {
                    "permanent"
                };
                metrics::counter!(metric::SINK_WRITE_FAILURES, "store" => store.name(), "kind" => kind)
                    .increment(1);
                log_write_failure(&e, backoff.attempts());
            }
        }
        let delay = backoff.next_delay(&mut rand::rng());
        tokio::time::sleep(delay).await;
    }
}

fn log_write_failure(e: &WriteError, attempts: u32) {
    // Every failure while few, then every tenth: a long outage should not flood the log.
    if attempts < 5 || attempts % 10 == 0 {
        let cause = cause(e);
        if e.retryable {
            tracing::warn!(attempts, "write failed, retrying: {cause}");
        } else {
            tracing::error!(
                attempts,
                "write failed and cannot succeed as things are; the sink is unready and retries until the store is fixed: {cause}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(retryable: bool) -> WriteError {
        WriteError {
            store: "postgres",
            target: "db:5432/button".into(),
            events: 3,
            source: Arc::new(std::io::Error::other("column \"cohort\" does not exist")),
            retryable,
        }
    }

    #[test]
    fn a_permanent_failure_makes_the_sink_unready_with_its_cause_until_a_write_succeeds() {
        let health = Health::default();
        assert_eq!(health.unready(), None);
        health.record("postgres", Err(&failure(false)));
        let unready = health.unready().unwrap();
        assert!(
            unready.starts_with("postgres: cannot write 3 events to db:5432/button: column \"cohort\" does not exist (for "),
            "{unready}"
        );
        health.record("postgres", Ok(()));
        assert_eq!(health.unready(), None);
    }

    #[test]
    fn a_transient_failure_does_not_make_the_sink_unready() {
        let health = Health::default();
        health.record("clickhouse", Err(&failure(true)));
        assert_eq!(health.unready(), None);
    }
}
