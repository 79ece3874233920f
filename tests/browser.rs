//! A real headless Chromium (Debian's `chromium` + `chromium-driver`) presses the
//! button: the reply changes without a page load, and the stats page counts it.
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

    c.close().await.unwrap();
    app.stop().await;
}
