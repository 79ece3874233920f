//! A real headless Chromium (Debian's `chromium` + `chromium-driver`) presses the
//! button: the reply changes without a page load, the stats page counts it, and
//! the open dashboard shows a press from another session live (map, total,
//! ticker); a screenshot of it is saved under `target/screenshots/`.
//! How a missing browser is reported: see `common::services`.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};

use common::services::{self, Browser};
use common::{eventually, free_port, spawn_app};

/// The WebDriver server, stopped when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_chromedriver(browser: &Browser) -> (Driver, u16) {
    let port = free_port();
    let child = Command::new(&browser.chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{} does not start: {e}", browser.chromedriver.display()));
    (Driver(child), port)
}

#[tokio::test]
async fn pressing_the_button_in_chromium_swaps_the_reply_and_counts_on_stats() {
    let Some(browser) = services::browser() else {
        return;
    };
    let (_driver, port) = start_chromedriver(&browser);
    let app = spawn_app().await;
    let base = app.url("");
    let profile = tempfile::tempdir().unwrap();

    let caps: serde_json::Map<String, serde_json::Value> =
        serde_json::from_value(serde_json::json!({
            "goog:chromeOptions": {
                "binary": browser.chromium,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-background-networking", "--disable-component-update",
                         "--disable-sync", "--no-first-run", "--disable-quic",
                         format!("--user-data-dir={}", profile.path().display())]
            }
        }))
        .unwrap();
    // chromedriver takes a moment to listen.
    let mut client = None;
    eventually(
        "chromedriver to accept a session",
        Duration::from_secs(30),
        async || {
            client = ClientBuilder::native()
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
                .ok();
            client.is_some()
        },
    )
    .await;
    let c = client.unwrap();

    c.goto(&format!("{base}/")).await.unwrap();
    let button = c
        .wait()
        .for_element(Locator::Css("button.the-button"))
        .await
        .unwrap();
    // Marks this document: a full page load would lose the mark.
    c.execute("window.__sameDocument = true; return true;", vec![])
        .await
        .unwrap();
    let reply = c.find(Locator::Id("reply-text")).await.unwrap();
    assert_eq!(reply.text().await.unwrap(), "");

    button.click().await.unwrap();
    let mut text = String::new();
    for _ in 0..50 {
        text = reply.text().await.unwrap();
        if !text.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        button::replies::BUILT_IN.lines().any(|l| l == text),
        "reply {text:?}"
    );
    let same = c
        .execute("return window.__sameDocument === true;", vec![])
        .await
        .unwrap();
    assert_eq!(same, serde_json::json!(true), "the page reloaded");

    // Keyboard works: focus stays on the real button and Enter presses it again.
    let focused = c
        .execute("document.querySelector('button.the-button').focus(); return document.activeElement.tagName;", vec![])
        .await
        .unwrap();
    assert_eq!(focused, serde_json::json!("BUTTON"));
    button.send_keys("\u{E007}").await.unwrap(); // Enter
    for _ in 0..50 {
        if reply.text().await.unwrap() != text {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_ne!(
        reply.text().await.unwrap(),
        text,
        "Enter did not press the button"
    );

    // Everything the page loaded came from our own origin.
    let origins = c
        .execute(
            "return performance.getEntriesByType('resource').map(e => new URL(e.name).origin);",
            vec![],
        )
        .await
        .unwrap();
    for o in origins.as_array().unwrap() {
        assert_eq!(o.as_str().unwrap(), base, "request to another origin");
    }

    // The store-wide figures are cached for a second: reload until they count both.
    eventually(
        "the stats page to count both presses",
        Duration::from_secs(10),
        async || {
            c.goto(&format!("{base}/stats")).await.unwrap();
            let total = c.wait().for_element(Locator::Id("total")).await.unwrap();
            total.text().await.unwrap() == "2"
        },
    )
    .await;
    let total = c.find(Locator::Id("total")).await.unwrap();
    assert_eq!(total.text().await.unwrap(), "2");
    let mine = c.find(Locator::Id("session-presses")).await.unwrap();
    assert_eq!(mine.text().await.unwrap(), "2");

    // The dashboard is live: a press from another session shows on this page
    // without a reload (the mark would not survive one).
    c.execute("window.__sameDocument = true; return true;", vec![])
        .await
        .unwrap();
    eventually(
        "the dashboard to follow the live stream",
        Duration::from_secs(10),
        async || {
            let status = c.find(Locator::Id("live-status")).await.unwrap();
            status.text().await.unwrap().starts_with("Live:")
        },
    )
    .await;
    let mut elsewhere = app.visitor("193.0.6.139"); // the Netherlands
    assert_eq!(elsewhere.press().await.status, reqwest::StatusCode::OK);
    let nl = "document.querySelector('path[data-code=\"NL\"]')";
    eventually(
        "the press to show on the open dashboard: total, map and ticker",
        Duration::from_secs(10),
        async || {
            let total = c.find(Locator::Id("total")).await.unwrap().text().await.unwrap();
            let shape = c
                .execute(
                    &format!("var p = {nl}; return [p.getAttribute('data-count'), p.getAttribute('class')];"),
                    vec![],
                )
                .await
                .unwrap();
            let ticker = c.find(Locator::Id("ticker")).await.unwrap().text().await.unwrap();
            total == "3"
                && shape[0] == "1"
                && shape[1].as_str().is_some_and(|c| c.starts_with("country l") && c != "country l0")
                && ticker.contains("Netherlands")
        },
    )
    .await;
    let same = c
        .execute("return window.__sameDocument === true;", vec![])
        .await
        .unwrap();
    assert_eq!(same, serde_json::json!(true), "the dashboard reloaded");
    // A click (or tap) on a country keeps its count on show.
    c.execute(
        &format!("{nl}.dispatchEvent(new MouseEvent('click', {{bubbles: true}})); return true;"),
        vec![],
    )
    .await
    .unwrap();
    let info = c.find(Locator::Id("map-info")).await.unwrap();
    assert_eq!(info.text().await.unwrap(), "Netherlands: 1 press");

    // The dashboard as a test artifact, to look at.
    c.set_window_size(1280, 1600).await.unwrap();
    let png = c.screenshot().await.unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let shot = dir.join("dashboard.png");
    std::fs::write(&shot, png).unwrap();
    eprintln!("dashboard screenshot: {}", shot.display());

    // When the live stream breaks (here: the server stops), the page says so
    // and falls back to refreshing every 5 s.
    app.stop().await;
    eventually(
        "the dashboard to say that live updates are interrupted",
        Duration::from_secs(10),
        async || {
            let status = c.find(Locator::Id("live-status")).await.unwrap();
            status.text().await.unwrap().contains("interrupted")
        },
    )
    .await;
    c.close().await.unwrap();
}
