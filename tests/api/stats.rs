//! Statistics: `/api/stats` and `/stats` count what was pressed, and a forged
//! cookie is not believed.

use std::time::{Duration, SystemTime};

use button::session::{COOKIE_NAME, SessionCodec};
use reqwest::StatusCode;

use crate::common::{eventually, spawn_app};

#[tokio::test]
async fn api_stats_counts_match_what_was_pressed() {
    let app = spawn_app().await;
    let mut us1 = app.visitor("8.8.8.8");
    let mut us2 = app.visitor("8.8.4.4");
    let mut gb = app.visitor("81.2.69.142");
    us1.get("/").await; // page views are not presses
    for _ in 0..3 {
        us1.press().await;
    }
    us2.press().await;
    gb.press().await;
    gb.press().await;
    // The store-wide figures are cached for a second: wait until they include
    // every press.
    eventually(
        "the cached totals to include every press",
        Duration::from_secs(10),
        async || us1.stats().await["total"] == 6,
    )
    .await;

    let s = us1.stats().await;

    assert_eq!(s["total"], 6);
    assert_eq!(
        s["by_country"],
        serde_json::json!([
            {"country_code": "US", "country_name": "United States", "presses": 4},
            {"country_code": "GB", "country_name": "United Kingdom", "presses": 2},
        ])
    );
    assert_eq!(s["session"]["presses"], 3);
    assert_eq!(
        s["your_country"],
        serde_json::json!({"country_code": "US", "country_name": "United States", "all_time": 4, "last_hour": 4})
    );
    assert_eq!(gb.stats().await["session"]["presses"], 2);
}

#[tokio::test]
async fn stats_page_shows_the_table_and_follows_the_live_stream() {
    let app = spawn_app().await;
    let mut v = app.visitor("193.0.6.139");
    v.press().await;
    // The store-wide figures are cached for a second.
    eventually(
        "the cached table to include the press",
        Duration::from_secs(10),
        async || v.get("/stats").await.body.contains("100.0%"),
    )
    .await;

    let page = v.get("/stats").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Netherlands"));
    assert!(page.body.contains("100.0%"));
    assert!(page.body.contains("sse-connect=\"/stats/live\""));
    assert!(page.body.contains("<html"));

    let fragment = v.get_htmx("/stats").await;
    assert!(
        fragment
            .body
            .trim_start()
            .starts_with("<section id=\"stats\"")
    );
    assert!(!fragment.body.contains("<html"));
}

#[tokio::test]
async fn a_forged_cookie_starts_a_fresh_session_instead_of_failing() {
    let app = spawn_app().await;
    let mut v = app.visitor("8.8.8.8");
    v.press().await;
    let original = v.session_id();

    // Claim to be somewhere else: the readable session, edited, and signed again
    // without the server's key (a visitor does not have it).
    let session = v.session();
    let mut edited = session.clone();
    edited.location.country_code = "FR".into();
    assert_ne!(edited, session);
    let forger = SessionCodec::new(b"not-the-server-key-not-the-server-key-0123", false).unwrap();
    v.cookie = Some(format!(
        "{COOKIE_NAME}={}",
        forger.seal(&edited, SystemTime::now())
    ));

    for garbage in [
        None,
        Some("button_session=%%%garbage"),
        Some("button_session="),
    ] {
        let mut other = app.visitor("8.8.8.8");
        other.cookie = garbage.map(str::to_owned);
        assert_eq!(other.press().await.status, StatusCode::OK);
    }
    let r = v.press().await;
    assert_eq!(r.status, StatusCode::OK);
    assert_ne!(v.session_id(), original, "a new session was started");
    let s = v.stats().await;
    assert_eq!(
        s["your_country"]["country_code"], "US",
        "the forged country was not believed"
    );
    assert_eq!(s["session"]["presses"], 1);
}
