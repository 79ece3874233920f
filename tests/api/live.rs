//! The live dashboard in the embedded mode: the world map on `/stats`, and
//! `/stats/live` pushing a press to every open dashboard, the viewer's own
//! session from another tab, and small countries kept out of public views.

use std::time::Duration;

use reqwest::StatusCode;

use crate::common::live::LiveViewer;
use crate::common::{eventually, spawn_app, spawn_app_with_flags};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_press_reaches_an_open_dashboard_without_a_reload() {
    let app = spawn_app().await;
    let mut watcher = app.visitor("8.8.8.8");
    watcher.get("/stats").await;
    let mut viewer = LiveViewer::connect(&app, &watcher).await;
    // A new viewer gets the whole picture first.
    viewer.wait_for("total", WAIT, |d| d == "0").await;
    viewer
        .wait_for("map", WAIT, |d| d.contains("\"NL\":[0,0]"))
        .await;

    let mut presser = app.visitor("193.0.6.139"); // Netherlands
    assert_eq!(presser.press().await.status, StatusCode::OK);

    // In the order of the frame: total, table, ticker, legend, map.
    viewer.wait_for("total", WAIT, |d| d == "1").await;
    let table = viewer
        .wait_for("table", WAIT, |d| d.contains("Netherlands"))
        .await;
    assert!(table.data.contains("100.0%"));
    viewer
        .wait_for("ticker", WAIT, |d| d.contains("Netherlands"))
        .await;
    let map = viewer.wait_for("map", WAIT, |d| d.contains("\"NL\"")).await;
    let shades: serde_json::Value = serde_json::from_str(&map.data).unwrap();
    assert_eq!(shades["NL"], serde_json::json!([1, 5]));
    // Never another visitor's session in what a viewer receives.
    let presser_session = presser.session_id();
    let mut rest = String::new();
    while let Some(e) = viewer.next(Duration::from_millis(600)).await {
        rest.push_str(&e.data);
    }
    assert!(!rest.contains(&presser_session));
    assert!(!map.data.contains(&presser_session) && !table.data.contains(&presser_session));
}

#[tokio::test]
async fn pressing_in_one_tab_updates_this_session_in_another() {
    let app = spawn_app().await;
    let mut tab = app.visitor("81.2.69.142"); // United Kingdom
    tab.press().await;
    let mut viewer = LiveViewer::connect(&app, &tab).await;
    viewer.wait_for("session", WAIT, |d| d == "1").await;
    viewer
        .wait_for("rank", WAIT, |d| d.contains("United Kingdom is #1"))
        .await;

    // The same cookie: another tab of the same session.
    tab.press().await;
    tab.press().await;
    viewer.wait_for("session", WAIT, |d| d == "3").await;
    viewer
        .wait_for("country-all-time", WAIT, |d| d == "3")
        .await;

    // Someone else's presses move the total, not this session.
    let mut other = app.visitor("8.8.8.8");
    for _ in 0..4 {
        other.press().await;
    }
    viewer.wait_for("total", WAIT, |d| d == "7").await;
    viewer
        .wait_for("rank", WAIT, |d| d.contains("United Kingdom is #2"))
        .await;
}

#[tokio::test]
async fn the_stats_page_draws_the_world_map_with_the_pressed_country_marked() {
    let app = spawn_app().await;
    let mut v = app.visitor("193.0.6.139");
    v.press().await;
    v.press().await;
    eventually(
        "the cached figures to include both presses",
        WAIT,
        async || {
            v.get("/stats")
                .await
                .body
                .contains("Netherlands: 2 presses")
        },
    )
    .await;
    let page = v.get("/stats").await;
    let body = &page.body;
    assert!(body.contains("sse-connect=\"/stats/live\""));
    assert!(body.contains("<svg id=\"world-map\""));
    // One shape per country of the dataset (Antarctica left out).
    assert_eq!(body.matches("<path ").count(), 176, "{}", &body[..400]);
    let nl = body
        .split("<path ")
        .find(|p| p.contains("data-code=\"NL\""))
        .expect("the Netherlands on the map");
    assert!(nl.contains("data-count=\"2\"") && nl.contains("class=\"country l5\""));
    assert!(nl.contains("Netherlands: 2 presses"));
    assert!(body.contains("Netherlands is #1 at pressing nothing"));
    // The page loads nothing from another origin: every src and href is a path.
    for attr in ["src=\"", "href=\""] {
        for value in body.split(attr).skip(1) {
            assert!(value.starts_with('/'), "{attr}{:.60}", value);
        }
    }
    for src in [
        "/assets/htmx.min.js",
        "/assets/htmx-ext-sse.js",
        "/assets/dashboard.js",
    ] {
        assert!(body.contains(&format!("src=\"{src}\"")));
        let asset = v.get(src).await;
        assert_eq!(asset.status, StatusCode::OK, "{src}");
        assert!(
            asset.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/javascript")
        );
    }
}

#[tokio::test]
async fn with_min_count_3_a_country_with_two_presses_shows_no_count() {
    let app = spawn_app_with_flags(&["--min-count", "3"]).await;
    let mut gb = app.visitor("81.2.69.142");
    let mut us = app.visitor("8.8.8.8");
    let mut viewer_visitor = app.visitor("193.0.6.139");
    viewer_visitor.get("/stats").await;
    let mut viewer = LiveViewer::connect(&app, &viewer_visitor).await;
    gb.press().await;
    gb.press().await;
    for _ in 0..3 {
        us.press().await;
    }
    eventually(
        "the cached totals to include every press",
        WAIT,
        async || us.stats().await["total"] == 5,
    )
    .await;

    let api = us.stats().await;
    assert_eq!(
        api["by_country"],
        serde_json::json!([{"country_code": "US", "country_name": "United States", "presses": 3}])
    );
    let page = us.get("/stats").await.body;
    assert!(!page.contains("United Kingdom</td>") && !page.contains(">United Kingdom <"));
    let gb_shape = page
        .split("<path ")
        .find(|p| p.contains("data-code=\"GB\""))
        .expect("Britain on the map");
    assert!(gb_shape.contains("data-count=\"0\""), "{gb_shape:.300}");
    assert!(page.contains("fewer than 3 presses are not shown"));

    let table = viewer
        .wait_for("table", WAIT, |d| d.contains("United States"))
        .await;
    assert!(!table.data.contains("United Kingdom"));
    let map = viewer
        .wait_for("map", WAIT, |d| d.contains("\"US\":[3,"))
        .await;
    assert!(map.data.contains("\"GB\":[0,0]"), "{}", map.data);
}

#[tokio::test]
async fn api_stats_carries_the_click_patterns_and_the_rank() {
    let app = spawn_app().await;
    let mut a = app.visitor("8.8.8.8");
    let mut b = app.visitor("8.8.4.4");
    for _ in 0..3 {
        a.press().await;
    }
    b.press().await;
    eventually("the live view to count every press", WAIT, async || {
        a.stats().await["patterns"]["presses"] == 4
    })
    .await;
    let s = a.stats().await;
    let p = &s["patterns"];
    assert_eq!(p["sessions"], 2);
    assert_eq!(p["per_minute"].as_array().unwrap().len(), 60);
    assert_eq!(
        p["per_minute"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .sum::<u64>(),
        4
    );
    assert_eq!(
        p["presses_per_session"][0],
        serde_json::json!({"presses": "1", "sessions": 1})
    );
    assert_eq!(
        p["presses_per_session"][2],
        serde_json::json!({"presses": "3", "sessions": 1})
    );
    assert_eq!(p["repeat_share"], 0.5);
    assert!(p["median_gap_ms"].as_f64().is_some());
    assert_eq!(s["your_country_rank"], 1);
}

#[tokio::test]
async fn a_dashboard_stream_ends_when_the_server_stops() {
    let app = spawn_app().await;
    let mut v = app.visitor("8.8.8.8");
    v.get("/stats").await;
    let mut viewer = LiveViewer::connect(&app, &v).await;
    viewer.wait_for("total", WAIT, |_| true).await;
    // A graceful stop must not wait for open dashboards.
    tokio::time::timeout(Duration::from_secs(10), app.stop())
        .await
        .expect("the server stopped with a dashboard open");
    while viewer.next(Duration::from_secs(5)).await.is_some() {}
}

#[tokio::test]
async fn analyze_reads_the_embedded_store() {
    let app = spawn_app().await;
    let mut a = app.visitor("8.8.8.8");
    let mut b = app.visitor("81.2.69.142");
    for _ in 0..4 {
        a.press().await;
    }
    b.get("/").await; // a page view is not a press
    b.press().await;
    let data = app.stop().await;

    let dir = data.path().to_str().unwrap();
    let args = crate::common::cli::analyze(&["--from", "embedded", "--data-dir", dir]);
    let (report, source) =
        button::analyze::analyze(&args, tokio_util::sync::CancellationToken::new())
            .await
            .unwrap();
    assert_eq!(source, "the embedded store");
    assert_eq!((report.presses, report.sessions), (5, 2));
    assert_eq!(report.presses_per_session[0].sessions, 1); // b: one press
    assert_eq!(report.presses_per_session[3].sessions, 1); // a: four ("4-5")
    assert_eq!(report.repeat_share, 0.5);
    let text = button::analyze::render(&report, source, std::time::SystemTime::now());
    assert!(text.contains("5 presses in 2 sessions"), "{text}");
    assert!(
        text.contains("Sessions that pressed more than once: 50.0%"),
        "{text}"
    );
}
