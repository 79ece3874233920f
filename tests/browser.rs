//! A real headless Chromium (Debian's `chromium` + `chromium-driver`) presses the
//! button: the reply changes without a page load, and the stats page counts it.
//!
//! The test script installs both and sets `BUTTON_TEST_BROWSER=required`; then a
//! missing browser fails the test. Without that variable (a bare `cargo test` on a
//! machine without Chromium) the test says so and passes without running.

#[path = "api/helpers.rs"]
#[allow(dead_code)]
mod api;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use button::web::Server;
use fantoccini::{ClientBuilder, Locator};
use tokio_util::sync::CancellationToken;

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_chromedriver() -> Option<(Driver, u16)> {
    let required = std::env::var("BUTTON_TEST_BROWSER").is_ok_and(|v| v == "required");
    let path = std::env::var("BUTTON_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
    let port = free_port();
    match Command::new(&path)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(child) => Some((Driver(child), port)),
        Err(e) if !required => {
            eprintln!(
                "SKIPPED: cannot start {path} ({e}); run the test script to install Chromium"
            );
            None
        }
        Err(e) => panic!("BUTTON_TEST_BROWSER=required but {path} does not start: {e}"),
    }
}

#[tokio::test]
async fn pressing_the_button_in_chromium_swaps_the_reply_and_counts_on_stats() {
    let Some((_driver, port)) = start_chromedriver() else {
        return;
    };

    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let args = api::serve_args(&["--listen", "127.0.0.1:0", "--data-dir", dir]);
    let server = Server::build(&args.config().unwrap()).await.unwrap();
    let base = format!("http://{}", server.local_addr());
    let stop = CancellationToken::new();
    let served = tokio::spawn(server.run_until_stopped(stop.clone()));

    let caps: serde_json::Map<String, serde_json::Value> = serde_json::from_value(serde_json::json!({
        "goog:chromeOptions": {
            "binary": std::env::var("BUTTON_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--no-first-run", "--disable-quic",
                     format!("--user-data-dir={}", data.path().join("chromium").display())]
        }
    }))
    .unwrap();
    // chromedriver needs a moment to listen.
    let mut client = None;
    for _ in 0..50 {
        match ClientBuilder::native()
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => {
                client = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let c = client.expect("chromedriver accepts a session");

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

    // The stats cache lives a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    c.goto(&format!("{base}/stats")).await.unwrap();
    let total = c.wait().for_element(Locator::Id("total")).await.unwrap();
    assert_eq!(total.text().await.unwrap(), "2");
    let mine = c.find(Locator::Id("session-presses")).await.unwrap();
    assert_eq!(mine.text().await.unwrap(), "2");

    c.close().await.unwrap();
    stop.cancel();
    served.await.unwrap().unwrap();
}
