//! The PostgreSQL and ClickHouse stores against real servers: the ones
//! `scripts/test` starts (see `scripts/services.sh`), or yours in
//! `BUTTON_TEST_POSTGRES` (postgres://...) and `BUTTON_TEST_CLICKHOUSE` (http://...).
//! How a missing server is reported: see `common::services`. Every test works in
//! a database of its own.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, UNIX_EPOCH};

use button::domain::{Action, Location, PressEvent};
use button::generate::SessionMaker;
use button::geo::GeoDb;
use button::publish::Publish;
use button::stats::{GlobalStats, StatsSource};
use button::store::EventStore;
use button::store::clickhouse::ChStore;
use button::store::postgres::PgStore;
use button::store::sqlite::SqliteStore;
use rand::SeedableRng;
use rand::rngs::StdRng;
use reqwest::Url;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use uuid::Uuid;

use button::config::ChConfig;
use common::services::{self, clickhouse_sql as ch_sql};
use common::tls::{self, TestCa};

async fn pg_one(url: &str, sql: &str) -> i64 {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client.query_one(sql, &[]).await.unwrap().get(0)
}

const START_S: u64 = 1_700_000_000;

/// At least `n` events from whole synthetic sessions, reproducibly.
fn generate(n: usize, seed: u64) -> Vec<PressEvent> {
    let geo = GeoDb::embedded().expect("the embedded geo database");
    let start = UNIX_EPOCH + Duration::from_secs(START_S);
    let mut maker = SessionMaker::new(&geo, StdRng::seed_from_u64(seed), start, 8);
    let mut events = Vec::with_capacity(n + 16);
    while events.len() < n {
        events.extend(maker.next_session().events);
    }
    events
}

/// Presses with awkward text: quotes and backslashes must survive every store.
fn awkward_events() -> Vec<PressEvent> {
    let at = UNIX_EPOCH + Duration::from_secs(START_S + 10);
    let session = Uuid::new_v4();
    let location = Location {
        country_code: "Q'\\".into(),
        country_name: "Côte d'Ivoire \\ \"quoted\" 'x'".into(),
        subdivision_name: "It's".into(),
        subdivision_code: "\\N".into(),
        city_name: "Tab\there\nnewline".into(),
        latitude: Some(-12.5),
        longitude: None,
    };
    (0..3)
        .map(|_| PressEvent::new(Action::PressButton, session, location.clone(), Some(7), at))
        .collect()
}

/// What the statistics must say about `events` (whatever the duplicates).
struct Expected {
    distinct: usize,
    global: GlobalStats,
    sessions: HashMap<Uuid, u64>,
    /// Presses per country at or after `since`.
    since: i64,
    recent: BTreeMap<String, u64>,
}

fn expected(events: &[PressEvent]) -> Expected {
    let mut seen = HashSet::new();
    let distinct: Vec<&PressEvent> = events.iter().filter(|e| seen.insert(e.event_id)).collect();
    let presses: Vec<&&PressEvent> = distinct
        .iter()
        .filter(|e| e.action == Action::PressButton)
        .collect();
    let mut timestamps: Vec<i64> = presses.iter().map(|e| e.timestamp).collect();
    timestamps.sort_unstable();
    // A whole minute, as the stats service asks (see `stats::last_hour_start`).
    let since = timestamps[timestamps.len() / 2].div_euclid(60_000_000) * 60_000_000;
    let mut by_country: BTreeMap<String, (String, u64)> = BTreeMap::new();
    let mut sessions = HashMap::new();
    let mut recent = BTreeMap::new();
    for e in &presses {
        let l = &e.location;
        by_country
            .entry(l.country_code.clone())
            .or_insert_with(|| (l.country_name.clone(), 0))
            .1 += 1;
        *sessions.entry(e.session_id).or_insert(0) += 1;
        if e.timestamp >= since {
            *recent.entry(l.country_code.clone()).or_insert(0) += 1;
        }
    }
    let global = GlobalStats::of(
        by_country
            .into_iter()
            .map(|(code, (name, presses))| (code, name, presses)),
    );
    assert_eq!(global.total, presses.len() as u64);
    Expected {
        distinct: distinct.len(),
        global,
        sessions,
        since,
        recent,
    }
}

/// Writes `events` as a sink facing redeliveries would: every batch at least
/// once, some twice, overlapping, and one batch holding the same event twice.
async fn write_with_duplicates(store: &dyn EventStore, events: &[PressEvent]) {
    let n = events.len();
    let (a, b) = (n * 3 / 4, n / 2);
    store.write(&events[..a]).await.unwrap();
    store.write(&events[..a]).await.unwrap(); // redelivered as is
    store.write(&events[b..]).await.unwrap(); // overlapping the first
    let mut twice = events[..10].to_vec();
    twice.extend_from_slice(&events[..10]);
    store.write(&twice).await.unwrap(); // duplicates inside one batch
    store.write(&[]).await.unwrap();
}

/// Checks every statistics query of `store` against `want`; returns its global stats.
async fn check_stats(store: &dyn StatsSource, want: &Expected, name: &str) -> GlobalStats {
    let global = store.global().await.unwrap();
    assert_eq!(global.total, want.global.total, "{name}: total presses");
    assert_eq!(
        global.by_country, want.global.by_country,
        "{name}: presses by country"
    );
    let mut checked = 0;
    for (session, presses) in want.sessions.iter().take(50) {
        assert_eq!(
            store.session_presses(*session).await.unwrap(),
            *presses,
            "{name}: presses in session {session}"
        );
        checked += 1;
    }
    assert!(checked > 0);
    assert_eq!(store.session_presses(Uuid::new_v4()).await.unwrap(), 0);
    for c in &want.global.by_country {
        let code = &c.country_code;
        assert_eq!(
            store.country_presses_since(code, 0).await.unwrap(),
            c.presses,
            "{name}: all presses from {code}"
        );
        assert_eq!(
            store.country_presses_since(code, want.since).await.unwrap(),
            want.recent.get(code).copied().unwrap_or(0),
            "{name}: presses from {code} since {}",
            want.since
        );
        assert_eq!(
            store.country_presses_since(code, i64::MAX).await.unwrap(),
            0,
            "{name}: presses from {code} in the future"
        );
    }
    assert_eq!(store.country_presses_since("ZZ", 0).await.unwrap(), 0);
    global
}

fn test_events() -> Vec<PressEvent> {
    let mut events = generate(2_000, 42);
    events.extend(awkward_events());
    events
}

/// The presses both upgrade tests store with the first schema, all from the
/// Netherlands: (session, second, action). Four presses, three of session 1;
/// minute 2 (120-179 s) holds two of them, minute 3 two more.
const FIRST_SCHEMA_EVENTS: [(&str, i64, &str); 5] = [
    ("00000000-0000-0000-0000-000000000001", 120, "PressButton"),
    ("00000000-0000-0000-0000-000000000001", 130, "PressButton"),
    ("00000000-0000-0000-0000-000000000001", 190, "PressButton"),
    ("00000000-0000-0000-0000-000000000001", 100, "EnterPage"),
    ("00000000-0000-0000-0000-000000000002", 200, "PressButton"),
];

/// The events of [`FIRST_SCHEMA_EVENTS`] as `VALUES` rows of
/// (event_id, session_id, timestamp in µs, action, then `rest`), event ids
/// 1.. in `id`'s form.
fn first_schema_values(id: impl Fn(usize) -> String, rest: &str) -> String {
    FIRST_SCHEMA_EVENTS
        .iter()
        .enumerate()
        .map(|(i, (session, second, action))| {
            format!(
                "({}, '{session}', {}, '{action}'{rest})",
                id(i + 1),
                second * 1_000_000
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a store upgraded from the first schema must answer for
/// [`FIRST_SCHEMA_EVENTS`], and that a new press (stored with `write`) adds to
/// the carried-over counts.
async fn assert_counts_after_the_upgrade(
    store: &impl StatsSource,
    write: impl AsyncFnOnce(PressEvent),
) {
    let one = FIRST_SCHEMA_EVENTS[0].0.parse().unwrap();
    assert_eq!(store.session_presses(one).await.unwrap(), 3);
    for (since_s, presses) in [(0, 4), (120, 4), (180, 2), (240, 0)] {
        assert_eq!(
            store
                .country_presses_since("NL", since_s * 1_000_000)
                .await
                .unwrap(),
            presses,
            "since {since_s} s"
        );
    }
    let more = PressEvent::new(
        Action::PressButton,
        one,
        Location::unknown(),
        None,
        UNIX_EPOCH + Duration::from_secs(200),
    );
    write(more).await;
    assert_eq!(store.session_presses(one).await.unwrap(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_database_of_the_first_schema_keeps_its_counts_after_the_upgrade() {
    let Some(pg) = services::postgres() else {
        return;
    };
    let url = pg.new_database().await;
    // The first schema, with presses written by the first version's statement
    // (events only, totals per country).
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(include_str!(
            "../src/store/postgres/migrations/schema_migrations.sql"
        ))
        .await
        .unwrap();
    client
        .batch_execute(include_str!(
            "../src/store/postgres/migrations/0001_events.sql"
        ))
        .await
        .unwrap();
    client
        .batch_execute(&format!(
            "INSERT INTO button_schema_migrations (version) VALUES (1);
             INSERT INTO button_presses (event_id, session_id, \"timestamp\", action, country_name,
                 country_code, subdivision_name, subdivision_code, city_name)
             SELECT e, s::uuid, t, a, 'Netherlands', 'NL', '', '', ''
             FROM (VALUES {}) AS v (e, s, t, a);
             INSERT INTO presses_by_country VALUES ('NL', 'Netherlands', 4);",
            first_schema_values(|_| "gen_random_uuid()".into(), "")
        ))
        .await
        .unwrap();

    let store = PgStore::connect(&(&url).parse().unwrap()).await.unwrap();
    store.migrate().await.unwrap();
    assert_counts_after_the_upgrade(&store, async |e| {
        store.write(std::slice::from_ref(&e)).await.unwrap()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clickhouse_database_of_the_first_schema_keeps_its_counts_after_the_upgrade() {
    let Some(ch) = services::clickhouse() else {
        return;
    };
    let url = ch.new_database().await;
    // The first schema (in the URL's database), with events as the first
    // version's sink wrote them.
    let first = [
        include_str!("../src/store/clickhouse/migrations/schema_migrations.sql"),
        include_str!("../src/store/clickhouse/migrations/0001_events.sql"),
    ];
    for statement in first.iter().flat_map(|file| file.split(';')) {
        if !statement.trim().is_empty() {
            ch_sql(&url, &statement.replace("{db}.", "")).await;
        }
    }
    ch_sql(
        &url,
        "INSERT INTO button_schema_migrations (version) VALUES (1)",
    )
    .await;
    let values = first_schema_values(
        |i| format!("'00000000-0000-7000-8000-{i:012}'"),
        ", 'Netherlands', 'NL', '', '', ''",
    );
    ch_sql(
        &url,
        &format!(
            "INSERT INTO button_presses (event_id, session_id, timestamp, action, \
             country_name, country_code, subdivision_name, subdivision_code, city_name) \
             VALUES {values}"
        ),
    )
    .await;

    let store = ChStore::connect(&(&url).parse().unwrap()).await.unwrap();
    store.migrate().await.unwrap();
    assert_counts_after_the_upgrade(&store, async |e| {
        store.write(std::slice::from_ref(&e)).await.unwrap()
    })
    .await;
    assert_eq!(store.global().await.unwrap().total, 5);
}

#[tokio::test]
async fn an_embedded_store_of_the_first_schema_keeps_its_counts_after_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.sqlite3");
    {
        // The first schema, as the first version left it (user_version 1).
        let conn = rusqlite::Connection::open(&file).unwrap();
        conn.execute_batch(include_str!(
            "../src/store/sqlite/migrations/0001_events.sql"
        ))
        .unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute_batch(&format!(
            "INSERT INTO events (event_id, session_id, timestamp, action, country_code,
                 country_name, subdivision_name, subdivision_code, city_name)
             SELECT column1, column2, column3, column4, 'NL', 'Netherlands', '', '', ''
             FROM (VALUES {});
             INSERT INTO presses_by_country VALUES ('NL', 'Netherlands', 4);",
            first_schema_values(|i| format!("'e{i}'"), "")
        ))
        .unwrap();
    }
    let store = SqliteStore::open(dir.path(), 4).unwrap();
    let version: i64 = rusqlite::Connection::open(&file)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, 2, "upgraded to the current schema");
    assert_counts_after_the_upgrade(&store, async |e| store.publish(e).await.unwrap()).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_migrates_writes_idempotently_and_counts_exactly() {
    let Some(pg) = services::postgres() else {
        return;
    };
    let url = pg.new_database().await;
    // Concurrent migrations on an empty database, then again one by one.
    let (a, b) = (
        PgStore::connect(&(&url).parse().unwrap()).await.unwrap(),
        PgStore::connect(&(&url).parse().unwrap()).await.unwrap(),
    );
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    ra.unwrap();
    rb.unwrap();
    a.migrate().await.unwrap();
    a.migrate().await.unwrap();
    assert_eq!(
        pg_one(&url, "SELECT count(*) FROM button_schema_migrations").await,
        2
    );

    let events = test_events();
    let want = expected(&events);
    write_with_duplicates(&a, &events).await;
    assert_eq!(
        pg_one(&url, "SELECT count(*) FROM button_presses").await,
        want.distinct as i64
    );
    check_stats(&a, &want, "postgres").await;
    // The other store instance (its own connections) sees the same.
    check_stats(&b, &want, "postgres (second instance)").await;
}

/// A new ClickHouse database on the test server, and two store instances on
/// it (each with its own connections and its own record of what it inserted).
async fn two_clickhouse_stores() -> Option<(String, ChStore, ChStore)> {
    let url = services::clickhouse()?.new_database().await;
    let connect = async || ChStore::connect(&(&url).parse().unwrap()).await.unwrap();
    let (a, b) = (connect().await, connect().await);
    Some((url, a, b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_store_migrates_writes_idempotently_and_counts_exactly() {
    let Some((url, a, b)) = two_clickhouse_stores().await else {
        return;
    };
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    ra.unwrap();
    rb.unwrap();
    a.migrate().await.unwrap();
    a.migrate().await.unwrap();
    assert_eq!(
        ch_sql(
            &url,
            "SELECT arraySort(groupArray(version)) FROM (SELECT DISTINCT version FROM button_schema_migrations)"
        )
        .await
        .trim(),
        "[1,2,3]"
    );

    let events = test_events();
    let want = expected(&events);
    write_with_duplicates(&a, &events).await;
    // Duplicates are rows until merges collapse them; FINAL collapses them now.
    let distinct = ch_sql(&url, "SELECT count() FROM button_presses FINAL").await;
    assert_eq!(distinct.trim(), want.distinct.to_string());
    let rows: usize = ch_sql(&url, "SELECT count() FROM button_presses")
        .await
        .trim()
        .parse()
        .unwrap();
    assert!(rows >= want.distinct);
    // Nothing settled yet: every minute is counted from its ids.
    check_stats(&a, &want, "clickhouse").await;
    let settled_total =
        || services::clickhouse_totals(&url, "presses_by_country_minute_totals", "minute");
    let rolled_up_total =
        || services::clickhouse_totals(&url, "presses_by_country_day_totals", "day");
    assert_eq!(settled_total().await, 0);
    a.settle().await.unwrap();
    assert_eq!(settled_total().await, want.global.total);
    assert_eq!(rolled_up_total().await, want.global.total);
    check_stats(&b, &want, "clickhouse (settled)").await;
    // After merges, the same figures.
    ch_sql(&url, "OPTIMIZE TABLE button_presses FINAL").await;
    ch_sql(&url, "OPTIMIZE TABLE presses_by_country_minute FINAL").await;
    for table in [
        "presses_by_country_minute_totals",
        "presses_by_country_day",
        "presses_by_country_day_totals",
    ] {
        ch_sql(&url, &format!("OPTIMIZE TABLE {table} FINAL")).await;
    }
    check_stats(&b, &want, "clickhouse (after merges)").await;

    // Presses written by something else than the store (the on-platform
    // Kafka-engine path): nothing settles their minute, and they count all the
    // same, once each.
    let top = &want.global.by_country[0];
    let now_us = UNIX_EPOCH.elapsed().unwrap().as_micros() as i64;
    let before = a
        .country_presses_since(&top.country_code, want.since)
        .await
        .unwrap();
    for _ in 0..2 {
        ch_sql(
            &url,
            &format!(
                "INSERT INTO button_presses (event_id, session_id, timestamp, action, \
                 country_name, country_code, subdivision_name, subdivision_code, city_name) \
                 VALUES ('00000000-0000-7000-8000-000000000001', '00000000-0000-4000-8000-000000000001', \
                 {now_us}, 'PressButton', '', '{code}', '', '', ''), \
                 ('00000000-0000-7000-8000-000000000002', '00000000-0000-4000-8000-000000000001', \
                 {now_us}, 'PressButton', '', '{code}', '', '', '')",
                code = top.country_code
            ),
        )
        .await;
    }
    let global = b.global().await.unwrap();
    assert_eq!(global.total, want.global.total + 2);
    assert_eq!(
        b.country_presses_since(&top.country_code, want.since)
            .await
            .unwrap(),
        before + 2
    );
    // A store settles the minutes it inserted into itself: not these, which
    // only a sweep of every minute finds (a store's first settling is one).
    a.settle().await.unwrap();
    assert_eq!(settled_total().await, want.global.total);
    b.settle().await.unwrap();
    assert_eq!(settled_total().await, want.global.total + 2);
    // Settled, the same figures.
    assert_eq!(b.global().await.unwrap(), global);
    // And what a store inserts is settled by its next settling.
    let more = generate(300, 7);
    a.write(&more).await.unwrap();
    a.settle().await.unwrap();
    let presses = more
        .iter()
        .filter(|e| e.action == Action::PressButton)
        .count() as u64;
    assert_eq!(settled_total().await, want.global.total + 2 + presses);
    assert_eq!(rolled_up_total().await, want.global.total + 2 + presses);
    assert_eq!(
        a.global().await.unwrap().total,
        want.global.total + 2 + presses
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_counts_and_settles_a_backlog_spread_over_many_minutes() {
    // A sink that replays a topic written over days finds tens of thousands of
    // countries' minutes unsettled: more than one statement can name.
    let Some((url, a, b)) = two_clickhouse_stores().await else {
        return;
    };
    a.migrate().await.unwrap();
    // 30,000 presses, each in a minute of its own (about three weeks), from
    // three countries.
    let countries = [
        ("NL", "Netherlands"),
        ("GB", "United Kingdom"),
        ("JP", "Japan"),
    ];
    let events: Vec<PressEvent> = (0..30_000u64)
        .map(|i| {
            let (code, name) = countries[i as usize % 3];
            let mut l = Location::unknown();
            l.country_code = code.into();
            l.country_name = name.into();
            PressEvent::new(
                Action::PressButton,
                Uuid::from_u128(u128::from(i / 10)),
                l,
                None,
                UNIX_EPOCH + Duration::from_secs(START_S + i * 60),
            )
        })
        .collect();
    for batch in events.chunks(10_000) {
        a.write(batch).await.unwrap();
    }
    let counted = |g: GlobalStats| {
        g.by_country
            .iter()
            .map(|c| (c.country_code.clone(), c.presses))
            .collect::<Vec<_>>()
    };
    let want = vec![
        ("GB".to_string(), 10_000),
        ("JP".to_string(), 10_000),
        ("NL".to_string(), 10_000),
    ];
    // Unsettled: counted from their ids.
    let mut got = counted(b.global().await.unwrap());
    got.sort();
    assert_eq!(got, want);
    a.settle().await.unwrap();
    let settled = ch_sql(
        &url,
        "SELECT count(), sum(presses) FROM presses_by_country_minute_totals",
    )
    .await;
    assert_eq!(settled.trim(), "30000\t30000");
    // And its days rolled up: three countries on each of the 22 days.
    let rolled_up = async || {
        ch_sql(
            &url,
            "SELECT count(), sum(p) FROM (SELECT argMax(presses, inserted) AS p \
             FROM presses_by_country_day_totals GROUP BY country_code, day)",
        )
        .await
        .trim()
        .to_owned()
    };
    assert_eq!(rolled_up().await, "66\t30000");
    let mut got = counted(b.global().await.unwrap());
    got.sort();
    assert_eq!(got, want);

    // A late press into a day rolled up long ago, from a store that has not
    // settled it: the day's total is out of date, and reads count the day
    // from its minutes (one of them unsettled) instead.
    let mut late = events[3].clone();
    late.event_id = Uuid::from_u128(u128::MAX);
    b.write(&[late.clone(), late]).await.unwrap();
    let mut want = want;
    want[2].1 += 1; // NL, the country of events[3]
    let mut got = counted(a.global().await.unwrap());
    got.sort();
    assert_eq!(got, want, "a day inserted into since its roll-up");
    b.settle().await.unwrap();
    assert_eq!(rolled_up().await, "66\t30001");
    let mut got = counted(a.global().await.unwrap());
    got.sort();
    assert_eq!(got, want);

    // Rolled up, the all-time figures read the days alone: without the
    // minutes' tables they stay the same.
    for table in [
        "presses_by_country_minute",
        "presses_by_country_minute_totals",
    ] {
        ch_sql(&url, &format!("TRUNCATE TABLE {table}")).await;
    }
    let mut got = counted(a.global().await.unwrap());
    got.sort();
    assert_eq!(got, want, "read from the days' totals");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_stores_agree_on_every_figure() {
    let (Some(pg), Some(ch)) = (services::postgres(), services::clickhouse()) else {
        return;
    };
    let pg = PgStore::connect(&(&pg.new_database().await).parse().unwrap())
        .await
        .unwrap();
    let ch = ChStore::connect(&(&ch.new_database().await).parse().unwrap())
        .await
        .unwrap();
    pg.migrate().await.unwrap();
    ch.migrate().await.unwrap();
    let events = generate(3_000, 7);
    let want = expected(&events);
    for chunk in events.chunks(700) {
        // Each chunk twice, as after a sink crash between write and commit.
        for _ in 0..2 {
            pg.write(chunk).await.unwrap();
            ch.write(chunk).await.unwrap();
        }
    }
    let from_pg = pg.global().await.unwrap();
    let from_ch = ch.global().await.unwrap();
    assert_eq!(from_pg, from_ch);
    assert_eq!(from_pg, want.global);
    for c in &want.global.by_country {
        assert_eq!(
            pg.country_presses_since(&c.country_code, want.since)
                .await
                .unwrap(),
            ch.country_presses_since(&c.country_code, want.since)
                .await
                .unwrap()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_that_retrying_cannot_fix_say_so() {
    if let Some(pg) = services::postgres() {
        // No migration: the table does not exist (a schema error).
        let store = PgStore::connect(&(&pg.new_database().await).parse().unwrap())
            .await
            .unwrap();
        let err = store.write(&generate(5, 1)).await.unwrap_err();
        eprintln!("expected error: {err}");
        assert!(!err.retryable, "{err}");
        let chain = format!("{:#}", anyhow::Error::from(err));
        assert!(chain.contains("button_presses"), "{chain}");
        store.migrate().await.unwrap();
        // Text PostgreSQL cannot store (a data error).
        let mut bad = generate(5, 2);
        bad[0].location.city_name = "nul\0byte".into();
        let err = store.write(&bad).await.unwrap_err();
        eprintln!("expected error: {err}");
        assert!(!err.retryable, "{err}");
        // The connection is still good: the next write succeeds.
        store.write(&generate(5, 3)).await.unwrap();
        // The password never shows, the host does.
        let mut url = Url::parse(&pg.url).unwrap();
        url.set_password(Some("hunter2-secret")).unwrap();
        url.set_port(Some(1)).unwrap();
        let err = PgStore::connect(&(url.as_str()).parse().unwrap())
            .await
            .unwrap_err();
        let msg = format!("{err:#}");
        eprintln!("expected error: {msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
        assert!(msg.contains("127.0.0.1:1"), "{msg}");
    }
    if let Some(ch) = services::clickhouse() {
        let store = ChStore::connect(&(&ch.new_database().await).parse().unwrap())
            .await
            .unwrap();
        let err = store.write(&generate(5, 1)).await.unwrap_err();
        eprintln!("expected error: {err}");
        assert!(!err.retryable, "{err}");
        let chain = format!("{:#}", anyhow::Error::from(err));
        assert!(chain.contains("Code: 60"), "{chain}");
        let mut url = Url::parse(&ch.url).unwrap();
        url.set_username("default").unwrap();
        url.set_password(Some("hunter2-secret")).unwrap();
        let err = ChStore::connect(&(url.as_str()).parse().unwrap())
            .await
            .unwrap_err();
        let msg = format!("{err:#}");
        eprintln!("expected error: {msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
        assert!(msg.contains("127.0.0.1"), "{msg}");
        let mut url = Url::parse(&ch.url).unwrap();
        url.query_pairs_mut().append_pair("database", "no_such_db");
        let err = ChStore::connect(&(url.as_str()).parse().unwrap())
            .await
            .unwrap_err();
        eprintln!("expected error: {err}");
        assert!(err.to_string().contains("no_such_db"), "{err}");
    }
}

/// libpq's sslmode values, against the test server's TLS (a certificate for
/// `localhost` only, signed by the CA in `BUTTON_TEST_POSTGRES_CA`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tls_follows_libpq_sslmode() {
    let Some(pg) = services::postgres() else {
        return;
    };
    let Some(ca) = pg.tls_ca else {
        eprintln!("SKIPPED: BUTTON_TEST_POSTGRES_CA is not set: this server has no test TLS");
        return;
    };
    let base = pg.url;
    let port = Url::parse(&base).unwrap().port().unwrap();
    let ca = ca.replace('/', "%2F");
    let url = |host: &str, params: &str, app: &str| {
        format!("postgres://postgres@{host}:{port}/postgres?{params}&application_name={app}")
    };
    // Whether the store's connection, found by its application name, uses TLS.
    let (observer, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let uses_tls = |app: String| {
        let observer = &observer;
        async move {
            observer
                .query_one(
                    "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a \
                     USING (pid) WHERE a.application_name = $1",
                    &[&app],
                )
                .await
                .unwrap()
                .get::<_, Option<bool>>(0)
                .expect("the store's connection is open")
        }
    };
    let ok = [
        ("127.0.0.1", "sslmode=disable".to_owned(), false),
        ("127.0.0.1", "sslmode=prefer".to_owned(), true),
        // require: encrypted, the certificate is not checked (as libpq).
        ("127.0.0.1", "sslmode=require".to_owned(), true),
        // verify-ca: the chain is checked, not the name.
        (
            "127.0.0.1",
            format!("sslmode=verify-ca&sslrootcert={ca}"),
            true,
        ),
        // require with a root certificate verifies the chain (as libpq).
        (
            "127.0.0.1",
            format!("sslmode=require&sslrootcert={ca}"),
            true,
        ),
        (
            "localhost",
            format!("sslmode=verify-full&sslrootcert={ca}"),
            true,
        ),
    ];
    for (i, (host, params, tls)) in ok.iter().enumerate() {
        let app = format!("tls_ok_{i}");
        let store = PgStore::connect(&(&url(host, params, &app)).parse().unwrap())
            .await
            .unwrap_or_else(|e| panic!("{params}: {e:#}"));
        assert_eq!(uses_tls(app).await, *tls, "{params}");
        drop(store);
    }
    let fail = [
        // The name does not match (the certificate is for localhost only).
        ("127.0.0.1", format!("sslmode=verify-full&sslrootcert={ca}")),
        // Our CA is not in the system's trust store.
        ("localhost", "sslmode=verify-full".to_owned()),
        ("localhost", "sslmode=verify-ca".to_owned()),
    ];
    for (host, params) in fail {
        let err = PgStore::connect(&(&url(host, &params, "tls_fail")).parse().unwrap())
            .await
            .err()
            .unwrap_or_else(|| panic!("{params} connected"));
        let msg = format!("{err:#}");
        eprintln!("expected error: {msg}");
        assert!(msg.contains(&format!("{host}:{port}")), "{msg}");
        assert!(msg.to_lowercase().contains("tls"), "{msg}");
    }
}

/// A user with a password: credentials go in headers, percent-escapes decoded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_credentials_from_the_url_work() {
    let Some(ch) = services::clickhouse() else {
        return;
    };
    let Some((user, password)) = ch.password_user.clone() else {
        eprintln!(
            "SKIPPED: BUTTON_TEST_CLICKHOUSE_USER/_PASSWORD are not set: no user with a password"
        );
        return;
    };
    let mut url = Url::parse(&ch.new_database().await).unwrap();
    url.set_username(&user).unwrap();
    url.set_password(Some(&password)).unwrap();
    let store = ChStore::connect(&(url.as_str()).parse().unwrap())
        .await
        .unwrap();
    assert!(!format!("{store:?}").contains(&password));
    store.migrate().await.unwrap();
    let events = generate(100, 3);
    store.write(&events).await.unwrap();
    assert_eq!(store.global().await.unwrap(), expected(&events).global);
    url.set_password(Some("wrong")).unwrap();
    let err = ChStore::connect(&(url.as_str()).parse().unwrap())
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("193"), "{err:#}");
}

/// A user in read-only mode (`readonly=1`) may not send the settings the reads
/// ask for: every figure is read all the same, without them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clickhouse_user_in_read_only_mode_reads_every_figure() {
    let Some(ch) = services::clickhouse() else {
        return;
    };
    let Some(reader) = ch.reader() else {
        return;
    };
    let url = ch.new_database().await;
    let writer = ChStore::connect(&(&url).parse().unwrap()).await.unwrap();
    writer.migrate().await.unwrap();
    let events = generate(200, 3);
    writer.write(&events).await.unwrap();
    let mut as_reader = Url::parse(&url).unwrap();
    as_reader.set_username(&reader).unwrap();
    let store = ChStore::connect(&(as_reader.as_str()).parse().unwrap())
        .await
        .unwrap();
    check_stats(&store, &expected(&events), "ClickHouse, read-only user").await;
    // And it may not write: the user is what the test says it is.
    let err = anyhow::Error::new(store.write(&events[..1]).await.unwrap_err());
    assert!(format!("{err:#}").contains("Code: 164"), "{err:#}");
}

/// Several writers (as several sink processes after a rebalance) writing the same
/// batches at the same time, each in its own order: no deadlock, no double count.
async fn concurrent_overlapping_writes(stores: Vec<Arc<dyn EventStore>>, events: &[PressEvent]) {
    use rand::seq::SliceRandom;
    let events = Arc::new(events.to_vec());
    let tasks: Vec<_> = stores
        .into_iter()
        .enumerate()
        .map(|(i, store)| {
            let events = events.clone();
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(i as u64);
                for batch in events.chunks(500) {
                    let mut mine = batch.to_vec();
                    mine.shuffle(&mut rng);
                    if let Err(e) = store.write(&mine).await {
                        panic!("writer {i}: {e}");
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_of_the_same_events_count_each_once() {
    let events = generate(3_000, 5);
    let want = expected(&events);
    if let Some(pg) = services::postgres() {
        let url = pg.new_database().await;
        let mut stores: Vec<Arc<dyn EventStore>> = Vec::new();
        let first = Arc::new(PgStore::connect(&(&url).parse().unwrap()).await.unwrap());
        first.migrate().await.unwrap();
        for _ in 0..3 {
            stores.push(Arc::new(
                PgStore::connect(&(&url).parse().unwrap()).await.unwrap(),
            ));
        }
        concurrent_overlapping_writes(stores, &events).await;
        check_stats(first.as_ref(), &want, "postgres").await;
    }
    if let Some(ch) = services::clickhouse() {
        let url = ch.new_database().await;
        let mut stores: Vec<Arc<dyn EventStore>> = Vec::new();
        let first = Arc::new(ChStore::connect(&(&url).parse().unwrap()).await.unwrap());
        first.migrate().await.unwrap();
        for _ in 0..3 {
            stores.push(Arc::new(
                ChStore::connect(&(&url).parse().unwrap()).await.unwrap(),
            ));
        }
        concurrent_overlapping_writes(stores, &events).await;
        check_stats(first.as_ref(), &want, "clickhouse").await;
    }
}

/// A TCP proxy that can cut every open connection, or refuse new ones for a
/// while: a database outage without stopping the shared test server.
struct Proxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = {
            let (up, conns) = (up.clone(), conns.clone());
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        continue; // dropped: closed at once
                    }
                    let task = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    conns.lock().await.push(task);
                }
            })
        };
        Proxy {
            addr,
            up,
            conns,
            accept,
        }
    }

    /// Closes every open connection.
    async fn cut(&self) {
        for task in self.conns.lock().await.drain(..) {
            task.abort();
        }
    }

    /// Refuses (closes) new connections while `down`.
    async fn set_down(&self, down: bool) {
        self.up.store(!down, Ordering::SeqCst);
        if down {
            self.cut().await;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

fn socket_addr(url: &Url) -> SocketAddr {
    format!(
        "{}:{}",
        url.host_str().unwrap(),
        url.port_or_known_default().unwrap_or(5432)
    )
    .parse()
    .unwrap()
}

/// Through an outage, a store fails retryably and then recovers by itself.
async fn survives_outage(store: &dyn EventStore, proxy: &Proxy, events: &[PressEvent]) {
    let name = store.name();
    let parts: Vec<&[PressEvent]> = events.chunks(events.len() / 4 + 1).collect();
    store.write(parts[0]).await.unwrap();

    // Connections cut: the next write may fail (retryably) or reconnect at once;
    // the one after must work.
    proxy.cut().await;
    if let Err(e) = store.write(parts[1]).await {
        eprintln!("expected error after a cut: {e}");
        assert!(e.retryable, "{name}: {e}");
        store.write(parts[1]).await.unwrap();
    }

    // Server unreachable for a while: retryable failures only.
    proxy.set_down(true).await;
    for _ in 0..3 {
        let err = store.write(parts[2]).await.unwrap_err();
        eprintln!("expected error while down: {err}");
        assert!(err.retryable, "{name}: {err}");
    }
    proxy.set_down(false).await;
    // Back: the store reconnects without help.
    store.write(parts[2]).await.unwrap();
    store.write(parts[3]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_recover_from_outages_by_themselves() {
    let events = generate(400, 11);
    let want = expected(&events);
    if let Some(pg) = services::postgres() {
        let url = pg.new_database().await;
        let mut via = Url::parse(&url).unwrap();
        let proxy = Proxy::start(socket_addr(&via)).await;
        via.set_port(Some(proxy.addr.port())).unwrap();
        let store = PgStore::connect(&(via.as_str()).parse().unwrap())
            .await
            .unwrap()
            .with_query_timeout(Duration::from_secs(5));
        store.migrate().await.unwrap();
        survives_outage(&store, &proxy, &events).await;
        assert_eq!(store.global().await.unwrap(), want.global);
    }
    if let Some(ch) = services::clickhouse() {
        let url = ch.new_database().await;
        let mut via = Url::parse(&url).unwrap();
        let proxy = Proxy::start(socket_addr(&via)).await;
        via.set_port(Some(proxy.addr.port())).unwrap();
        let store = ChStore::connect(&(via.as_str()).parse().unwrap())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        survives_outage(&store, &proxy, &events).await;
        assert_eq!(store.global().await.unwrap(), want.global);
    }
}

/// Throughput of one writer sending batches of 10,000 (a sink's shape). Printed,
/// not asserted: see BENCHMARKS.md. Meaningful in release builds only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_throughput() {
    const EVENTS: usize = 100_000;
    const BATCH: usize = 10_000;
    let events = generate(EVENTS, 99);
    let events = &events[..EVENTS];
    let report = |name: &str, took: Duration| {
        println!(
            "THROUGHPUT {name}: {EVENTS} events in batches of {BATCH}: {:.2} s, {:.0} events/s",
            took.as_secs_f64(),
            EVENTS as f64 / took.as_secs_f64()
        );
    };
    if let Some(pg) = services::postgres() {
        let store = PgStore::connect(&(&pg.new_database().await).parse().unwrap())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let t = Instant::now();
        for batch in events.chunks(BATCH) {
            store.write(batch).await.unwrap();
        }
        report("postgres", t.elapsed());
        let t = Instant::now();
        for batch in events.chunks(BATCH) {
            store.write(batch).await.unwrap();
        }
        report("postgres (all duplicates)", t.elapsed());
        assert_eq!(store.global().await.unwrap(), expected(events).global);
    }
    if let Some(ch) = services::clickhouse() {
        let store = ChStore::connect(&(&ch.new_database().await).parse().unwrap())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let t = Instant::now();
        for batch in events.chunks(BATCH) {
            store.write(batch).await.unwrap();
        }
        report("clickhouse", t.elapsed());
        assert_eq!(store.global().await.unwrap(), expected(events).global);
    }
}

/// `https://localhost:PORT/?database=...` through a TLS endpoint in front of the
/// test ClickHouse, trusting `ca`.
fn https_config(port: u16, database_url: &str, ca: Option<std::path::PathBuf>) -> ChConfig {
    let database = Url::parse(database_url).unwrap();
    let query = database.query().unwrap_or_default();
    ChConfig {
        url: format!("https://localhost:{port}/?{query}")
            .parse()
            .unwrap(),
        ca,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_over_https_trusts_the_given_ca_and_refuses_any_other() {
    let Some(ch) = services::clickhouse() else {
        return;
    };
    let database_url = ch.new_database().await;
    let project_ca = TestCa::new("button test project CA");
    let port = project_ca.proxy_to(&tls::host_port(&ch.url)).await;

    let store = ChStore::connect(&https_config(
        port,
        &database_url,
        Some(project_ca.ca_file()),
    ))
    .await
    .unwrap();
    store.migrate().await.unwrap();
    let events = generate(100, 5);
    store.write(&events).await.unwrap();
    assert_eq!(store.global().await.unwrap(), expected(&events).global);

    // Another CA, or none (only the system's), is refused at the handshake, and
    // the error says where and why.
    let other_ca = TestCa::new("some other CA");
    for ca in [Some(other_ca.ca_file()), None] {
        let err = ChStore::connect(&https_config(port, &database_url, ca.clone()))
            .await
            .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains(&format!("https://localhost:{port}/")), "{msg}");
        assert!(msg.contains("certificate"), "with {ca:?}: {msg}");
    }
    // The right CA does not excuse a certificate for another host name.
    let mut by_address = https_config(port, &database_url, Some(project_ca.ca_file()));
    by_address.url = by_address
        .url
        .expose()
        .replace("localhost", "127.0.0.1")
        .parse()
        .unwrap();
    let err = ChStore::connect(&by_address).await.unwrap_err();
    assert!(format!("{err:#}").contains("certificate"), "{err:#}");
}
