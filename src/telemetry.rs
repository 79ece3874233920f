//! Logging with `tracing`: human-readable by default, JSON with `--log-format json`,
//! `RUST_LOG` overrides the filter. Nothing in this crate logs a client address: the
//! only value holding one ([`crate::domain::ClientIp`]) prints as `<redacted>`.
//!
//! Metrics with `metrics`, rendered in the Prometheus text format by
//! [`prometheus`] (served at `GET /metrics`). Every name is in [`metric`]; no
//! label ever holds an address, a session id or anything else from a request.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::cli::LogFormat;

/// The filter used when `RUST_LOG` is not set.
pub const DEFAULT_FILTER: &str = "info";

/// Installs the global subscriber writing to `writer`. Call once.
pub fn init<W>(format: LogFormat, writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    // Colours only for a terminal: piped logs stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    match format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// The metrics' names, in one place.
pub mod metric {
    /// Counter: events by `action` and `outcome` (stored, overloaded, timeout, ...).
    pub const EVENTS: &str = "button_events_total";
    /// Histogram: seconds until the destination had an event (or refused it).
    pub const PUBLISH_SECONDS: &str = "button_publish_seconds";
    /// Counter: HTTP responses by `status`.
    pub const RESPONSES: &str = "button_http_responses_total";
    /// Gauge: events accepted and not yet durable (embedded queue, or messages in
    /// flight to Kafka).
    pub const BACKLOG: &str = "button_event_backlog";
    /// Gauge: clients (address hashes and sessions) with a press-limit bucket.
    pub const LIMITED_CLIENTS: &str = "button_rate_limit_clients";
    /// Counter: queries to the statistics store, by `query` (global, session,
    /// last_hour).
    pub const STATS_QUERIES: &str = "button_stats_queries_total";
    /// Gauge: dashboards following the live stream (`/stats/live`).
    pub const SSE_VIEWERS: &str = "button_sse_viewers";
    /// Gauge: events in the disk spool, waiting for Kafka.
    pub const SPOOL_EVENTS: &str = "button_spool_events";
    /// Gauge: bytes of the disk spool file.
    pub const SPOOL_BYTES: &str = "button_spool_bytes";
    /// Counter: messages the sink read from the topic, stored yet or not.
    pub const SINK_READ: &str = "button_sink_messages_read_total";
    /// Counter: events the sink stored in every store.
    pub const SINK_EVENTS: &str = "button_sink_events_total";
    /// Counter: batches the sink stored.
    pub const SINK_BATCHES: &str = "button_sink_batches_total";
    /// Counter: undecodable messages sent to the dead-letter topic.
    pub const SINK_DEAD_LETTERS: &str = "button_sink_dead_letters_total";
    /// Counter: failed writes (each retried) by `store` and `kind` (transient, permanent).
    pub const SINK_WRITE_FAILURES: &str = "button_sink_write_failures_total";
    /// Gauge: messages known to wait in the topic for the group (a lower bound
    /// where a partition's end offset is unknown).
    pub const SINK_LAG_AT_LEAST: &str = "button_sink_lag_at_least";
    /// Gauge: 1 while a store fails permanently (see `/readyz`).
    pub const SINK_UNREADY: &str = "button_sink_unready";
}

/// The process's metrics recorder, installed on first use (a process has one).
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        // From 0.5 ms (the embedded store's group commit) to 10 s (Kafka timeouts).
        let buckets = [
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(metric::PUBLISH_SECONDS.into()), &buckets)
            .expect("the buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Fails only when another recorder was installed first: then ours renders empty.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
        }
        metrics::describe_counter!(metric::EVENTS, "Events by action and outcome.");
        metrics::describe_histogram!(
            metric::PUBLISH_SECONDS,
            metrics::Unit::Seconds,
            "Time until the destination had an event, or refused it."
        );
        metrics::describe_counter!(metric::RESPONSES, "HTTP responses by status.");
        metrics::describe_gauge!(
            metric::BACKLOG,
            "Events accepted and not yet durable (embedded queue, or in flight to Kafka)."
        );
        metrics::describe_gauge!(metric::SSE_VIEWERS, "Dashboards following the live stream.");
        metrics::describe_gauge!(
            metric::SPOOL_EVENTS,
            "Events in the disk spool, waiting for Kafka."
        );
        metrics::describe_gauge!(
            metric::SPOOL_BYTES,
            metrics::Unit::Bytes,
            "Bytes of the disk spool file."
        );
        metrics::describe_counter!(
            metric::SINK_READ,
            "Messages the sink read from the topic, stored yet or not."
        );
        metrics::describe_counter!(
            metric::SINK_EVENTS,
            "Events the sink stored in every store."
        );
        metrics::describe_counter!(metric::SINK_BATCHES, "Batches the sink stored.");
        metrics::describe_counter!(
            metric::SINK_DEAD_LETTERS,
            "Undecodable messages sent to the dead-letter topic."
        );
        metrics::describe_counter!(
            metric::SINK_WRITE_FAILURES,
            "Failed writes, each retried, by store and kind (transient, permanent)."
        );
        metrics::describe_gauge!(
            metric::SINK_LAG_AT_LEAST,
            "Messages known to wait in the topic for the sink's group."
        );
        metrics::describe_gauge!(metric::SINK_UNREADY, "1 while a store fails permanently.");
        metrics::describe_gauge!(
            metric::LIMITED_CLIENTS,
            "Clients (address hashes and sessions) with a press-limit bucket."
        );
        handle
    })
}
