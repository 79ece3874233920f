//! `button tail`: prints the events in the topic, as readable lines or JSON.
//!
//! It reads with the app's one [`Reader`], unmanaged: every partition from the
//! beginning or the end, in no consumer group, never committing, so it cannot move
//! the offsets of the sink or of anyone else.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::config::{KafkaArgs, RegistryArgs};
use crate::domain::PressEvent;
use crate::encoding;
use crate::kafka::SchemaRegistry;
use crate::kafka::reader::{Next, QuietEof, Reader, Start};

/// Settings of `button tail`.
#[derive(Debug, Clone, Args)]
pub struct TailArgs {
    /// Kafka connection.
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Schema registry, to decode Avro written with another schema version.
    #[command(flatten)]
    pub registry: RegistryArgs,

    /// Start at the oldest event instead of the end of the topic.
    #[arg(long)]
    pub from_beginning: bool,

    /// Keep waiting for new events instead of stopping at the end of the topic.
    #[arg(long, short = 'f')]
    pub follow: bool,

    /// Stop after this many events.
    #[arg(long)]
    pub max: Option<u64>,

    /// One JSON object per line instead of readable lines.
    #[arg(long)]
    pub json: bool,

    /// Without --follow, stop when no event arrived for this long (the end of the
    /// topic is also detected directly where the broker reports it).
    #[arg(long, default_value = "5s", value_parser = crate::config::parse::duration)]
    pub idle_timeout: Duration,
}

/// One readable line for an event.
pub fn format_line(e: &PressEvent) -> String {
    let at = std::time::UNIX_EPOCH + Duration::from_micros(e.timestamp.max(0) as u64);
    let time = humantime::format_rfc3339_millis(at);
    let l = &e.location;
    let mut place = format!("{} {}", l.country_code, l.country_name);
    if !l.city_name.is_empty() {
        place.push_str(", ");
        place.push_str(&l.city_name);
    }
    format!(
        "{time} {:<11} {place:<30} session {}",
        e.action.as_str(),
        e.session_id
    )
}

/// `button tail`.
pub async fn run(args: TailArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let registry = SchemaRegistry::configured(args.registry.config().as_ref())?;
    let kafka = args.kafka.require()?;
    let start = if args.from_beginning {
        Start::Beginning
    } else {
        Start::End
    };
    let reader = Reader::unmanaged(&kafka, registry, start, QuietEof)?;
    let partitions = reader.partition_count();

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut printed = 0u64;
    let mut at_end = std::collections::HashSet::new();
    loop {
        if args.max.is_some_and(|m| printed >= m) {
            break;
        }
        let wait = if args.follow {
            Duration::from_secs(3600)
        } else {
            args.idle_timeout
        };
        let next = tokio::select! {
            () = shutdown.cancelled() => break,
            r = tokio::time::timeout(wait, reader.next()) => match r {
                Err(_) if args.follow => continue,
                Err(_) => break, // idle: the end of the topic
                Ok(next) => next.context("cannot read from Kafka")?,
            },
        };
        let record = match next {
            Next::EndOfPartition(p) => {
                at_end.insert(p);
                if !args.follow && at_end.len() == partitions {
                    break;
                }
                continue;
            }
            Next::Record(r) => r,
        };
        at_end.remove(&record.partition);
        match &record.event {
            Ok(event) => {
                if args.json {
                    out.write_all(&encoding::json::encode(event))?;
                    out.write_all(b"\n")?;
                } else {
                    writeln!(out, "{}", format_line(event))?;
                }
                printed += 1;
            }
            Err(e) => tracing::warn!(
                partition = record.partition,
                offset = record.offset,
                "skipping an undecodable message: {e}"
            ),
        }
        if args.follow {
            out.flush()?;
        }
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_shows_time_action_place_and_session() {
        let e = crate::encoding::avro::tests::sample_event();
        let line = format_line(&e);
        assert!(
            line.starts_with("2023-06-29T00:53:20.000Z PressButton"),
            "{line}"
        );
        assert!(line.contains("GB United Kingdom, London"), "{line}");
        assert!(
            line.ends_with("session 67e55044-10b1-426f-9247-bb680e5fe0c8"),
            "{line}"
        );
    }
}
