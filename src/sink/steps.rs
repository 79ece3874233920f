//! The sink's loop, as steps a test can drive: [`fill`] a batch from the
//! [`Input`], [`store`] it in the [`Output`], and only then hand its offsets back
//! to the input ([`Input::stored`]) to be committed. Guarantee: no offset is
//! stored for a batch that some store does not have in full; a batch that cannot
//! be stored before the drain timeout on shutdown is left to be redelivered.
//!
//! The input is the consumer group in production ([`super::member::GroupInput`])
//! and a list of records in this file's tests; the output is the stores and the
//! dead-letter topic ([`super::write::Destinations`]) or a recording fake.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::batch::{Batch, BatchLimits, DeadLetter};
use crate::kafka::reader::Record;

/// Where messages come from, and where finished batches are acknowledged.
pub trait Input {
    /// The next message, or `None` when `wait` passed first. An error stops the
    /// sink (transient read errors are the input's to log and retry).
    async fn next(&mut self, wait: Duration) -> anyhow::Result<Option<Record>>;

    /// Work between messages and batches: the progress line, the group's
    /// watchdog. An error stops the sink.
    fn upkeep(&mut self) -> anyhow::Result<()>;

    /// Called about once a second while a batch is being stored: the progress
    /// line goes on during a long outage.
    fn storing(&mut self);

    /// Every store has `batch`: its offsets may be committed.
    fn stored(&mut self, batch: &Batch);
}

/// Where a batch goes.
pub trait Output {
    /// Returns once every event of `batch` is stored and every dead letter is
    /// confirmed, retrying for as long as it takes.
    async fn store(&self, batch: &Batch);
}

/// What [`fill`] ended with.
#[derive(Debug)]
pub struct Filled {
    /// The messages taken; possibly empty.
    pub batch: Batch,
    /// Shutdown was asked for: store this batch, then stop.
    pub stopping: bool,
}

/// Reads messages into a new batch until it is ready by `limits`, doing the
/// input's upkeep while none come, or until shutdown.
pub async fn fill(
    input: &mut impl Input,
    limits: &BatchLimits,
    shutdown: &CancellationToken,
) -> anyhow::Result<Filled> {
    let mut batch = Batch::new();
    loop {
        let now = Instant::now();
        if batch.is_ready(limits, now) {
            return Ok(Filled {
                batch,
                stopping: false,
            });
        }
        // An empty batch waits a second at a time, so that upkeep runs.
        let wait = batch
            .deadline(limits)
            .map_or(Duration::from_secs(1), |d| d - now);
        let next = tokio::select! {
            () = shutdown.cancelled() => return Ok(Filled { batch, stopping: true }),
            next = input.next(wait) => next?,
        };
        let Some(record) = next else {
            input.upkeep()?;
            continue; // the deadline check above closes a waiting batch
        };
        let bytes = record.len();
        match record.event {
            Ok(event) => batch.push(
                record.partition,
                record.offset,
                bytes,
                event,
                Instant::now(),
            ),
            Err(reason) => batch.push_dead(
                DeadLetter {
                    partition: record.partition,
                    offset: record.offset,
                    key: record.key,
                    value: record.value,
                    reason: reason.to_string(),
                },
                Instant::now(),
            ),
        }
    }
}

/// Stores `batch` for as long as it takes, or, once shutdown is asked for, for
/// `drain_timeout` more; then acknowledges it to the input. Returns whether it
/// was stored; `stopping` becomes true when shutdown came meanwhile.
pub async fn store(
    input: &mut impl Input,
    output: &impl Output,
    batch: &Batch,
    drain_timeout: Duration,
    stopping: &mut bool,
    shutdown: &CancellationToken,
) -> bool {
    let write = output.store(batch);
    tokio::pin!(write);
    let mut beat = tokio::time::interval(Duration::from_secs(1));
    beat.reset(); // the first beat a second from now, not at once
    let mut draining = stopping.then(|| tokio::time::Instant::now() + drain_timeout);
    let done = loop {
        tokio::select! {
            biased;
            () = &mut write => break true,
            () = shutdown.cancelled(), if draining.is_none() => {
                *stopping = true;
                draining = Some(tokio::time::Instant::now() + drain_timeout);
            }
            // Not polled (only built) while not draining.
            () = tokio::time::sleep_until(draining.unwrap_or_else(tokio::time::Instant::now)), if draining.is_some() => break false,
            _ = beat.tick() => input.storing(),
        }
    };
    if done {
        input.stored(batch);
    } else {
        tracing::warn!(
            events = batch.len(),
            "could not store the open batch before the drain timeout; it will be redelivered"
        );
    }
    done
}

/// The loop: fill, store, acknowledge, until shutdown; the open batch is stored
/// (within `drain_timeout`) before it returns.
pub async fn run(
    input: &mut impl Input,
    output: &impl Output,
    limits: &BatchLimits,
    drain_timeout: Duration,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let mut stopping = false;
    while !stopping {
        let filled = fill(input, limits, shutdown).await?;
        stopping = filled.stopping;
        if !filled.batch.is_empty() {
            store(
                input,
                output,
                &filled.batch,
                drain_timeout,
                &mut stopping,
                shutdown,
            )
            .await;
        }
        if !stopping {
            input.upkeep()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The loop against a scripted input and a recording output: fakes, because
    //! what is tested here is the order of the steps, which a real broker and real
    //! stores cannot be paused between. `tests/sink/` runs the same loop against
    //! Tansu, PostgreSQL and ClickHouse.

    use std::collections::VecDeque;
    use std::sync::Mutex;

    use tokio::sync::Semaphore;

    use super::*;
    use crate::domain::PressEvent;
    use crate::encoding::DecodeError;

    const LIMITS: BatchLimits = BatchLimits {
        max_events: 3,
        max_bytes: 1 << 20,
        max_wait: Duration::from_millis(50),
    };

    #[derive(Default)]
    struct Script {
        records: VecDeque<Record>,
        /// Offsets acknowledged, batch by batch.
        stored: Vec<Vec<(i32, i64)>>,
        upkeeps: usize,
        storing: usize,
    }

    impl Input for Script {
        async fn next(&mut self, wait: Duration) -> anyhow::Result<Option<Record>> {
            match self.records.pop_front() {
                Some(r) => Ok(Some(r)),
                None => {
                    tokio::time::sleep(wait).await;
                    Ok(None)
                }
            }
        }
        fn upkeep(&mut self) -> anyhow::Result<()> {
            self.upkeeps += 1;
            Ok(())
        }
        fn storing(&mut self) {
            self.storing += 1;
        }
        fn stored(&mut self, batch: &Batch) {
            self.stored
                .push(batch.offsets.iter().map(|(p, o)| (*p, *o)).collect());
        }
    }

    /// Stores a batch once the test releases a permit for it.
    struct Gated {
        permits: Semaphore,
        batches: Mutex<Vec<usize>>,
    }

    impl Gated {
        fn closed() -> Self {
            Gated {
                permits: Semaphore::new(0),
                batches: Mutex::new(Vec::new()),
            }
        }
        fn open() -> Self {
            let g = Self::closed();
            g.permits.add_permits(1000);
            g
        }
        fn written(&self) -> Vec<usize> {
            self.batches.lock().unwrap().clone()
        }
    }

    impl Output for Gated {
        async fn store(&self, batch: &Batch) {
            self.permits.acquire().await.unwrap().forget();
            self.batches.lock().unwrap().push(batch.len());
        }
    }

    fn record(partition: i32, offset: i64) -> Record {
        Record {
            partition,
            offset,
            key: None,
            value: Some(vec![0; 10]),
            event: Ok(PressEvent::example()),
        }
    }

    fn junk(partition: i32, offset: i64) -> Record {
        Record {
            event: Err(DecodeError::Empty),
            value: None,
            ..record(partition, offset)
        }
    }

    fn script(records: impl IntoIterator<Item = Record>) -> Script {
        Script {
            records: records.into_iter().collect(),
            ..Script::default()
        }
    }

    /// Fills a batch from `input`, then stores it in a closed `output` that is
    /// held for `held` (the step must not finish meanwhile) and then opened.
    /// Returns whether the step stored the batch.
    async fn store_held_for(input: &mut Script, output: &Gated, held: Duration) -> bool {
        let shutdown = CancellationToken::new();
        let filled = fill(input, &LIMITS, &shutdown).await.unwrap();
        let mut stopping = false;
        let step = store(
            input,
            output,
            &filled.batch,
            Duration::from_secs(5),
            &mut stopping,
            &shutdown,
        );
        tokio::pin!(step);
        assert!(
            tokio::time::timeout(held, &mut step).await.is_err(),
            "the step finished while the output held the write"
        );
        output.permits.add_permits(1);
        step.await
    }

    #[tokio::test]
    async fn a_batch_closes_at_the_event_limit_with_its_dead_letters_and_highest_offsets() {
        let mut input = script([record(0, 1), junk(1, 4), record(0, 2), record(2, 9)]);
        let filled = fill(&mut input, &LIMITS, &CancellationToken::new())
            .await
            .unwrap();
        assert!(!filled.stopping);
        assert_eq!((filled.batch.events.len(), filled.batch.dead.len()), (2, 1));
        assert_eq!(
            filled.batch.offsets.into_iter().collect::<Vec<_>>(),
            vec![(0, 2), (1, 4)]
        );
        assert_eq!(
            input.records.len(),
            1,
            "the fourth message waits for the next batch"
        );
    }

    #[tokio::test]
    async fn a_batch_that_is_not_full_closes_when_it_is_old_and_upkeep_runs_meanwhile() {
        let mut input = script([record(0, 1)]);
        let filled = fill(&mut input, &LIMITS, &CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(filled.batch.len(), 1);
        assert!(input.upkeeps >= 1, "upkeep runs while no message comes");
    }

    #[tokio::test]
    async fn offsets_are_acknowledged_only_after_the_output_has_the_batch() {
        let mut input = script([record(0, 1), record(0, 2), record(1, 3)]);
        let output = Gated::closed();
        // While the output holds the write, nothing is acknowledged.
        let stored = store_held_for(&mut input, &output, Duration::from_millis(100)).await;
        assert!(stored, "stored once the output had it");
        assert_eq!(output.written(), vec![3]);
        assert_eq!(input.stored, vec![vec![(0, 2), (1, 3)]]);
    }

    #[tokio::test]
    async fn on_shutdown_the_open_batch_is_stored_and_acknowledged_before_the_loop_ends() {
        let mut input = script([record(0, 1), record(0, 2)]);
        let output = Gated::open();
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let limits = BatchLimits {
            max_wait: Duration::from_secs(3600),
            ..LIMITS
        };
        {
            let looped = run(
                &mut input,
                &output,
                &limits,
                Duration::from_secs(5),
                &shutdown,
            );
            tokio::pin!(looped);
            // Two messages in a batch that would wait an hour; then a stop.
            assert!(
                tokio::time::timeout(Duration::from_millis(100), &mut looped)
                    .await
                    .is_err()
            );
            stop.cancel();
            looped.await.unwrap();
        }
        assert_eq!(output.written(), vec![2]);
        assert_eq!(input.stored, vec![vec![(0, 2)]]);
    }

    #[tokio::test]
    async fn a_batch_the_output_cannot_take_before_the_drain_timeout_is_not_acknowledged() {
        let mut input = script([record(0, 1), record(0, 2), record(0, 3)]);
        let output = Gated::closed();
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            stop.cancel();
        });
        let started = Instant::now();
        run(
            &mut input,
            &output,
            &LIMITS,
            Duration::from_millis(200),
            &shutdown,
        )
        .await
        .unwrap();
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(output.written().is_empty());
        assert!(input.stored.is_empty(), "left to be redelivered");
    }

    #[tokio::test]
    async fn the_input_hears_about_a_long_store_every_second() {
        let mut input = script([record(0, 1), record(0, 2), record(0, 3)]);
        let output = Gated::closed();
        let stored = store_held_for(&mut input, &output, Duration::from_millis(2500)).await;
        assert!(stored);
        assert_eq!(input.storing, 2);
    }

    #[tokio::test]
    async fn an_input_error_stops_the_loop_with_it() {
        struct Broken;
        impl Input for Broken {
            async fn next(&mut self, _: Duration) -> anyhow::Result<Option<Record>> {
                anyhow::bail!("fenced")
            }
            fn upkeep(&mut self) -> anyhow::Result<()> {
                Ok(())
            }
            fn storing(&mut self) {}
            fn stored(&mut self, _: &Batch) {}
        }
        let err = run(
            &mut Broken,
            &Gated::open(),
            &LIMITS,
            Duration::from_secs(1),
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.to_string(), "fenced");
    }
}
