//! The producer behind `serve` and `generate`: one `FutureProducer`, idempotent,
//! `acks=all`, lz4-compressed, with a millisecond of linger so that concurrent presses
//! share batches. A press is answered when its delivery report arrives.
//!
//! Failure handling: a full local queue is refused at once (`Overloaded`); a broker
//! that does not confirm within `--delivery-timeout` fails the press (librdkafka's
//! `message.timeout.ms`, so the library stops retrying it too). Readiness is false
//! while the broker does not answer metadata requests or a delivery failed in the
//! last few seconds; it comes back by itself, without a restart. A producer that
//! hit a fatal error (for example fenced by the broker after an outage) is replaced
//! by a new one, so service resumes by itself.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio_util::sync::CancellationToken;

use crate::config::{KafkaConfig, RegistryConfig};
use crate::domain::PressEvent;
use crate::encoding::Encoder;
use crate::publish::{Publish, PublishError};

/// How long after a failed delivery the producer still reports itself unready.
const UNREADY_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// How often the broker is probed for `/readyz`.
const PROBE_EVERY: Duration = Duration::from_secs(2);

/// Publishes events to a Kafka topic.
pub struct KafkaPublisher {
    shared: Arc<Shared>,
    topic: String,
    encoder: Encoder,
    delivery_timeout: Duration,
    stop_probe: CancellationToken,
}

/// What deliveries and the probe share with the publisher.
struct Shared {
    producer: RwLock<FutureProducer>,
    config: ClientConfig,
    health: Health,
}

impl Shared {
    fn current(&self) -> FutureProducer {
        self.producer
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces `failed` with a new producer when it cannot produce again: after a
    /// fatal error, or when the broker keeps rejecting its producer id (some
    /// Kafka-compatible brokers fence a producer whose epoch librdkafka bumped after
    /// a timeout). Only the first caller to notice replaces it.
    fn recover(&self, failed: &FutureProducer, error: &KafkaError) {
        let stuck = matches!(
            error.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::ProducerFenced
                    | RDKafkaErrorCode::InvalidProducerEpoch
                    | RDKafkaErrorCode::UnknownProducerId
                    | RDKafkaErrorCode::OutOfOrderSequenceNumber
            )
        );
        let (code, reason) = match failed.client().fatal_error() {
            Some(fatal) => fatal,
            None if stuck => (
                error.rdkafka_error_code().expect("matched above"),
                error.to_string(),
            ),
            None => return,
        };
        let mut slot = self.producer.write().unwrap_or_else(|p| p.into_inner());
        if slot.client().native_ptr() != failed.client().native_ptr() {
            return;
        }
        match self.config.create::<FutureProducer>() {
            Ok(fresh) => {
                tracing::warn!(%code, %reason, "the Kafka producer hit a fatal error; replaced it");
                *slot = fresh;
            }
            Err(e) => tracing::error!(%code, "cannot replace the failed Kafka producer: {e}"),
        }
    }
}

struct Health {
    broker_answers: AtomicBool,
    /// ms since `epoch` of the last failed delivery; 0 = none.
    failed_at_ms: AtomicU64,
    epoch: Instant,
}

impl Health {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }
    fn failed(&self) {
        self.failed_at_ms.store(self.now_ms(), Ordering::Relaxed);
    }
    fn ready(&self) -> bool {
        let failed = self.failed_at_ms.load(Ordering::Relaxed);
        let recent_failure = failed != 0
            && self.now_ms().saturating_sub(failed) < UNREADY_AFTER_FAILURE.as_millis() as u64;
        self.broker_answers.load(Ordering::Relaxed) && !recent_failure
    }
}

impl KafkaPublisher {
    /// Connects a producer to `args`' brokers, writing `encoder`'s format.
    pub fn new(
        args: &KafkaConfig,
        encoder: Encoder,
        delivery_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let mut config = super::client_config(args)?;
        config
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("compression.type", "lz4")
            // Waiting this long lets concurrent presses share one produce request
            // (1 ms measured best over many sessions: see BENCHMARKS.md).
            .set("linger.ms", linger_ms(args.linger))
            .set(
                "message.timeout.ms",
                delivery_timeout.as_millis().to_string(),
            )
            .set("queue.buffering.max.messages", "100000");
        let producer: FutureProducer = config.create()?;
        let shared = Arc::new(Shared {
            producer: RwLock::new(producer),
            config,
            health: Health {
                broker_answers: AtomicBool::new(true),
                failed_at_ms: AtomicU64::new(0),
                epoch: Instant::now(),
            },
        });
        let stop_probe = CancellationToken::new();
        tokio::spawn(probe(
            shared.clone(),
            args.topic.clone(),
            stop_probe.clone(),
        ));
        Ok(KafkaPublisher {
            shared,
            topic: args.topic.clone(),
            encoder,
            delivery_timeout,
            stop_probe,
        })
    }

    /// Enqueues `event` and returns a future that resolves with its delivery. The
    /// enqueue happens now, so events enqueued in order stay in order per session.
    pub fn send(
        &self,
        event: &PressEvent,
    ) -> Result<impl Future<Output = Result<(), PublishError>> + Send + use<>, PublishError> {
        let key = event.session_id.hyphenated().to_string();
        let payload = self.encoder.encode(event);
        let record = FutureRecord::to(&self.topic).key(&key).payload(&payload);
        let producer = self.shared.current();
        let delivery = match producer.send_result(record) {
            Ok(d) => d,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                return Err(PublishError::Overloaded);
            }
            Err((e, _)) => {
                self.shared.health.failed();
                self.shared.recover(&producer, &e);
                return Err(PublishError::Unavailable(e.into()));
            }
        };
        let shared = self.shared.clone();
        // librdkafka gives up at message.timeout.ms; the margin only guards a lost report.
        let bound = self.delivery_timeout + Duration::from_secs(1);
        Ok(async move {
            match tokio::time::timeout(bound, delivery).await {
                Ok(Ok(Ok(_))) => Ok(()),
                Ok(Ok(Err((e, _)))) => {
                    shared.health.failed();
                    shared.recover(&producer, &e);
                    Err(PublishError::Unavailable(e.into()))
                }
                Ok(Err(_)) => Err(PublishError::Closed),
                Err(_) => {
                    shared.health.failed();
                    Err(PublishError::Timeout(bound))
                }
            }
        })
    }

    /// Waits until everything enqueued is delivered or `timeout` passes.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.shared.current().flush(timeout)
    }
}

/// `linger.ms` for librdkafka, which takes fractions of a millisecond.
fn linger_ms(linger: Duration) -> String {
    (linger.as_secs_f64() * 1000.0).to_string()
}

/// Asks the broker for the topic's metadata every few seconds, for `/readyz`.
async fn probe(shared: Arc<Shared>, topic: String, stop: CancellationToken) {
    let health = &shared.health;
    loop {
        let (p, t) = (shared.current(), topic.clone());
        let answered = tokio::task::spawn_blocking(move || {
            p.client()
                .fetch_metadata(Some(&t), Duration::from_secs(2))
                .is_ok()
        })
        .await
        .unwrap_or(false);
        if answered != health.broker_answers.swap(answered, Ordering::Relaxed) {
            if answered {
                tracing::info!("Kafka broker answers again");
            } else {
                tracing::warn!("Kafka broker does not answer");
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(PROBE_EVERY) => {}
        }
    }
}

#[async_trait]
impl Publish for KafkaPublisher {
    async fn publish(&self, event: PressEvent) -> Result<(), PublishError> {
        self.send(&event)?.await
    }

    fn is_ready(&self) -> bool {
        self.shared.health.ready()
    }

    fn backlog(&self) -> Option<usize> {
        usize::try_from(self.shared.current().in_flight_count()).ok()
    }

    async fn close(&self) {
        self.stop_probe.cancel();
        let producer = self.shared.current();
        let flushed =
            tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(10))).await;
        if !matches!(flushed, Ok(Ok(()))) {
            tracing::warn!("some events were still undelivered when the producer closed");
        }
    }
}

/// The encoder for `format`: with Avro, our schema is registered first (subject
/// `<topic>-value`) and a registry that refuses it stops the start with its reason.
pub async fn encoder(
    format: crate::encoding::Format,
    kafka: &KafkaConfig,
    registry: Option<&RegistryConfig>,
) -> anyhow::Result<Encoder> {
    use anyhow::Context;
    match format {
        crate::encoding::Format::Json => Ok(Encoder::Json),
        crate::encoding::Format::Avro => {
            let registry = registry.map(super::SchemaRegistry::new).context(
                "--format avro needs a schema registry: pass --schema-registry-url \
                     (or set BUTTON_SCHEMA_REGISTRY_URL or SCHEMA_REGISTRY_URI)",
            )??;
            let subject = super::registry::value_subject(&kafka.topic);
            let schema_id = registry
                .register(&subject, crate::encoding::avro::SCHEMA_JSON)
                .await
                .with_context(|| format!("cannot register the event schema under {subject}"))?;
            tracing::info!(%subject, schema_id, "Avro schema registered");
            Ok(Encoder::Avro { schema_id })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linger_keeps_fractions_of_a_millisecond() {
        assert_eq!(linger_ms(Duration::from_micros(500)), "0.5");
        assert_eq!(linger_ms(Duration::from_millis(5)), "5");
        assert_eq!(linger_ms(Duration::ZERO), "0");
    }
}
