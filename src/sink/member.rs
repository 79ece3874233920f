//! This sink as a member of its consumer group: what the coordinator assigned
//! it (kept by the rebalance callbacks), the group as the loop's [`Input`], and
//! the upkeep between batches: the progress line, and the [`Watchdog`]'s decision
//! to leave and rejoin when partitions wait with nobody (see [`super::watchdog`]
//! for when, and why).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, TopicPartitionList};
use tokio::sync::watch;

use super::batch::Batch;
use super::lag::GroupReading;
use super::progress::Progress;
use super::steps::Input;
use super::watchdog::Watchdog;
use super::write::Health;
use crate::kafka::reader::{Next, Reader, Record};
use crate::telemetry::metric;

/// Logs rebalances and commit failures, and keeps what the group assigned.
#[derive(Debug, Default)]
pub struct SinkContext {
    /// The partitions the coordinator assigned to this member; `None` while it
    /// joins (before the first assignment, and from a revocation to the next).
    owned: Mutex<Option<BTreeSet<i32>>>,
}

impl SinkContext {
    /// The partitions this member owns, or `None` while it joins the group.
    pub fn owned(&self) -> Option<BTreeSet<i32>> {
        self.owned.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_owned(&self, owned: Option<BTreeSet<i32>>) {
        *self.owned.lock().unwrap_or_else(|e| e.into_inner()) = owned;
    }
}

impl ClientContext for SinkContext {}

impl ConsumerContext for SinkContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let owned = partitions(tpl);
                tracing::info!(partitions = ?owned, "partitions assigned");
                self.set_owned(Some(owned));
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = ?partitions(tpl), "partitions revoked");
                self.set_owned(None);
            }
            Rebalance::Error(e) => tracing::warn!("rebalance failed: {e}"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _: &TopicPartitionList) {
        match result {
            // Nothing to commit is normal when no batch finished since the last commit.
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => tracing::warn!("offset commit failed: {e}"),
        }
    }
}

fn partitions(tpl: &TopicPartitionList) -> BTreeSet<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

/// How a new member joins: with the configured identity, or without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// As configured: static (`group.instance.id`) when the sink has an instance id.
    Configured,
    /// Dynamic, whatever the configuration says (see [`GroupInput::upkeep`]).
    Dynamic,
}

/// Makes a group reader: the sink's member of its group.
pub type Connect = Box<dyn Fn(Membership) -> anyhow::Result<Reader<SinkContext>> + Send + Sync>;

/// The consumer group as the loop's input.
pub struct GroupInput {
    reader: Reader<SinkContext>,
    connect: Connect,
    /// Whether the current reader is a static member (`group.instance.id`).
    is_static: bool,
    upkeep: Upkeep,
    health: Arc<Health>,
    /// Messages read, looked up once: it counts every message.
    read: metrics::Counter,
}

impl GroupInput {
    /// Reads with a reader from `connect`, which makes a new one (a new member)
    /// whenever the watchdog asks for a rejoin; `is_static` says whether it
    /// makes static members; `health` says whether the stores take writes.
    pub fn new(
        connect: Connect,
        is_static: bool,
        upkeep: Upkeep,
        health: Arc<Health>,
    ) -> anyhow::Result<Self> {
        Ok(GroupInput {
            reader: connect(Membership::Configured)?,
            connect,
            is_static,
            upkeep,
            health,
            read: metrics::counter!(metric::SINK_READ),
        })
    }

    /// Commits what was stored and, unless a static member (whose partitions
    /// wait for it to come back, up to the session timeout, instead of moving
    /// away and back), leaves the group; logs the totals.
    pub fn finish(self) {
        if let Err(e) = self.reader.commit_stored() {
            tracing::warn!("final offset commit failed: {e}");
        }
        if !self.is_static {
            self.reader.leave();
        }
        self.upkeep.progress.log_total();
    }
}

impl Input for GroupInput {
    async fn next(&mut self, deadline: Instant) -> anyhow::Result<Option<Record>> {
        let deadline = tokio::time::Instant::from_std(deadline);
        match tokio::time::timeout_at(deadline, self.reader.next()).await {
            Err(_) => Ok(None),
            Ok(Ok(Next::Record(r))) => {
                self.read.increment(1);
                Ok(Some(r))
            }
            // Only unmanaged readers report the end of a partition.
            Ok(Ok(Next::EndOfPartition(_))) => Ok(None),
            Ok(Err(e)) => {
                if let Some((code, reason)) = self.reader.fatal_error() {
                    anyhow::bail!(
                        "the Kafka consumer cannot go on ({code}: {reason}){}",
                        fatal_hint(code)
                    );
                }
                tracing::warn!("cannot read from Kafka (retrying): {e}");
                Ok(None)
            }
        }
    }

    fn upkeep(&mut self) -> anyhow::Result<()> {
        let unready = self.health.unready();
        if self.upkeep.tick(&self.reader, unready.as_deref()) {
            // A new consumer, not an unsubscribe and subscribe: Tansu 0.6 has been
            // seen to leave a member joining for good, resubscribed or not.
            //
            // A static member comes back as a dynamic one. Rejoining with the
            // same instance id gives back the same member and whatever the
            // coordinator holds for it: an assignment that leaves it nothing, or
            // a leader that is gone and never syncs. Tansu 0.6 expires members
            // only on requests from dynamic members, so in a group of static
            // members a dead one (and its partitions, or its leadership) stays
            // forever. A dynamic member's join expires them, and the abandoned
            // static one too, after the session timeout. On Apache Kafka the
            // watchdog does not fire in a healthy group; if it does, the same
            // path is correct there too (the static member expires; the dynamic
            // one gets the partitions). A restart makes the sink static again.
            if let Err(e) = self.reader.commit_stored() {
                tracing::warn!("offset commit before rejoining failed: {e}");
            }
            if self.is_static {
                tracing::warn!(
                    "rejoining as a dynamic member, without the instance id: the coordinator keeps the static member stranded; the sink is static again after a restart"
                );
                self.is_static = false;
            }
            self.reader = (self.connect)(Membership::Dynamic).with_context(|| {
                format!(
                    "cannot join the group again to read {}",
                    self.reader.topic()
                )
            })?;
        }
        Ok(())
    }

    fn storing(&mut self) {
        let unready = self.health.unready();
        self.upkeep.log_progress(unready.as_deref());
    }

    fn stored(&mut self, batch: &Batch) {
        for (partition, offset) in &batch.offsets {
            if let Err(e) = self.reader.store_offset(*partition, *offset) {
                // The partition moved to another member; it will redo the batch.
                tracing::debug!(partition, "offset not stored: {e}");
            }
        }
        self.upkeep
            .progress
            .add(batch.events.len(), batch.dead.len());
        metrics::counter!(metric::SINK_BATCHES).increment(1);
        metrics::counter!(metric::SINK_EVENTS).increment(batch.events.len() as u64);
        metrics::counter!(metric::SINK_DEAD_LETTERS).increment(batch.dead.len() as u64);
    }
}

/// What to add to a fatal consumer error to say what to do about it.
fn fatal_hint(code: RDKafkaErrorCode) -> &'static str {
    match code {
        RDKafkaErrorCode::FencedInstanceId => {
            "; another sink runs with the same --instance-id: give each replica its own"
        }
        _ => "",
    }
}

/// What the loop does between messages and batches: progress lines and the
/// watchdog, both fed by the lag probe's latest reading.
pub struct Upkeep {
    /// The counts.
    pub progress: Progress,
    watchdog: Watchdog,
    lag: watch::Receiver<Option<GroupReading>>,
}

impl Upkeep {
    /// Upkeep for a member that joins now, with `session_timeout`.
    pub fn new(
        progress_every: Duration,
        session_timeout: Duration,
        lag: watch::Receiver<Option<GroupReading>>,
    ) -> Self {
        let now = Instant::now();
        Upkeep {
            progress: Progress::new(progress_every, now),
            watchdog: Watchdog::new(session_timeout, now),
            lag,
        }
    }

    /// Logs progress when due, with why the sink is `unready` if it is.
    pub fn log_progress(&mut self, unready: Option<&str>) {
        let lag = self.lag.borrow().clone();
        self.progress
            .maybe_log(lag.as_ref().map(|r| &r.lag), unready, Instant::now());
    }

    /// Logs progress when due; `true` when the watchdog says to rejoin the group
    /// (the reason is logged here).
    pub fn tick(&mut self, reader: &Reader<SinkContext>, unready: Option<&str>) -> bool {
        self.log_progress(unready);
        let now = Instant::now();
        let lag = self.lag.borrow().clone();
        self.watchdog.observe(reader.context().owned(), now);
        let Some(stall) = self.watchdog.check(lag.as_ref(), now) else {
            return false;
        };
        let why = if stall.members == Some(1) {
            "the coordinator lists it as the group's only member".to_owned()
        } else {
            format!(
                "the group has committed nothing for {}s (more than {}s)",
                stall.group_idle_for.as_secs(),
                stall.patience.as_secs()
            )
        };
        tracing::warn!(
            waiting_elsewhere = stall.waiting_elsewhere,
            owned = ?stall.owned,
            owned_s = stall.owned_for.as_secs(),
            group_idle_s = stall.group_idle_for.as_secs(),
            members = stall.members,
            "at least {} messages wait in partitions this member does not own; it has owned {} for {}s, and {why}: leaving and rejoining the group so that the coordinator assigns the partitions afresh",
            stall.waiting_elsewhere,
            describe(&stall.owned),
            stall.owned_for.as_secs(),
        );
        true
    }
}

/// `no partition` or `partitions [1, 2]`.
fn describe(owned: &BTreeSet<i32>) -> String {
    if owned.is_empty() {
        "no partition".into()
    } else {
        format!("partitions {:?}", owned.iter().collect::<Vec<_>>())
    }
}
