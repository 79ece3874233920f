//! `button analyze`: the click-pattern report (the dashboard's "click patterns",
//! see [`crate::patterns`]) for the terminal, over the whole history: read from
//! the topic's beginning with the app's one unmanaged reader (no group, nothing
//! committed), or from the embedded store. Presses are sorted per session before
//! the gaps are measured, so partitions interleaving a session's presses do not
//! distort them.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use clap::{Args, ValueEnum};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::{KafkaArgs, RegistryArgs};
use crate::domain::Action;
use crate::domain::event::micros_since_epoch;
use crate::kafka::SchemaRegistry;
use crate::kafka::reader::{Next, QuietEof, Reader, Start};
use crate::patterns::{PatternReport, Patterns};

/// Where `analyze` reads presses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AnalyzeFrom {
    /// The Kafka topic, from its beginning.
    Topic,
    /// The embedded store in the data directory.
    Embedded,
}

/// Settings of `button analyze`.
#[derive(Debug, Clone, Args)]
pub struct AnalyzeArgs {
    /// Where to read presses [default: the topic when Kafka brokers are
    /// configured, else the embedded store].
    #[arg(long, value_enum)]
    pub from: Option<AnalyzeFrom>,

    /// Kafka connection.
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Schema registry, to decode Avro.
    #[command(flatten)]
    pub registry: RegistryArgs,

    /// The embedded store's directory.
    #[arg(long, env = "BUTTON_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,

    /// Reading the topic stops when no event arrived for this long (the end is
    /// also detected directly where the broker reports it).
    #[arg(long, default_value = "5s", value_parser = crate::config::parse::duration)]
    pub idle_timeout: Duration,
}

/// `button analyze`: the report, printed.
pub async fn run(args: AnalyzeArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (report, source) = analyze(&args, shutdown).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report, source, SystemTime::now()));
    }
    Ok(())
}

/// The report as of now, and where its presses were read.
pub async fn analyze(
    args: &AnalyzeArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<(PatternReport, &'static str)> {
    let from = args.from.unwrap_or(if args.kafka.config().is_some() {
        AnalyzeFrom::Topic
    } else {
        AnalyzeFrom::Embedded
    });
    let (presses, source) = match from {
        AnalyzeFrom::Topic => (read_topic(args, &shutdown).await?, "the topic"),
        AnalyzeFrom::Embedded => {
            let path = args.data_dir.join("events.sqlite3");
            anyhow::ensure!(
                path.is_file(),
                "no embedded store at {} (run `button serve` first, or pass --data-dir)",
                path.display()
            );
            let presses =
                tokio::task::spawn_blocking(move || crate::store::sqlite::presses(&path)).await??;
            (presses, "the embedded store")
        }
    };
    let now = micros_since_epoch(SystemTime::now());
    Ok((Patterns::from_presses(presses, now), source))
}

async fn read_topic(
    args: &AnalyzeArgs,
    shutdown: &CancellationToken,
) -> anyhow::Result<Vec<(Uuid, i64)>> {
    let kafka = args.kafka.require()?;
    let registry = SchemaRegistry::configured(args.registry.config().as_ref())?;
    let reader = Reader::unmanaged(&kafka, registry, Start::Beginning, QuietEof)?;
    let partitions = reader.partition_count();
    let mut at_end = std::collections::HashSet::new();
    let mut presses = Vec::new();
    let (mut read, mut undecodable) = (0u64, 0u64);
    let mut said = Instant::now();
    loop {
        let next = tokio::select! {
            () = shutdown.cancelled() => anyhow::bail!("interrupted after {read} events"),
            r = tokio::time::timeout(args.idle_timeout, reader.next()) => match r {
                Err(_) => break, // idle: the end of the topic
                Ok(next) => next.context("cannot read from Kafka")?,
            },
        };
        let record = match next {
            Next::EndOfPartition(p) => {
                at_end.insert(p);
                if at_end.len() == partitions {
                    break;
                }
                continue;
            }
            Next::Record(r) => r,
        };
        at_end.remove(&record.partition);
        read += 1;
        match record.event {
            Ok(e) if e.action == Action::PressButton => presses.push((e.session_id, e.timestamp)),
            Ok(_) => {}
            Err(_) => undecodable += 1,
        }
        if said.elapsed() > Duration::from_secs(2) {
            eprintln!("read {read} events ({} presses) so far ...", presses.len());
            said = Instant::now();
        }
    }
    if undecodable > 0 {
        eprintln!("skipped {undecodable} messages that do not decode (see `button tail`)");
    }
    Ok(presses)
}

/// The report as text.
pub fn render(r: &PatternReport, source: &str, now: SystemTime) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Click patterns from {source}, as of {}: {} presses in {} sessions.\n",
        humantime::format_rfc3339_seconds(now),
        r.presses,
        r.sessions
    );
    let peak = r.per_minute.iter().copied().max().unwrap_or(0);
    let spark: String = r
        .per_minute
        .iter()
        .map(|&n| {
            const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
            if n == 0 {
                ' '
            } else {
                BARS[((n * 7).div_ceil(peak.max(1))) as usize]
            }
        })
        .collect();
    let _ = writeln!(
        out,
        "Presses per minute, last hour (oldest first; peak {peak}):"
    );
    let _ = writeln!(out, "  |{spark}|\n");
    let _ = writeln!(out, "Presses per session:");
    let most = r
        .presses_per_session
        .iter()
        .map(|b| b.sessions)
        .max()
        .unwrap_or(0)
        .max(1);
    for b in &r.presses_per_session {
        let width = (b.sessions * 40).div_ceil(most) as usize;
        let _ = writeln!(
            out,
            "  {:>6}  {:<40} {}",
            b.presses,
            "#".repeat(width),
            b.sessions
        );
    }
    let _ = writeln!(out);
    match r.median_gap_ms {
        Some(ms) => {
            let _ = writeln!(
                out,
                "Median time between two presses of a session: {:.2} s",
                ms / 1000.0
            );
        }
        None => {
            let _ = writeln!(
                out,
                "Median time between two presses of a session: no session pressed twice"
            );
        }
    }
    let _ = writeln!(
        out,
        "Sessions that pressed more than once: {:.1}%",
        r.repeat_share * 100.0
    );
    out
}
