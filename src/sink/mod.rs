//! `button sink`: one member of a Kafka consumer group that writes every event to
//! PostgreSQL and/or ClickHouse, effectively once.
//!
//! Guarantee: at-least-once delivery from Kafka, made exactly-once in what the
//! statistics queries return by idempotent writes (every store deduplicates on
//! `event_id`). The order of operations is what makes this hold:
//!
//! 1. take messages into a [`Batch`] until it is full (count, bytes) or old;
//! 2. write the batch to every configured store (concurrently), retrying
//!    transient failures with capped, jittered backoff for as long as it takes:
//!    a database that is down pauses consumption, it never skips data;
//! 3. send undecodable messages to the dead-letter topic `<topic>.dlq` (the reason
//!    in the `error` header) and wait for the broker's confirmation;
//! 4. only then store the batch's offsets; librdkafka commits stored offsets in
//!    the background and once more, synchronously, on shutdown.
//!
//! A crash anywhere before step 4 redelivers the batch to whichever member owns the
//! partitions next; the stores absorb the repeat. A permanent write error (bad
//! schema, say) is also retried, loudly, because skipping would lose presses: fix
//! the store and the sink carries on. On SIGTERM the sink finishes the open batch
//! (within `--drain-timeout`), commits, leaves the group and exits 0.

pub mod batch;
pub mod retry;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use futures::future::join_all;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, TopicPartitionList};
use tokio_util::sync::CancellationToken;

pub use batch::{Batch, BatchLimits, DeadLetter};
pub use retry::Backoff;

use crate::config::{ChArgs, ChConfig, KafkaArgs, PgArgs, PgConfig, RegistryArgs};
use crate::kafka::SchemaRegistry;
use crate::store::clickhouse::ChStore;
use crate::store::postgres::PgStore;
use crate::store::{EventStore, WriteError};

/// Settings of `button sink`.
#[derive(Debug, Clone, Args)]
pub struct SinkArgs {
    /// Kafka connection and topic.
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Schema registry, to decode Avro written with other schema versions.
    #[command(flatten)]
    pub registry: RegistryArgs,

    /// PostgreSQL to write to.
    #[command(flatten)]
    pub postgres: PgArgs,

    /// ClickHouse to write to.
    #[command(flatten)]
    pub clickhouse: ChArgs,

    /// Consumer group; run several sinks with the same group to share partitions.
    #[arg(long, env = "BUTTON_SINK_GROUP", default_value = "button-sink")]
    pub group: String,

    /// Most events in one batch.
    #[arg(long, env = "BUTTON_BATCH_MAX_EVENTS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_max_events: u64,

    /// Most message bytes in one batch.
    #[arg(long, env = "BUTTON_BATCH_MAX_BYTES", default_value_t = 8 << 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_max_bytes: u64,

    /// Longest a batch waits for more messages.
    #[arg(long, env = "BUTTON_BATCH_MAX_WAIT", default_value = "500ms", value_parser = crate::config::parse::duration)]
    pub batch_max_wait: Duration,

    /// On SIGTERM, how long to keep trying to store the open batch before giving up
    /// (it is then redelivered, not lost). Keep it below the group session timeout.
    #[arg(long, env = "BUTTON_DRAIN_TIMEOUT", default_value = "8s", value_parser = crate::config::parse::duration)]
    pub drain_timeout: Duration,

    /// How often progress and lag are logged.
    #[arg(long, env = "BUTTON_PROGRESS_EVERY", default_value = "10s", value_parser = crate::config::parse::duration)]
    pub progress_every: Duration,
}

impl SinkArgs {
    fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_events: self.batch_max_events as usize,
            max_bytes: self.batch_max_bytes as usize,
            max_wait: self.batch_max_wait,
        }
    }
}

/// Logs rebalances and commit failures.
pub struct SinkContext;

impl ClientContext for SinkContext {}

impl ConsumerContext for SinkContext {
    fn post_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = ?partitions(tpl), "partitions assigned")
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = ?partitions(tpl), "partitions revoked")
            }
            Rebalance::Error(e) => tracing::warn!("rebalance failed: {e}"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _: &TopicPartitionList) {
        if let Err(e) = result {
            // Nothing to commit is normal when no batch finished since the last commit.
            if !matches!(
                e,
                KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)
            ) {
                tracing::warn!("offset commit failed: {e}");
            }
        }
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

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

/// `button sink`.
pub async fn run(args: SinkArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let stores = connect_stores(
        args.postgres.config().as_ref(),
        args.clickhouse.config().as_ref(),
    )
    .await?;
    let names: Vec<_> = stores.iter().map(|s| s.name()).collect();
    let registry = args.registry.config().as_ref().map(SchemaRegistry::new);
    let kafka = args.kafka.require()?;
    let topic = kafka.topic.clone();

    let mut config = crate::kafka::client_config(&kafka)?;
    config
        .set("group.id", &args.group)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        // Offsets are stored by hand, after the stores have the batch.
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // A member that dies is replaced within seconds, not the default 45.
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "2000");
    let consumer: StreamConsumer<SinkContext> = config.create_with_context(SinkContext)?;
    consumer
        .subscribe(&[&topic])
        .with_context(|| format!("cannot subscribe to {topic}"))?;

    let mut dlq_config = crate::kafka::client_config(&kafka)?;
    dlq_config
        .set("acks", "all")
        .set("enable.idempotence", "true");
    let dlq: FutureProducer = dlq_config.create()?;
    let dlq_topic = crate::kafka::admin::dead_letter_topic(&topic);
    // Without it, a bad message would stall the sink; `migrate` creates it, and a
    // broker that allows it gets one here (one partition, one replica).
    crate::kafka::admin::ensure_named_topic(&kafka, &dlq_topic, 1, 1).await.with_context(|| {
        format!("the dead-letter topic {dlq_topic} is missing and cannot be created: run `button migrate --kafka-brokers ... --replication-factor N`")
    })?;

    tracing::info!(%topic, group = %args.group, stores = ?names, "sink started");
    let limits = args.limits();
    let mut progress = Progress::new(args.progress_every);
    let mut stopping = false;
    while !stopping {
        let mut batch = Batch::new();
        // Fill the batch.
        loop {
            let now = Instant::now();
            if batch.is_ready(&limits, now) {
                break;
            }
            let wait = batch
                .deadline(&limits)
                .map_or(Duration::from_secs(1), |d| d - now);
            let received = tokio::select! {
                () = shutdown.cancelled() => { stopping = true; break }
                r = tokio::time::timeout(wait, consumer.recv()) => r,
            };
            let msg = match received {
                Err(_) => {
                    progress.maybe_log(&consumer, &topic);
                    continue; // the deadline check above closes a waiting batch
                }
                Ok(Err(e)) => {
                    tracing::warn!("cannot read from Kafka (retrying): {e}");
                    continue;
                }
                Ok(Ok(m)) => m,
            };
            let (partition, offset) = (msg.partition(), msg.offset());
            let bytes = msg.payload().map_or(0, <[u8]>::len);
            match decode(msg.payload(), registry.as_ref()).await {
                Ok(event) => batch.push(partition, offset, bytes, event, Instant::now()),
                Err(reason) => batch.push_dead(
                    DeadLetter {
                        partition,
                        offset,
                        key: msg.key().map(<[u8]>::to_vec),
                        value: msg.payload().map(<[u8]>::to_vec),
                        reason,
                    },
                    Instant::now(),
                ),
            }
        }
        if batch.is_empty() {
            continue;
        }
        // Stored for as long as it takes; once stopping, for `drain_timeout` more, after
        // which the batch is left to be redelivered.
        let store = store_batch(&stores, &dlq, &dlq_topic, &topic, &batch);
        tokio::pin!(store);
        let stored = tokio::select! {
            biased;
            () = &mut store => Some(()),
            () = shutdown.cancelled() => {
                stopping = true;
                tokio::time::timeout(args.drain_timeout, &mut store).await.ok()
            }
        };
        match stored {
            Some(()) => {
                for (partition, offset) in &batch.offsets {
                    // librdkafka stores offset + 1: the next message to read.
                    if let Err(e) = consumer.store_offset(&topic, *partition, *offset) {
                        // The partition moved to another member; it will redo the batch.
                        tracing::debug!(partition, "offset not stored: {e}");
                    }
                }
                progress.add(batch.events.len(), batch.dead.len());
            }
            None => tracing::warn!(
                events = batch.len(),
                "could not store the open batch before the drain timeout; it will be redelivered"
            ),
        }
        progress.maybe_log(&consumer, &topic);
    }

    // Commit what was stored, then leave the group.
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) | Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => tracing::warn!("final offset commit failed: {e}"),
    }
    consumer.unsubscribe();
    progress.log_total();
    tracing::info!("sink stopped");
    Ok(())
}

async fn decode(
    payload: Option<&[u8]>,
    registry: Option<&SchemaRegistry>,
) -> Result<crate::domain::PressEvent, String> {
    match payload {
        None | Some([]) => Err("empty message".into()),
        Some(bytes) => crate::kafka::decode_value(bytes, registry)
            .await
            .map_err(|e| e.to_string()),
    }
}

/// Writes the batch to every store and the dead letters to the DLQ, retrying until
/// all succeed.
async fn store_batch(
    stores: &[Arc<dyn EventStore>],
    dlq: &FutureProducer,
    dlq_topic: &str,
    source_topic: &str,
    batch: &Batch,
) {
    let writes = stores
        .iter()
        .map(|s| write_with_retry(s.as_ref(), &batch.events));
    join_all(writes).await;
    for letter in &batch.dead {
        send_dead_letter(dlq, dlq_topic, source_topic, letter).await;
    }
}

async fn write_with_retry(store: &dyn EventStore, events: &[crate::domain::PressEvent]) {
    if events.is_empty() {
        return;
    }
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    loop {
        let started = Instant::now();
        match store.write(events).await {
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
            Err(e) => log_write_failure(&e, backoff.attempts()),
        }
        let delay = backoff.next_delay(&mut rand::rng());
        tokio::time::sleep(delay).await;
    }
}

fn log_write_failure(e: &WriteError, attempts: u32) {
    // Every failure while few, then every tenth: a long outage should not flood the log.
    if attempts < 5 || attempts % 10 == 0 {
        if e.retryable {
            tracing::warn!(attempts, "write failed, retrying: {e}");
        } else {
            tracing::error!(
                attempts,
                "write failed and cannot succeed as things are; retrying until the store is fixed: {e}"
            );
        }
    }
}

async fn send_dead_letter(
    dlq: &FutureProducer,
    dlq_topic: &str,
    source_topic: &str,
    letter: &DeadLetter,
) {
    let partition = letter.partition.to_string();
    let offset = letter.offset.to_string();
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "error",
            value: Some(letter.reason.as_str()),
        })
        .insert(Header {
            key: "source.topic",
            value: Some(source_topic),
        })
        .insert(Header {
            key: "source.partition",
            value: Some(partition.as_str()),
        })
        .insert(Header {
            key: "source.offset",
            value: Some(offset.as_str()),
        });
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    loop {
        let mut record = FutureRecord::<[u8], [u8]>::to(dlq_topic).headers(headers.clone());
        if let Some(k) = &letter.key {
            record = record.key(k.as_slice());
        }
        if let Some(v) = &letter.value {
            record = record.payload(v.as_slice());
        }
        match dlq.send(record, Duration::from_secs(5)).await {
            Ok(_) => {
                tracing::warn!(partition = letter.partition, offset = letter.offset, reason = %letter.reason, "message sent to the dead-letter topic");
                return;
            }
            Err((e, _)) => {
                tracing::warn!("cannot send to the dead-letter topic {dlq_topic} (retrying): {e}")
            }
        }
        let delay = backoff.next_delay(&mut rand::rng());
        tokio::time::sleep(delay).await;
    }
}

/// Counts and periodic progress lines.
struct Progress {
    every: Duration,
    last: Instant,
    started: Instant,
    events: u64,
    dead: u64,
    since_last: u64,
}

impl Progress {
    fn new(every: Duration) -> Self {
        let now = Instant::now();
        Progress {
            every,
            last: now,
            started: now,
            events: 0,
            dead: 0,
            since_last: 0,
        }
    }

    fn add(&mut self, events: usize, dead: usize) {
        self.events += events as u64;
        self.dead += dead as u64;
        self.since_last += events as u64;
    }

    fn maybe_log(&mut self, consumer: &StreamConsumer<SinkContext>, topic: &str) {
        if self.last.elapsed() < self.every {
            return;
        }
        let rate = self.since_last as f64 / self.last.elapsed().as_secs_f64();
        let lag = tokio::task::block_in_place(|| lag(consumer, topic));
        tracing::info!(events = self.events, dead_letters = self.dead, events_per_s = rate.round() as u64, lag = ?lag, "sink progress");
        self.last = Instant::now();
        self.since_last = 0;
    }

    fn log_total(&self) {
        let secs = self.started.elapsed().as_secs_f64();
        tracing::info!(
            events = self.events,
            dead_letters = self.dead,
            seconds = secs.round() as u64,
            "sink totals"
        );
    }
}

/// Messages between this member's position and the end of its partitions
/// (`None` when the broker does not say).
fn lag(consumer: &StreamConsumer<SinkContext>, topic: &str) -> Option<i64> {
    let assigned = consumer.assignment().ok()?;
    let positions = consumer.position().ok()?;
    let mut total = 0;
    for e in assigned.elements_for_topic(topic) {
        let (_, high) = consumer
            .fetch_watermarks(topic, e.partition(), Duration::from_secs(1))
            .ok()?;
        let pos = positions
            .find_partition(topic, e.partition())
            .and_then(|p| p.offset().to_raw())
            .filter(|o| *o >= 0)
            .unwrap_or(0);
        total += (high - pos).max(0);
    }
    Some(total)
}
