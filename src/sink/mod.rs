//! `button sink`: one member of a Kafka consumer group that writes every event to
//! PostgreSQL and/or ClickHouse, effectively once.
//!
//! Guarantee: at-least-once delivery from Kafka, made exactly-once in what the
//! statistics queries return by idempotent writes (every store deduplicates on
//! `event_id`; the original app's events, which have none, get one derived from
//! their content by the decoder, the same in every sink: see
//! [`crate::encoding::original`]). The order of operations is what makes this hold:
//!
//! 1. take messages into a [`Batch`] until it is full (count, bytes) or old;
//! 2. write the batch to every configured store (concurrently, in a task of its
//!    own, while the loop reads the next batch: one batch ahead at most), retrying
//!    transient failures with capped, jittered backoff for as long as it takes:
//!    a database that is down pauses consumption, it never skips data;
//! 3. send undecodable messages to the dead-letter topic `<topic>.dlq` (the reason
//!    in the `error` header) and wait for the broker's confirmation;
//! 4. only then, and in the order the batches were read, store the batch's
//!    offsets; librdkafka commits stored offsets in
//!    the background and once more, synchronously, on shutdown.
//!
//! A crash anywhere before step 4 redelivers the batch to whichever member owns the
//! partitions next; the stores absorb the repeat. A permanent write error (bad
//! schema, say) is also retried, loudly, because skipping would lose presses: fix
//! the store and the sink carries on. On SIGTERM the sink finishes the open batch
//! (within `--drain-timeout`), commits, leaves the group (unless it is a static
//! member, `--instance-id`, whose partitions wait for it) and exits 0.
//!
//! Beside the loop, every few seconds and once when it stops, the sink settles
//! what the stores keep for reads ([`write::settle_until`]: ClickHouse's counts
//! per minute). Nothing depends on it for exactness; it keeps reads cheap.
//!
//! Liveness: a member whose assignment has not changed for a session timeout,
//! while messages wait in partitions it does not own (all of them, when it owns
//! none) and nobody else can be reading them (the whole group has stopped
//! committing, or the member is the group's only one), leaves and rejoins the
//! group ([`watchdog`]), so a coordinator that leaves partitions with dead members
//! after crashes cannot park them. The progress line reports the group's lag over
//! every partition of the topic ([`lag`]), measured by a task of its own so the
//! loop never waits for the broker. With `--instance-id` (static membership) a
//! restarted sink takes its partitions back at once on brokers that support it;
//! a static member the watchdog makes rejoin comes back dynamic (see
//! [`member::GroupInput`]).
//!
//! A store that fails permanently (a schema that does not match, say) makes the
//! sink unready: the error log, every progress line and `/readyz` (with
//! `--status-listen`, see [`status`]) name the store and the cause until a write
//! succeeds; nothing is skipped meanwhile.
//!
//! Files: [`steps`] (the loop: fill, store, acknowledge, drivable by a test),
//! [`batch`] (pure: what a batch holds and when it closes), [`write`] (the batch
//! into the stores and the dead-letter topic, with [`crate::retry`]), [`member`] (the
//! group as the loop's input, and the upkeep between batches), [`progress`], and
//! this file, the wiring.

mod batch;
mod lag;
mod member;
mod progress;
mod status;
mod steps;
mod watchdog;
mod write;

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio_util::sync::CancellationToken;

use batch::BatchLimits;
use member::{GroupInput, Membership, SinkContext, Upkeep};
use write::{Destinations, connect_stores};

use crate::config::{ChArgs, KafkaArgs, PgArgs, RegistryArgs};
use crate::kafka::SchemaRegistry;
use crate::kafka::reader::{GroupOptions, Reader};

/// How long the group waits for a silent member before it hands the member's
/// partitions to the others: seconds, not Kafka's default 45, so that a dead sink
/// is replaced quickly. Also the watchdog's first patience.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(10);

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

    /// Static group membership (`group.instance.id`): a stable name for this sink
    /// replica, unique in the group and the same across its restarts (a pod name of
    /// a StatefulSet, say). A restarted sink then takes its partitions back at once
    /// instead of waiting out its dead predecessor, and a stop does not move them.
    #[arg(long, env = "BUTTON_SINK_INSTANCE_ID", value_parser = instance_id)]
    pub instance_id: Option<String>,

    /// Most events in one batch. ClickHouse takes large inserts best: 50,000
    /// doubled its rate over 10,000 here (BENCHMARKS.md).
    #[arg(long, env = "BUTTON_BATCH_MAX_EVENTS", default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_max_events: u64,

    /// Most message bytes in one batch.
    #[arg(long, env = "BUTTON_BATCH_MAX_BYTES", default_value_t = 32 << 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_max_bytes: u64,

    /// Longest a batch waits for more messages.
    #[arg(long, env = "BUTTON_BATCH_MAX_WAIT", default_value = "500ms", value_parser = crate::config::parse::duration)]
    pub batch_max_wait: Duration,

    /// On SIGTERM, how long to keep trying to store the open batch before giving up
    /// (it is then redelivered, not lost). Keep it below the group session timeout.
    #[arg(long, env = "BUTTON_DRAIN_TIMEOUT", default_value = "8s", value_parser = crate::config::parse::duration)]
    pub drain_timeout: Duration,

    /// Serve `/healthz`, `/readyz` (503 while a store fails permanently, with the
    /// cause) and `/metrics` on this address, e.g. `0.0.0.0:9100`.
    #[arg(long, env = "BUTTON_SINK_STATUS_LISTEN")]
    pub status_listen: Option<std::net::SocketAddr>,

    /// How often progress and lag are logged.
    #[arg(long, env = "BUTTON_PROGRESS_EVERY", default_value = "10s", value_parser = crate::config::parse::duration)]
    pub progress_every: Duration,
}

fn instance_id(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err(
            "an instance id cannot be empty: leave the flag out for dynamic membership".into(),
        );
    }
    Ok(s.to_owned())
}

impl SinkArgs {
    fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_events: self.batch_max_events as usize,
            max_bytes: self.batch_max_bytes as usize,
            max_wait: self.batch_max_wait,
        }
    }

    fn group_options(&self) -> GroupOptions {
        GroupOptions {
            group: self.group.clone(),
            instance_id: self.instance_id.clone(),
            session_timeout: SESSION_TIMEOUT,
        }
    }
}

/// `button sink`.
pub async fn run(args: SinkArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let stores = connect_stores(
        args.postgres.config().as_ref(),
        args.clickhouse.config().as_ref(),
    )
    .await?;
    let kafka = args.kafka.require()?;
    let settle_stop = CancellationToken::new();
    let settling = tokio::spawn(write::settle_until(stores.clone(), settle_stop.clone()));
    let consumed = consume(&args, &kafka, stores, shutdown).await;
    // The last settling, after the last batch, also when consuming failed.
    settle_stop.cancel();
    let _ = settling.await;
    if consumed.is_ok() {
        tracing::info!("sink stopped");
    }
    consumed
}

/// The sink's loop from joining the group to leaving it: what [`run`] does
/// between its first and its last settling.
async fn consume(
    args: &SinkArgs,
    kafka: &crate::config::KafkaConfig,
    stores: Vec<Arc<dyn crate::store::EventStore>>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let destinations = Destinations::build(kafka, stores).await?;
    let registry = SchemaRegistry::configured(args.registry.config().as_ref())?;
    let connect: member::Connect = {
        let (kafka, options) = (kafka.clone(), args.group_options());
        Box::new(move |membership| {
            let options = match membership {
                Membership::Configured => options.clone(),
                Membership::Dynamic => GroupOptions {
                    instance_id: None,
                    ..options.clone()
                },
            };
            Ok(Reader::group(
                &kafka,
                registry.clone(),
                &options,
                SinkContext::default(),
            )?)
        })
    };

    // The lag probe runs beside the loop, with a client of its own.
    let probe_stop = shutdown.child_token();
    let _stop_probe = probe_stop.clone().drop_guard();
    let lag = lag::spawn_probe(
        lag::probe_client(crate::kafka::client_config(kafka)?, &args.group)?,
        args.group.clone(),
        kafka.topic.clone(),
        args.progress_every.min(SESSION_TIMEOUT / 4),
        probe_stop.clone(),
    );
    if let Some(addr) = args.status_listen {
        status::serve(addr, destinations.health(), lag.clone(), probe_stop.clone()).await?;
    }
    let upkeep = Upkeep::new(args.progress_every, SESSION_TIMEOUT, lag);

    tracing::info!(topic = %kafka.topic, group = %args.group, instance_id = args.instance_id, stores = ?destinations.names(), "sink started");
    let mut input = GroupInput::new(
        connect,
        args.instance_id.is_some(),
        upkeep,
        destinations.health(),
    )?;
    steps::run(
        &mut input,
        &Arc::new(destinations),
        &args.limits(),
        args.drain_timeout,
        &shutdown,
    )
    .await?;
    input.finish();
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sink: SinkArgs,
    }

    fn parse(extra: &[&str]) -> Result<SinkArgs, clap::Error> {
        let mut argv = vec!["sink", "--kafka-brokers", "localhost:9092"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).map(|c| c.sink)
    }

    #[test]
    fn an_instance_id_makes_the_sink_a_static_member() {
        let options = parse(&["--instance-id", "sink-0"]).unwrap().group_options();
        assert_eq!(options.instance_id.as_deref(), Some("sink-0"));
        assert_eq!(options.session_timeout, SESSION_TIMEOUT);
    }

    #[test]
    fn without_an_instance_id_the_sink_is_a_dynamic_member() {
        assert_eq!(parse(&[]).unwrap().group_options().instance_id, None);
    }

    #[test]
    fn an_empty_instance_id_is_refused() {
        assert!(parse(&["--instance-id", " "]).is_err());
    }
}
