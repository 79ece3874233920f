//! Presses: replies, the visitor's country through a trusted proxy (and not
//! through anyone else), concurrency, and a full queue refusing with 503.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::StatusCode;

use crate::common::{eventually, spawn_app, spawn_app_with};
use button::domain::Action;

#[tokio::test]
async fn press_returns_a_reply_and_stores_the_proxied_visitors_country() {
    let app = spawn_app().await;
    let mut v = app.visitor("81.2.69.142");

    let r = v.press().await;

    assert_eq!(r.status, StatusCode::OK);
    let reply = r.body.lines().next().unwrap().trim();
    // One of the list, or now and then one that names the visitor's country.
    let named = button::replies::GEO
        .iter()
        .any(|g| g.replace("{place}", "United Kingdom") == reply);
    assert!(
        button::replies::BUILT_IN.lines().any(|l| l == reply) || named,
        "unexpected reply {reply:?}"
    );
    let events = app.events();
    let press = events
        .iter()
        .find(|e| e.action == Action::PressButton)
        .unwrap();
    assert_eq!(press.location.country_code, "GB");
    assert_eq!(press.location.country_name, "United Kingdom");
    assert_eq!(Some(press.event_id), r.event_id());
}

#[tokio::test]
async fn spoofed_forwarding_header_from_an_untrusted_peer_is_ignored() {
    // Nobody is trusted: the header is the visitor's own claim.
    let app = spawn_app_with(|a| {
        a.trusted_proxies = button::domain::TrustedProxies::none();
        a.no_fake_local_ip = true;
    })
    .await;
    let mut v = app.visitor("81.2.69.142");
    v.press().await;
    let events = app.events();
    assert_eq!(
        events[0].location.country_code, "--",
        "the loopback peer is unknown"
    );
    assert_eq!(events[0].location.country_name, "Unknown");
}

#[tokio::test]
async fn press_without_javascript_redirects_back_showing_the_reply() {
    let app = spawn_app().await;
    let mut v = app.visitor("8.8.8.8");
    let req = app
        .http
        .post(app.url("/press"))
        .header("x-forwarded-for", "8.8.8.8")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("last=");
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/?reply="), "{location}");

    let page = v.get(&location).await;
    let i: usize = location["/?reply=".len()..].parse().unwrap();
    let text = button::replies::Replies::built_in()
        .text(i, &v.session().location)
        .unwrap();
    assert!(page.body.contains(&text), "reply not shown");
    // Showing the reply is not a new page view.
    assert_eq!(
        app.events()
            .iter()
            .filter(|e| e.action == Action::EnterPage)
            .count(),
        0
    );
}

#[tokio::test]
async fn consecutive_presses_get_different_replies() {
    let app = spawn_app().await;
    let mut last = String::new();
    for _ in 0..10 {
        let r = app
            .http
            .post(app.url("/press"))
            .header("hx-request", "true")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("last={last}"))
            .send()
            .await
            .unwrap();
        let body = r.text().await.unwrap();
        let idx = body
            .split("value=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_owned();
        assert_ne!(idx, last);
        last = idx;
    }
}

#[tokio::test]
async fn concurrent_presses_from_many_sessions_are_all_stored_exactly_once() {
    let app = std::sync::Arc::new(spawn_app().await);
    let ips = [
        "8.8.8.8",
        "81.2.69.142",
        "193.0.6.139",
        "2001:67c:2e8:22::c100:68b",
    ];
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let app = app.clone();
            let ip = ips[i % ips.len()];
            tokio::spawn(async move {
                let mut v = app.visitor(ip);
                let mut ids = Vec::new();
                for _ in 0..25 {
                    let r = v.press().await;
                    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
                    ids.push(r.event_id().unwrap());
                }
                ids
            })
        })
        .collect();
    let mut acked = HashSet::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    assert_eq!(acked.len(), 1000);

    let stored: Vec<_> = app
        .events()
        .into_iter()
        .filter(|e| e.action == Action::PressButton)
        .collect();
    let stored_ids: HashSet<_> = stored.iter().map(|e| e.event_id).collect();
    assert_eq!(stored.len(), 1000, "duplicates or losses");
    assert_eq!(stored_ids, acked);
    let sessions: HashSet<_> = stored.iter().map(|e| e.session_id).collect();
    assert_eq!(sessions.len(), 40);
}

#[tokio::test]
async fn a_full_queue_answers_503_with_a_try_again_fragment_and_loses_nothing() {
    let app = spawn_app_with(|a| a.queue_capacity = 2).await;
    // Hold SQLite's write lock so the writer stalls and the queue fills up.
    let blocker = rusqlite::Connection::open(app.db_path()).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();

    // Press until a press is refused. Each press before it is held by the store
    // (taken by the stalled writer, or queued behind it) before the next is sent.
    let app = std::sync::Arc::new(app);
    let mut waiting = Vec::new();
    let refused = loop {
        let held = app.events_held();
        let press = {
            let app = app.clone();
            tokio::spawn(async move { app.visitor("8.8.8.8").press().await })
        };
        eventually(
            "the press to be held or answered",
            Duration::from_secs(10),
            async || press.is_finished() || app.events_held() > held,
        )
        .await;
        if press.is_finished() {
            break press.await.unwrap();
        }
        waiting.push(press);
    };

    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        refused.body.contains("please try again"),
        "{}",
        refused.body
    );
    assert!(refused.body.contains("reply-error"));
    assert_eq!(refused.headers["retry-after"], "1");

    blocker.execute_batch("ROLLBACK").unwrap();
    let mut ok = HashSet::new();
    for w in waiting {
        let r = w.await.unwrap();
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        ok.insert(r.event_id().unwrap());
    }
    let stored: HashSet<_> = app.events().iter().map(|e| e.event_id).collect();
    assert_eq!(stored, ok, "exactly the acknowledged presses are stored");
}
