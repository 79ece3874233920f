//! One server per test, in this process: `button serve`'s own [`Server`] on port 0,
//! with the embedded SQLite store in a temporary directory (or Kafka, given its
//! flags), and visitors that keep their session cookie.
//!
//! Loopback is the trusted proxy, so a test chooses each visitor's address with
//! `X-Forwarded-For`. Cookies are signed with [`TEST_SECRET`], so tests open them
//! with the library's own [`SessionCodec`], never by taking them apart.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::SystemTime;

use async_trait::async_trait;
use button::cli::ServeArgs;
use button::domain::PressEvent;
use button::pipeline::Pipeline;
use button::publish::{Publish, PublishError};
use button::session::{Session, SessionCodec};
use button::web::Server;
use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;

use super::cli;

/// The session secret of every test server.
pub const TEST_SECRET: &str = "test-secret-test-secret-test-secret-0123";

/// Flags of every test server, before a test's own.
fn base_flags(data_dir: &Path) -> Vec<String> {
    [
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data_dir.to_str().expect("a UTF-8 temporary path"),
        "--trusted-proxies",
        "127.0.0.0/8,::1/128",
        "--secret",
        TEST_SECRET,
        "--no-fake-local-ip",
        // Many presses from one address in a moment: the limits are tested on their own.
        "--press-limit-per-address",
        "0",
        "--press-limit-per-session",
        "0",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Settings of a test server keeping its data in `data_dir`.
pub fn test_args(data_dir: &Path) -> ServeArgs {
    let flags = base_flags(data_dir);
    cli::serve(&flags.iter().map(String::as_str).collect::<Vec<_>>())
}

/// The codec that opens the test servers' cookies.
pub fn session_codec() -> SessionCodec {
    SessionCodec::new(TEST_SECRET.as_bytes(), false).expect("a long enough secret")
}

/// The session in a test server's cookie (`name=value`, attributes allowed).
pub fn open_session(cookie: &str) -> Session {
    let cookie = cookie::Cookie::parse(cookie).expect("a cookie");
    session_codec()
        .open(cookie.value(), SystemTime::now())
        .expect("the server's cookie verifies with the test secret")
}

/// A running test server.
pub struct TestApp {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its data directory (the embedded store, `events.sqlite3`).
    pub data_dir: tempfile::TempDir,
    /// A client that does not follow redirects.
    pub http: reqwest::Client,
    held: Arc<AtomicUsize>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// A test server with the default test settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// A test server with `flags` added to the test settings, e.g. `--kafka-brokers`.
pub async fn spawn_app_with_flags(flags: &[&str]) -> TestApp {
    let data_dir = tempfile::tempdir().unwrap();
    let mut all = base_flags(data_dir.path());
    all.extend(flags.iter().map(|f| f.to_string()));
    let args = cli::serve(&all.iter().map(String::as_str).collect::<Vec<_>>());
    start(data_dir, args).await
}

/// A test server whose settings `configure` changes.
pub async fn spawn_app_with(configure: impl FnOnce(&mut ServeArgs)) -> TestApp {
    let data_dir = tempfile::tempdir().unwrap();
    let mut args = test_args(data_dir.path());
    configure(&mut args);
    start(data_dir, args).await
}

async fn start(data_dir: tempfile::TempDir, args: ServeArgs) -> TestApp {
    let config = args.config().expect("valid settings");
    let mut pipeline = Pipeline::build(&config.pipeline)
        .await
        .expect("the pipeline builds");
    let held = Arc::new(AtomicUsize::new(0));
    pipeline.publisher = Arc::new(Watched {
        inner: pipeline.publisher,
        held: held.clone(),
    });
    let server = Server::with_pipeline(&config, pipeline)
        .await
        .expect("the server builds");
    let addr = server.local_addr();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server.run_until_stopped(shutdown.clone()));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    TestApp {
        addr,
        data_dir,
        http,
        held,
        shutdown,
        task,
    }
}

impl TestApp {
    /// `http://ADDR/PATH`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A visitor coming from `ip` (through our trusted proxy), without a cookie yet.
    pub fn visitor(&self, ip: &str) -> Visitor<'_> {
        Visitor {
            app: self,
            ip: ip.to_owned(),
            cookie: None,
        }
    }

    /// The embedded store's database file.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.path().join("events.sqlite3")
    }

    /// Every event in the embedded store.
    pub fn events(&self) -> Vec<PressEvent> {
        button::store::sqlite::read_all(&self.db_path()).unwrap()
    }

    /// Events the destination has accepted and not yet answered for (waiting in
    /// the store's queue or in a write that has not committed).
    pub fn events_held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    /// Stops the server gracefully (drains the store) and returns its data.
    pub async fn stop(self) -> tempfile::TempDir {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
        self.data_dir
    }
}

/// The server's destination, counting the events it holds: an event is held
/// once `publish` did not finish at its first poll. Destinations refuse at once
/// (a full queue answers `Overloaded` without waiting), so a press that is
/// neither answered nor held has not reached the destination yet.
struct Watched {
    inner: Arc<dyn Publish>,
    held: Arc<AtomicUsize>,
}

#[async_trait]
impl Publish for Watched {
    async fn publish(&self, event: PressEvent) -> Result<(), PublishError> {
        let mut publishing = self.inner.publish(event);
        if let Poll::Ready(result) = futures::poll!(&mut publishing) {
            return result;
        }
        self.held.fetch_add(1, Ordering::SeqCst);
        let result = publishing.await;
        self.held.fetch_sub(1, Ordering::SeqCst);
        result
    }

    fn is_ready(&self) -> bool {
        self.inner.is_ready()
    }

    fn backlog(&self) -> Option<usize> {
        self.inner.backlog()
    }

    fn spooled(&self) -> Option<button::publish::SpoolDepth> {
        self.inner.spooled()
    }

    async fn close(&self) {
        self.inner.close().await
    }
}

/// A simulated visitor: its address, and its session cookie once it has one.
pub struct Visitor<'a> {
    app: &'a TestApp,
    /// The address the trusted proxy reports.
    pub ip: String,
    /// `name=value` of the session cookie, once the server set one.
    pub cookie: Option<String>,
}

/// An answer, read in full.
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Reply {
    /// The stored event a press answer names (`x-event-id`).
    pub fn event_id(&self) -> Option<uuid::Uuid> {
        self.headers
            .get("x-event-id")
            .map(|v| v.to_str().unwrap().parse().unwrap())
    }
}

impl Visitor<'_> {
    async fn send(&mut self, req: reqwest::RequestBuilder) -> Reply {
        let mut req = req.header("x-forwarded-for", &self.ip);
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        let res = req.send().await.expect("request sent");
        if let Some(set) = res.headers().get("set-cookie") {
            let set = cookie::Cookie::parse(set.to_str().unwrap()).expect("a cookie");
            self.cookie = Some(set.stripped().to_string());
        }
        let status = res.status();
        let headers = res.headers().clone();
        Reply {
            status,
            headers,
            body: res.text().await.unwrap(),
        }
    }

    /// `GET path`, as a full page load.
    pub async fn get(&mut self, path: &str) -> Reply {
        let req = self.app.http.get(self.app.url(path));
        self.send(req).await
    }

    /// `GET path`, as HTMX asks for a fragment.
    pub async fn get_htmx(&mut self, path: &str) -> Reply {
        let req = self
            .app
            .http
            .get(self.app.url(path))
            .header("hx-request", "true");
        self.send(req).await
    }

    /// A press the way HTMX sends it.
    pub async fn press(&mut self) -> Reply {
        let req = self
            .app
            .http
            .post(self.app.url("/press"))
            .header("hx-request", "true")
            .header("content-type", "application/x-www-form-urlencoded")
            .body("last=");
        self.send(req).await
    }

    /// `/api/stats` as this visitor sees it; fails unless it answers 200.
    pub async fn stats(&mut self) -> serde_json::Value {
        let r = self.get("/api/stats").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        serde_json::from_str(&r.body).unwrap()
    }

    /// The session in this visitor's cookie.
    pub fn session(&self) -> Session {
        open_session(self.cookie.as_deref().expect("the visitor has a cookie"))
    }

    /// The session id in this visitor's cookie.
    pub fn session_id(&self) -> String {
        self.session().id.to_string()
    }
}
