//! The sink's loop, as steps a test can drive: [`fill`] a batch from the
//! [`Input`], [`start`] storing it in the [`Output`] and fill the next batch
//! while it is written, and only once it is stored hand its offsets back to the
//! input ([`Input::stored`]) to be committed. Guarantee: no offset is stored for a
//! batch that some store does not have in full, and batches are acknowledged in
//! the order they were read; a batch that cannot be stored before the drain
//! timeout on shutdown is left to be redelivered.
//!
//! The pipeline is one batch deep: at most one batch is being written while the
//! next fills, and a full batch waits for the one before it, so memory stays at
//! two batches and a slow store slows reading rather than piling batches up.
//!
//! The input is the consumer group in production ([`super::member::GroupInput`])
//! and a list of records in this file's tests; the output is the stores and the
//! dead-letter topic ([`super::write::Destinations`]) or a recording fake.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::batch::{Batch, BatchLimits, DeadLetter};
use crate::kafka::reader::Record;

/// Where messages come from, and where finished batches are acknowledged.
pub trait Input {
    /// The next message, or `None` when `deadline` passed first. An error stops
    /// the sink (transient read errors are the input's to log and retry). Must be
    /// cancel safe: the loop may drop the future and call again.
    async fn next(&mut self, deadline: Instant) -> anyhow::Result<Option<Record>>;

    /// Work between messages and batches: the progress line, the group's
    /// watchdog. An error stops the sink.
    fn upkeep(&mut self) -> anyhow::Result<()>;

    /// Called about once a second while the loop waits for a batch to be
    /// stored: the progress line goes on during a long outage.
    fn storing(&mut self);

    /// Every store has `batch`: its offsets may be committed.
    fn stored(&mut self, batch: &Batch);
}

/// Where a batch goes. Shared with the task that writes a batch while the loop
/// reads the next one.
pub trait Output: Send + Sync + 'static {
    /// Returns once every event of `batch` is stored and every dead letter is
    /// confirmed, retrying for as long as it takes.
    fn store(&self, batch: &Batch) -> impl Future<Output = ()> + Send;
}

/// What [`fill`] ended with.
#[derive(Debug)]
pub struct Filled {
    /// The messages taken; possibly empty.
    pub batch: Batch,
    /// Shutdown was asked for: store this batch, then stop.
    pub stopping: bool,
}

/// A batch being stored, by a task of its own (encoding it and waiting for the
/// stores then use another core than reading and decoding the next batch). The
/// task gives the batch back once every store has it; dropping this aborts it.
pub struct Writing {
    events: usize,
    task: AbortOnDropHandle<Batch>,
}

impl Writing {
    /// The batch, once every store has it.
    async fn done(&mut self) -> Batch {
        match (&mut self.task).await {
            Ok(batch) => batch,
            // A panic in a write is a bug: it goes on as a panic of the loop.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => unreachable!("the write is aborted only when dropped: {e}"),
        }
    }
}

/// Starts storing `batch` in `output`.
pub fn start(output: &Arc<impl Output>, batch: Batch) -> Writing {
    let output = output.clone();
    Writing {
        events: batch.len(),
        task: AbortOnDropHandle::new(tokio::spawn(async move {
            output.store(&batch).await;
            batch
        })),
    }
}

/// Resolves with the batch once `writing` has stored it (and empties it);
/// never while nothing is being written.
async fn written(writing: &mut Option<Writing>) -> Batch {
    match writing {
        Some(w) => {
            let batch = w.done().await;
            *writing = None;
            batch
        }
        None => std::future::pending().await,
    }
}

/// How long the loop may still spend storing once shutdown is asked for: one
/// deadline for everything still open, set when the shutdown is first seen.
#[derive(Debug)]
pub struct Drain {
    timeout: Duration,
    deadline: Option<tokio::time::Instant>,
}

impl Drain {
    /// No shutdown yet; `timeout` from when one comes.
    pub fn new(timeout: Duration) -> Self {
        Drain {
            timeout,
            deadline: None,
        }
    }

    /// Shutdown is asked for: the deadline starts now, unless it already runs.
    pub fn start(&mut self) {
        self.deadline
            .get_or_insert_with(|| tokio::time::Instant::now() + self.timeout);
    }

    /// Whether shutdown was asked for.
    pub fn started(&self) -> bool {
        self.deadline.is_some()
    }
}

/// What one wait for a message ended with.
enum Waited {
    Stopping,
    Stored(Batch),
    Next(anyhow::Result<Option<Record>>),
}

/// Reads messages into a new batch until it is ready by `limits`, doing the
/// input's upkeep while none come, or until shutdown. Meanwhile it drives the
/// write in `writing`, if any, and acknowledges that batch as soon as it is
/// stored.
pub async fn fill(
    input: &mut impl Input,
    limits: &BatchLimits,
    shutdown: &CancellationToken,
    writing: &mut Option<Writing>,
) -> anyhow::Result<Filled> {
    let mut batch = Batch::new();
    // Read once per message: the clock is not free on every machine.
    let mut now = Instant::now();
    loop {
        if batch.is_ready(limits, now) {
            return Ok(Filled {
                batch,
                stopping: false,
            });
        }
        // An empty batch waits a second at a time, so that upkeep runs.
        let deadline = batch
            .deadline(limits)
            .unwrap_or(now + Duration::from_secs(1));
        // The read is dropped when the write finishes first: `next` is cancel
        // safe, and the batch is acknowledged at once, not after the read.
        let waited = tokio::select! {
            biased;
            () = shutdown.cancelled() => Waited::Stopping,
            done = written(writing) => Waited::Stored(done),
            next = input.next(deadline) => Waited::Next(next),
        };
        now = Instant::now();
        let next = match waited {
            Waited::Stopping => {
                return Ok(Filled {
                    batch,
                    stopping: true,
                });
            }
            Waited::Stored(done) => {
                input.stored(&done);
                continue;
            }
            Waited::Next(next) => next?,
        };
        let Some(record) = next else {
            input.upkeep()?;
            continue; // the deadline check above closes a waiting batch
        };
        let bytes = record.len();
        match record.event {
            Ok(event) => batch.push(record.partition, record.offset, bytes, event, now),
            Err(reason) => batch.push_dead(
                DeadLetter {
                    partition: record.partition,
                    offset: record.offset,
                    key: record.key,
                    value: record.value,
                    reason: reason.to_string(),
                },
                now,
            ),
        }
    }
}

/// Waits until `writing` is stored, for as long as it takes or, once shutdown is
/// asked for, until the drain deadline; then acknowledges the batch to the
/// input. Returns whether it was stored.
pub async fn finish(
    input: &mut impl Input,
    mut writing: Writing,
    drain: &mut Drain,
    shutdown: &CancellationToken,
) -> bool {
    let events = writing.events;
    let mut beat = tokio::time::interval(Duration::from_secs(1));
    beat.reset(); // the first beat a second from now, not at once
    let stored = loop {
        tokio::select! {
            biased;
            batch = writing.done() => break Some(batch),
            () = shutdown.cancelled(), if !drain.started() => drain.start(),
            // Not polled (only built) while not draining.
            () = tokio::time::sleep_until(drain.deadline.unwrap_or_else(tokio::time::Instant::now)), if drain.started() => break None,
            _ = beat.tick() => input.storing(),
        }
    };
    match stored {
        Some(batch) => {
            input.stored(&batch);
            true
        }
        None => {
            tracing::warn!(
                events,
                "could not store the open batch before the drain timeout; it will be redelivered"
            );
            false
        }
    }
}

/// The loop: fill a batch while the one before is written, wait for that one
/// and acknowledge it, start writing the new one; until shutdown, when what is
/// open is stored (within `drain_timeout`) before it returns.
pub async fn run(
    input: &mut impl Input,
    output: &Arc<impl Output>,
    limits: &BatchLimits,
    drain_timeout: Duration,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let mut drain = Drain::new(drain_timeout);
    let mut writing = None;
    loop {
        let filled = fill(input, limits, shutdown, &mut writing).await?;
        if filled.stopping {
            drain.start();
        }
        // Offsets are acknowledged in the order the batches were read.
        if let Some(previous) = writing.take()
            && !finish(input, previous, &mut drain, shutdown).await
        {
            if !filled.batch.is_empty() {
                tracing::warn!(
                    events = filled.batch.len(),
                    "the batch read after it is not stored either; it will be redelivered"
                );
            }
            return Ok(());
        }
        if drain.started() {
            if !filled.batch.is_empty() {
                finish(input, start(output, filled.batch), &mut drain, shutdown).await;
            }
            return Ok(());
        }
        // Between batches, before the next write: a rejoin here hands the new
        // member no batch of the old one's in flight.
        input.upkeep()?;
        if !filled.batch.is_empty() {
            writing = Some(start(output, filled.batch));
        }
    }
}

#[cfg(test)]
mod tests {
    //! The loop against a scripted input and a recording output: fakes, because
    //! what is tested here is the order of the steps, which a real broker and real
    //! stores cannot be paused between. `tests/sink/` runs the same loop against
    //! Tansu, PostgreSQL and ClickHouse.

    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use tokio::sync::Semaphore;

    use super::*;
    use crate::domain::PressEvent;
    use crate::encoding::DecodeError;

    const LIMITS: BatchLimits = BatchLimits {
        max_events: 3,
        max_bytes: 1 << 20,
        max_wait: Duration::from_millis(50),
    };

    /// Batches that close only when full (or on shutdown).
    const FULL_ONLY: BatchLimits = BatchLimits {
        max_wait: Duration::from_secs(3600),
        ..LIMITS
    };

    /// What the input and the output did, in order, when a test shares one.
    type Journal = Arc<Mutex<Vec<String>>>;

    fn note(journal: &Journal, line: String) {
        journal.lock().unwrap().push(line);
    }

    #[derive(Default)]
    struct Script {
        records: VecDeque<Record>,
        /// Offsets acknowledged, batch by batch.
        stored: Vec<Vec<(i32, i64)>>,
        upkeeps: usize,
        storing: usize,
        journal: Journal,
    }

    impl Input for Script {
        async fn next(&mut self, deadline: Instant) -> anyhow::Result<Option<Record>> {
            match self.records.pop_front() {
                Some(r) => {
                    note(&self.journal, format!("read {}", r.offset));
                    Ok(Some(r))
                }
                None => {
                    tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await;
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
            let offsets: Vec<_> = batch.offsets.iter().map(|(p, o)| (*p, *o)).collect();
            note(&self.journal, format!("acknowledged {offsets:?}"));
            self.stored.push(offsets);
        }
    }

    /// Stores a batch once the test releases a permit for it.
    struct Gated {
        permits: Semaphore,
        batches: Mutex<Vec<usize>>,
        journal: Journal,
    }

    impl Gated {
        fn closed() -> Arc<Self> {
            Self::noting(Journal::default())
        }
        /// Closed, noting into `journal`.
        fn noting(journal: Journal) -> Arc<Self> {
            Arc::new(Gated {
                permits: Semaphore::new(0),
                batches: Mutex::new(Vec::new()),
                journal,
            })
        }
        fn open() -> Arc<Self> {
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
            note(&self.journal, format!("writing {}", batch.len()));
            self.permits.acquire().await.unwrap().forget();
            note(&self.journal, format!("written {}", batch.len()));
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
    async fn store_held_for(input: &mut Script, output: &Arc<Gated>, held: Duration) -> bool {
        let shutdown = CancellationToken::new();
        let filled = fill(input, &LIMITS, &shutdown, &mut None).await.unwrap();
        let mut drain = Drain::new(Duration::from_secs(5));
        let step = finish(input, start(output, filled.batch), &mut drain, &shutdown);
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
        let filled = fill(&mut input, &LIMITS, &CancellationToken::new(), &mut None)
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
        let filled = fill(&mut input, &LIMITS, &CancellationToken::new(), &mut None)
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
        {
            let looped = run_full_only(&mut input, &output, &shutdown);
            tokio::pin!(looped);
            // Two messages in a batch that would wait an hour; then a stop.
            runs_on(looped.as_mut()).await;
            stop.cancel();
            looped.await.unwrap();
        }
        assert_eq!(output.written(), vec![2]);
        assert_eq!(input.stored, vec![vec![(0, 2)]]);
    }

    /// Runs the loop, asks for shutdown 50 ms in, and returns how long it took.
    async fn run_stopped_early(
        input: &mut Script,
        output: &Arc<Gated>,
        drain: Duration,
    ) -> Duration {
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            stop.cancel();
        });
        let started = Instant::now();
        run(input, output, &LIMITS, drain, &shutdown).await.unwrap();
        started.elapsed()
    }

    #[tokio::test]
    async fn a_batch_the_output_cannot_take_before_the_drain_timeout_is_not_acknowledged() {
        let mut input = script([record(0, 1), record(0, 2), record(0, 3)]);
        let output = Gated::closed();
        let took = run_stopped_early(&mut input, &output, Duration::from_millis(200)).await;
        assert!(took >= Duration::from_millis(200));
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

    /// The loop over batches that close only when full (or on shutdown), with
    /// time enough to drain.
    fn run_full_only<'a>(
        input: &'a mut Script,
        output: &'a Arc<Gated>,
        shutdown: &'a CancellationToken,
    ) -> impl Future<Output = anyhow::Result<()>> + 'a {
        run(input, output, &FULL_ONLY, Duration::from_secs(5), shutdown)
    }

    /// Polls the loop for a while; it must not end meanwhile.
    async fn runs_on(looped: std::pin::Pin<&mut impl Future<Output = anyhow::Result<()>>>) {
        assert!(
            tokio::time::timeout(Duration::from_millis(100), looped)
                .await
                .is_err(),
            "the loop ended"
        );
    }

    #[tokio::test]
    async fn the_next_batch_is_read_while_one_is_written_and_acknowledgements_keep_their_order() {
        let journal = Journal::default();
        let mut input = Script {
            journal: journal.clone(),
            ..script((1..=7).map(|o| record(0, o)))
        };
        let output = Gated::noting(journal.clone());
        let shutdown = CancellationToken::new();
        {
            let looped = run_full_only(&mut input, &output, &shutdown);
            tokio::pin!(looped);
            // The first batch is held by the output: the second is read meanwhile,
            // and waits, full; nothing is acknowledged.
            runs_on(looped.as_mut()).await;
            output.permits.add_permits(1); // the first batch
            runs_on(looped.as_mut()).await;
            output.permits.add_permits(1); // the second
            runs_on(looped.as_mut()).await;
            shutdown.cancel();
            output.permits.add_permits(1); // the open one, with 7
            looped.await.unwrap();
        }
        // The write runs in a task of its own, so only the order that matters
        // is fixed: what happened before what.
        let journal = journal.lock().unwrap().clone();
        let at = |line: &str, nth: usize| {
            journal
                .iter()
                .enumerate()
                .filter(|(_, l)| *l == line)
                .nth(nth)
                .unwrap_or_else(|| panic!("no {line:?} #{nth} in {journal:?}"))
                .0
        };
        // The second batch was read before the first was written,
        assert!(at("read 6", 0) < at("written 3", 0), "{journal:?}");
        // and only the first batch's write was under way meanwhile.
        assert!(at("writing 3", 1) > at("written 3", 0), "{journal:?}");
        // Each batch is acknowledged after its write, in the order read.
        assert!(at("written 3", 0) < at("acknowledged [(0, 3)]", 0));
        assert!(at("acknowledged [(0, 3)]", 0) < at("written 3", 1));
        assert!(at("written 3", 1) < at("acknowledged [(0, 6)]", 0));
        assert!(at("acknowledged [(0, 6)]", 0) < at("written 1", 0));
        assert!(at("written 1", 0) < at("acknowledged [(0, 7)]", 0));
        assert_eq!(input.stored, vec![vec![(0, 3)], vec![(0, 6)], vec![(0, 7)]]);
    }

    #[tokio::test]
    async fn on_shutdown_the_batch_being_written_and_the_open_one_share_one_drain_timeout() {
        let mut input = script((1..=5).map(|o| record(0, o)));
        let output = Gated::closed();
        let took = run_stopped_early(&mut input, &output, Duration::from_secs(1)).await;
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_millis(1900),
            "{took:?}: one drain timeout for both batches, not one each"
        );
        assert!(output.written().is_empty());
        assert!(input.stored.is_empty(), "both left to be redelivered");
    }

    #[tokio::test]
    async fn an_input_error_stops_the_loop_with_it() {
        struct Broken;
        impl Input for Broken {
            async fn next(&mut self, _: Instant) -> anyhow::Result<Option<Record>> {
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
