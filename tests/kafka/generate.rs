//! `button generate` into the topic, and `button tail` reading it back.

use std::collections::HashSet;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::common::kafka::{Record, by_key, new_topic, read_topic};
use crate::common::{cli, services};
use button::domain::{Action, PressEvent};
use button::generate::{GenerateArgs, generate};

fn generate_args(broker: &str, topic: &str, extra: &[&str]) -> GenerateArgs {
    let mut flags = vec!["--kafka-brokers", broker, "--topic", topic];
    flags.extend_from_slice(extra);
    cli::generate(&flags)
}

fn decode_all(records: &[Record]) -> Vec<PressEvent> {
    records
        .iter()
        .map(|r| button::encoding::decode(&r.value, None).unwrap())
        .collect()
}

#[tokio::test]
async fn generate_with_a_seed_makes_the_same_events_twice_and_counts_them() {
    let Some(broker) = services::kafka() else {
        return;
    };
    let (a, b) = (new_topic(&broker).await, new_topic(&broker).await);
    let flags = ["--sessions", "12", "--seed", "2026", "--max-presses", "4"];

    let sa = generate(
        &generate_args(&broker, &a, &flags),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let sb = generate(
        &generate_args(&broker, &b, &flags),
        CancellationToken::new(),
    )
    .await
    .unwrap();

    assert_eq!(sa.events, sb.events);
    assert_eq!((sa.sessions, sa.errors), (12, 0));
    let ea = decode_all(&read_topic(
        &broker,
        &a,
        sa.events as usize,
        Duration::from_secs(20),
    ));
    let eb = decode_all(&read_topic(
        &broker,
        &b,
        sb.events as usize,
        Duration::from_secs(20),
    ));
    assert_eq!(
        ea.len() as u64,
        sa.events,
        "the summary counts what is in the topic"
    );
    assert_eq!(
        ea.iter()
            .filter(|e| e.action == Action::PressButton)
            .count() as u64,
        sa.presses
    );
    let set = |v: &[PressEvent]| {
        v.iter()
            .map(|e| serde_json::to_string(e).unwrap())
            .collect::<HashSet<_>>()
    };
    assert_eq!(set(&ea), set(&eb), "same seed, same events");
    assert!(
        ea.iter().all(|e| e.cohort.is_none()),
        "generated events have a null cohort"
    );
    let sessions: HashSet<_> = ea.iter().map(|e| e.session_id).collect();
    assert_eq!(sessions.len(), 12);
}

#[tokio::test]
async fn generated_sessions_keep_their_order_in_one_partition() {
    let Some(broker) = services::kafka() else {
        return;
    };
    let topic = new_topic(&broker).await;
    let s = generate(
        &generate_args(
            &broker,
            &topic,
            &["--sessions", "10", "--seed", "5", "--rate", "0"],
        ),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let records = read_topic(&broker, &topic, s.events as usize, Duration::from_secs(20));
    for (_, records) in by_key(&records) {
        let events = decode_all(&records);
        assert_eq!(events[0].action, Action::EnterPage);
        assert!(events.windows(2).all(|w| w[0].timestamp < w[1].timestamp));
    }
}

#[tokio::test]
async fn tail_from_the_beginning_prints_exactly_the_events_produced() {
    let Some(broker) = services::kafka() else {
        return;
    };
    let topic = new_topic(&broker).await;
    let s = generate(
        &generate_args(&broker, &topic, &["--sessions", "6", "--seed", "77"]),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let produced = decode_all(&read_topic(
        &broker,
        &topic,
        s.events as usize,
        Duration::from_secs(20),
    ));

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_button"))
        .args([
            "tail",
            "--kafka-brokers",
            &broker,
            "--topic",
            &topic,
            "--from-beginning",
            "--json",
        ])
        .args(["--max", &s.events.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Vec<PressEvent> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(printed.len() as u64, s.events);
    let ids = |v: &[PressEvent]| v.iter().map(|e| e.event_id).collect::<HashSet<_>>();
    assert_eq!(ids(&printed), ids(&produced));

    // Readable lines, stopping by itself at the end of the topic.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_button"))
        .args([
            "tail",
            "--kafka-brokers",
            &broker,
            "--topic",
            &topic,
            "--from-beginning",
        ])
        .args(["--idle-timeout", "3s"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count() as u64, s.events, "{text}");
    assert!(
        text.lines()
            .all(|l| l.contains("PressButton") || l.contains("EnterPage"))
    );
}

#[tokio::test]
async fn analyze_reports_the_click_patterns_of_what_generate_wrote() {
    let Some(broker) = services::kafka() else {
        return;
    };
    let topic = new_topic(&broker).await;
    // Event time half an hour ago, so the per-minute series covers the run.
    let start = std::time::SystemTime::now() - Duration::from_secs(1800);
    let start = humantime::format_rfc3339_seconds(start).to_string();
    let flags = [
        "--sessions",
        "40",
        "--seed",
        "11",
        "--max-presses",
        "6",
        "--start",
        &start,
    ];
    let summary = generate(
        &generate_args(&broker, &topic, &flags),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let events = decode_all(&read_topic(
        &broker,
        &topic,
        summary.events as usize,
        Duration::from_secs(20),
    ));

    let args = crate::common::cli::analyze(&["--kafka-brokers", &broker, "--topic", &topic]);
    let (report, source) = button::analyze::analyze(&args, CancellationToken::new())
        .await
        .unwrap();

    // The same figures, computed plainly from the events read back.
    assert_eq!(source, "the topic");
    let mut by_session: std::collections::HashMap<uuid::Uuid, Vec<i64>> = Default::default();
    for e in events.iter().filter(|e| e.action == Action::PressButton) {
        by_session
            .entry(e.session_id)
            .or_default()
            .push(e.timestamp);
    }
    assert_eq!(report.presses, summary.presses);
    assert_eq!(report.sessions, by_session.len() as u64);
    let mut gaps: Vec<i64> = Vec::new();
    for times in by_session.values_mut() {
        times.sort();
        gaps.extend(times.windows(2).map(|w| w[1] - w[0]));
    }
    gaps.sort();
    let median = if gaps.len() % 2 == 1 {
        gaps[gaps.len() / 2] as f64
    } else {
        (gaps[gaps.len() / 2 - 1] + gaps[gaps.len() / 2]) as f64 / 2.0
    };
    assert_eq!(report.median_gap_ms, Some(median / 1000.0));
    let ones = by_session.values().filter(|t| t.len() == 1).count() as u64;
    assert_eq!(report.presses_per_session[0].sessions, ones);
    assert_eq!(report.per_minute.iter().sum::<u64>(), summary.presses);
    let repeat = 1.0 - ones as f64 / by_session.len() as f64;
    assert!((report.repeat_share - repeat).abs() < 1e-9);
}
