//! The consumer group's lag: for every partition of the topic (not only this
//! member's), the messages between the group's committed offset and the end of
//! the partition (its high watermark). The arithmetic is pure and tested; the
//! probe that asks the broker runs as a task of its own, its blocking librdkafka
//! calls on the blocking pool, so the sink's loop never waits for it. The probe
//! has a client of its own (in the group, never joining it): its requests do not
//! queue behind the member's JoinGroup, which can take long during a rebalance.
//!
//! Each partition's lag is kept, so the watchdog can tell what waits outside this
//! member's assignment; the probe also counts the group's members. Guarantee: a
//! total is reported only when every partition's answer is consistent. A
//! partition whose end offset is below the group's committed offset cannot be
//! right (Tansu 0.6 reports such watermarks; a truncated log can too), so its lag
//! is unknown and so is the total: never `0` while messages may wait.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How long one request of a measurement may take: a slower answer is a missed
/// reading, not a stuck probe.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What the broker says about one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    /// The partition.
    pub partition: i32,
    /// The group's committed offset (the next message to read), if any.
    pub committed: Option<i64>,
    /// The first offset still in the log.
    pub low: i64,
    /// The offset the next produced message will get (the high watermark).
    pub high: i64,
}

/// The group's lag over the whole topic.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupLag {
    /// Messages waiting in each partition; `None` where the broker's answer is
    /// inconsistent (end offset below the committed offset).
    pub partitions: BTreeMap<i32, Option<u64>>,
    /// The sum of the committed offsets: it grows whenever any member of the
    /// group commits, so an unchanged sum means nobody is making progress.
    pub committed: i64,
}

impl GroupLag {
    /// Adds up the partitions. A partition with no committed offset waits from its
    /// first retained message (the sink starts at the earliest offset), and a
    /// committed offset older than the retained log counts from the log's start.
    pub fn of(partitions: &[PartitionOffsets]) -> GroupLag {
        let mut lag = GroupLag::default();
        for p in partitions {
            let committed = p.committed.filter(|c| *c >= 0);
            lag.committed += committed.unwrap_or(0);
            let from = committed.unwrap_or(p.low).max(p.low);
            let waiting = (p.high >= from).then(|| (p.high - from) as u64);
            lag.partitions.insert(p.partition, waiting);
        }
        lag
    }

    /// Messages waiting in the whole topic, when every partition is known.
    pub fn total(&self) -> Option<u64> {
        self.partitions.values().copied().sum()
    }

    /// Messages known to wait: a lower bound when some partitions are unknown.
    pub fn at_least(&self) -> u64 {
        self.partitions.values().flatten().sum()
    }

    /// Partitions whose lag is unknown.
    pub fn unknown(&self) -> usize {
        self.partitions.values().filter(|w| w.is_none()).count()
    }

    /// Messages known to wait in the partitions outside `owned`.
    pub fn waiting_outside(&self, owned: &BTreeSet<i32>) -> u64 {
        self.partitions
            .iter()
            .filter(|(p, _)| !owned.contains(p))
            .filter_map(|(_, w)| *w)
            .sum()
    }
}

/// One look at the group: its lag, its size, and when it last made progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupReading {
    /// The lag.
    pub lag: GroupLag,
    /// How many members the coordinator lists (`None` when it does not say).
    pub members: Option<usize>,
    /// When it was measured.
    pub measured_at: Instant,
    /// The first measurement that saw the group's committed offsets as they are
    /// now: the group has made no progress since (as far as the probe can tell).
    pub progressed_at: Instant,
}

impl GroupReading {
    /// The reading of `lag` and `members` taken at `now`, following `previous`.
    pub fn next(
        previous: Option<&GroupReading>,
        lag: GroupLag,
        members: Option<usize>,
        now: Instant,
    ) -> GroupReading {
        let progressed_at = match previous {
            Some(p) if p.lag.committed == lag.committed => p.progressed_at,
            _ => now,
        };
        GroupReading {
            lag,
            members,
            measured_at: now,
            progressed_at,
        }
    }
}

/// Asks the broker for the committed offsets of `consumer`'s group and the
/// watermarks of every partition of `topic`. Blocking: call it off the runtime.
pub fn measure<X: ConsumerContext>(
    consumer: &impl Consumer<X>,
    topic: &str,
    timeout: Duration,
) -> KafkaResult<GroupLag> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut tpl = TopicPartitionList::new();
    for t in metadata.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            tpl.add_partition(topic, p.id());
        }
    }
    let committed = consumer.committed_offsets(tpl.clone(), timeout)?;
    let mut partitions = Vec::with_capacity(tpl.count());
    for e in tpl.elements() {
        let (low, high) = consumer.fetch_watermarks(topic, e.partition(), timeout)?;
        let committed = committed
            .find_partition(topic, e.partition())
            .and_then(|c| match c.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            });
        partitions.push(PartitionOffsets {
            partition: e.partition(),
            committed,
            low,
            high,
        });
    }
    Ok(GroupLag::of(&partitions))
}

/// How many members the coordinator lists for `group`. Blocking.
pub fn count_members<X: ConsumerContext>(
    client: &impl Consumer<X>,
    group: &str,
    timeout: Duration,
) -> KafkaResult<usize> {
    let list = client.fetch_group_list(Some(group), timeout)?;
    Ok(list
        .groups()
        .iter()
        .filter(|g| g.name() == group)
        .map(|g| g.members().len())
        .sum())
}

/// A client for [`spawn_probe`]: in `group` (to read its committed offsets) but
/// never subscribing, so it is no member and commits nothing.
pub fn probe_client(mut config: ClientConfig, group: &str) -> KafkaResult<BaseConsumer> {
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
}

/// Looks at `group` (its lag on `topic`, its members) with `client` every
/// `every` until `stop`, publishing each reading (`None` while the broker cannot
/// be asked for the lag) on the returned channel.
pub fn spawn_probe(
    client: BaseConsumer,
    group: String,
    topic: String,
    every: Duration,
    stop: CancellationToken,
) -> watch::Receiver<Option<GroupReading>> {
    let client = Arc::new(client);
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let mut previous: Option<GroupReading> = None;
        loop {
            let (c, g, t) = (client.clone(), group.clone(), topic.clone());
            let measured = tokio::task::spawn_blocking(move || {
                let lag = measure(c.as_ref(), &t, REQUEST_TIMEOUT)?;
                // The group's size is a hint: a lag without it is still a reading.
                let members = count_members(c.as_ref(), &g, REQUEST_TIMEOUT).ok();
                Ok::<_, rdkafka::error::KafkaError>((lag, members))
            })
            .await;
            let reading = match measured {
                Ok(Ok((lag, members))) => Some(GroupReading::next(
                    previous.as_ref(),
                    lag,
                    members,
                    Instant::now(),
                )),
                Ok(Err(e)) => {
                    tracing::debug!("cannot measure the group's lag: {e}");
                    None
                }
                Err(e) => {
                    tracing::warn!("the lag probe failed: {e}");
                    None
                }
            };
            // A failed reading keeps the last known progress instant: the group did
            // not progress just because the broker was slow to answer once.
            if reading.is_some() {
                previous.clone_from(&reading);
            }
            tx.send_replace(reading);
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Partitions 0, 1, 2... with (committed, low, high).
    fn lag(offsets: &[(Option<i64>, i64, i64)]) -> GroupLag {
        let partitions: Vec<_> = offsets
            .iter()
            .zip(0..)
            .map(|(&(committed, low, high), partition)| PartitionOffsets {
                partition,
                committed,
                low,
                high,
            })
            .collect();
        GroupLag::of(&partitions)
    }

    #[test]
    fn lag_covers_every_partition_of_the_topic() {
        let l = lag(&[(Some(10), 0, 15), (Some(7), 0, 7), (Some(0), 0, 100)]);
        assert_eq!(l.total(), Some(105));
        assert_eq!(l.committed, 17);
    }

    #[test]
    fn a_partition_without_a_commit_waits_from_its_first_retained_message() {
        let l = lag(&[(None, 20, 50), (Some(-1001), 0, 5)]);
        assert_eq!(l.total(), Some(35));
        assert_eq!(l.committed, 0);
    }

    #[test]
    fn messages_deleted_by_retention_do_not_wait() {
        assert_eq!(lag(&[(Some(3), 10, 12)]).total(), Some(2));
    }

    #[test]
    fn an_end_offset_below_the_commit_makes_the_total_unknown_not_zero() {
        // Tansu 0.6: the high watermark of a partition holding 30000 records was 10001.
        let l = lag(&[(Some(30000), 0, 10001), (Some(5), 0, 9)]);
        assert_eq!(l.total(), None);
        assert_eq!(
            l.at_least(),
            4,
            "a lower bound from the consistent partitions"
        );
        assert_eq!(l.unknown(), 1);
    }

    #[test]
    fn an_empty_topic_has_no_lag() {
        assert_eq!(lag(&[(None, 0, 0)]).total(), Some(0));
        assert_eq!(lag(&[]).total(), Some(0));
    }

    #[test]
    fn waiting_outside_counts_only_the_partitions_not_owned() {
        let l = lag(&[(Some(0), 0, 5), (Some(0), 0, 7), (Some(9), 0, 1)]);
        assert_eq!(l.waiting_outside(&BTreeSet::new()), 12);
        assert_eq!(l.waiting_outside(&BTreeSet::from([1])), 5);
        assert_eq!(
            l.waiting_outside(&BTreeSet::from([0, 1])),
            0,
            "unknown counts as nothing"
        );
    }

    #[test]
    fn progress_is_dated_from_the_first_reading_that_saw_the_current_commits() {
        let t0 = Instant::now();
        let lag = |committed| GroupLag {
            partitions: BTreeMap::from([(0, Some(5))]),
            committed,
        };
        let first = GroupReading::next(None, lag(10), Some(1), t0);
        assert_eq!(first.progressed_at, t0);
        let same = GroupReading::next(Some(&first), lag(10), Some(1), t0 + Duration::from_secs(5));
        assert_eq!(same.progressed_at, t0);
        assert_eq!(same.measured_at, t0 + Duration::from_secs(5));
        let moved = GroupReading::next(Some(&same), lag(11), Some(1), t0 + Duration::from_secs(9));
        assert_eq!(moved.progressed_at, t0 + Duration::from_secs(9));
    }
}
