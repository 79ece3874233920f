//! The page, its assets and headers, health and readiness, and a graceful stop.

use reqwest::StatusCode;

use crate::common::spawn_app;
use button::domain::Action;

#[tokio::test]
async fn visiting_the_page_sets_a_cookie_and_records_enter_page() {
    let app = spawn_app().await;
    let mut v = app.visitor("193.0.6.139");

    let page = v.get("/").await;

    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body
            .contains("Clicking this button does absolutely nothing.")
    );
    assert!(page.body.contains("<button type=\"submit\""));
    assert!(v.cookie.as_deref().unwrap().starts_with("button_session="));
    let events = app.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].action, Action::EnterPage);
    assert_eq!(events[0].location.country_code, "NL");
    assert_eq!(events[0].session_id.to_string(), v.session_id());
    assert_eq!(events[0].cohort, Some(0));
}

#[tokio::test]
async fn the_cookie_is_secure_when_the_trusted_proxy_says_the_visitor_came_over_https() {
    let app = spawn_app().await;
    let cookie = |proto: Option<&'static str>| {
        let mut req = app
            .http
            .get(app.url("/"))
            .header("x-forwarded-for", "8.8.8.8");
        if let Some(p) = proto {
            req = req.header("x-forwarded-proto", p);
        }
        async move {
            let r = req.send().await.unwrap();
            r.headers()["set-cookie"].to_str().unwrap().to_owned()
        }
    };
    assert!(cookie(Some("https")).await.contains("; Secure"));
    assert!(!cookie(Some("http")).await.contains("Secure"));
    assert!(!cookie(None).await.contains("Secure"));
}

#[tokio::test]
async fn every_response_forbids_other_origins_and_the_page_uses_none() {
    let app = spawn_app().await;
    let mut v = app.visitor("8.8.8.8");
    for path in ["/", "/stats", "/api/stats", "/assets/htmx.min.js", "/nope"] {
        let r = v.get(path).await;
        let csp = r
            .headers
            .get("content-security-policy")
            .unwrap()
            .to_str()
            .unwrap();
        assert!(csp.starts_with("default-src 'self'"), "{path}: {csp}");
    }
    for path in ["/", "/stats"] {
        let body = v.get(path).await.body;
        assert!(
            !body.contains("http://") && !body.contains("https://") && !body.contains("//cdn"),
            "{path}"
        );
        assert!(
            !body.contains("<script>") && !body.contains("style=\""),
            "{path} has inline code"
        );
    }
}

#[tokio::test]
async fn assets_are_served_by_the_binary() {
    let app = spawn_app().await;
    let mut v = app.visitor("8.8.8.8");
    let js = v.get("/assets/htmx.min.js").await;
    assert_eq!(js.status, StatusCode::OK);
    assert!(js.body.contains("htmx"), "not htmx");
    assert!(
        js.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let css = v.get("/assets/style.css").await;
    assert!(css.body.contains(".the-button"));
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = spawn_app().await;
    let mut v = app.visitor("8.8.8.8");
    assert_eq!(v.get("/healthz").await.status, StatusCode::OK);
    let ready = v.get("/readyz").await;
    assert_eq!(
        (ready.status, ready.body.as_str()),
        (StatusCode::OK, "ready\n")
    );
}

#[tokio::test]
async fn readyz_reports_a_store_that_cannot_commit_and_recovers_by_itself() {
    let app = spawn_app().await;
    let blocker = rusqlite::Connection::open(app.db_path()).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();

    // The writer gives up after SQLite's 5 s busy timeout: the press is refused, not lost.
    let mut v = app.visitor("8.8.8.8");
    let refused = v.press().await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        v.get("/readyz").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    blocker.execute_batch("ROLLBACK").unwrap();
    assert_eq!(v.press().await.status, StatusCode::OK);
    assert_eq!(v.get("/readyz").await.status, StatusCode::OK);
    assert_eq!(
        app.events().len(),
        1,
        "only the acknowledged press is stored"
    );
}

#[tokio::test]
async fn graceful_shutdown_keeps_every_acknowledged_press() {
    let app = spawn_app().await;
    let mut v = app.visitor("8.8.8.8");
    for _ in 0..5 {
        assert_eq!(v.press().await.status, StatusCode::OK);
    }
    let dir = app.stop().await;
    let events = button::store::sqlite::read_all(&dir.path().join("events.sqlite3")).unwrap();
    assert_eq!(events.len(), 5);
}
