//! `spawn_app` and a tiny cookie-keeping client per simulated visitor.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use button::cli::{Cli, ServeArgs};
use button::domain::PressEvent;
use button::web::Server;
use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;

pub struct TestApp {
    pub addr: SocketAddr,
    pub data_dir: tempfile::TempDir,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Settings for a test server: loopback is the trusted proxy, so tests choose the
/// visitor's address with `X-Forwarded-For`.
pub fn test_args(data_dir: PathBuf) -> ServeArgs {
    serve_args(&[
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--trusted-proxies",
        "127.0.0.0/8,::1/128",
        "--secret",
        "test-secret-test-secret-test-secret-0123",
        "--no-fake-local-ip",
    ])
}

/// The subcommand `argv` (without the program name) parses to, exactly as the
/// binary parses its command line.
pub fn command(argv: &[&str]) -> button::cli::Command {
    use clap::Parser;
    Cli::try_parse_from(std::iter::once("button").chain(argv.iter().copied()))
        .unwrap()
        .command
        .expect("a subcommand")
}

/// `button serve` settings parsed from flags.
pub fn serve_args(flags: &[&str]) -> ServeArgs {
    let argv: Vec<&str> = std::iter::once("serve")
        .chain(flags.iter().copied())
        .collect();
    let button::cli::Command::Serve(args) = command(&argv) else {
        unreachable!("parsed `serve`")
    };
    args
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// The test server with `flags` added to [`test_args`] (used by the Kafka and sink tests).
#[allow(dead_code)]
pub async fn spawn_app_with_flags(flags: &[&str]) -> TestApp {
    let extra = serve_args(flags);
    spawn_app_with(|a| {
        a.kafka = extra.kafka;
        a.stats_from = extra.stats_from;
        a.postgres = extra.postgres;
        a.clickhouse = extra.clickhouse;
    })
    .await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut ServeArgs)) -> TestApp {
    let data_dir = tempfile::tempdir().unwrap();
    let mut args = test_args(data_dir.path().to_path_buf());
    configure(&mut args);
    let server = Server::build(&args.config().expect("valid settings"))
        .await
        .expect("server builds");
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
        shutdown,
        task,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A visitor coming from `ip` (through our trusted proxy).
    pub fn visitor(&self, ip: &str) -> Visitor<'_> {
        Visitor {
            app: self,
            ip: ip.to_owned(),
            cookie: None,
        }
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.path().join("events.sqlite3")
    }

    pub fn events(&self) -> Vec<PressEvent> {
        button::store::sqlite::read_all(&self.db_path()).unwrap()
    }

    /// Stops the server gracefully (drains the store) and returns its data.
    pub async fn stop(self) -> tempfile::TempDir {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
        self.data_dir
    }
}

pub struct Visitor<'a> {
    app: &'a TestApp,
    pub ip: String,
    /// `name=value` of the session cookie, once the server set one.
    pub cookie: Option<String>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Reply {
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
            let set = set.to_str().unwrap();
            self.cookie = Some(set.split(';').next().unwrap().to_owned());
        }
        let status = res.status();
        let headers = res.headers().clone();
        Reply {
            status,
            headers,
            body: res.text().await.unwrap(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        let req = self.app.http.get(self.app.url(path));
        self.send(req).await
    }

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

    pub async fn stats(&mut self) -> serde_json::Value {
        let r = self.get("/api/stats").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        serde_json::from_str(&r.body).unwrap()
    }

    /// The session id inside the (signed, readable) cookie.
    pub fn session_id(&self) -> String {
        let (_, json) = open_cookie(self.cookie.as_ref().unwrap());
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        v["s"]["sid"].as_str().unwrap().to_owned()
    }
}

/// Splits a session cookie (`name=value`, attributes allowed) into its signature
/// (the first 44 characters: a base64 HMAC-SHA256) and its decoded JSON payload.
pub fn open_cookie(cookie: &str) -> (String, Vec<u8>) {
    use base64::Engine;
    let value = cookie.split(';').next().unwrap().split_once('=').unwrap().1;
    let (mac, payload) = value.split_at(44);
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    (mac.to_owned(), json)
}

/// A `button serve` child process and everything it logged.
pub struct ServerProcess {
    pub child: Child,
    pub addr: String,
    pub logs: Arc<Mutex<String>>,
}

/// Starts the binary on a free port with loopback as the trusted proxy.
pub fn start_server(data_dir: &std::path::Path, extra_env: &[(&str, &str)]) -> ServerProcess {
    let mut child = Command::new(env!("CARGO_BIN_EXE_button"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--trusted-proxies",
            "127.0.0.1/32",
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .env("BUTTON_SECRET", "crash-test-secret-crash-test-secret-0123")
        .envs(extra_env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the button binary starts");
    let logs = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    for stream in [
        Box::new(child.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stdout.take().unwrap()),
    ] {
        let logs = logs.clone();
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if let Some(at) = line.find("listening on http://") {
                    let addr = line[at + "listening on http://".len()..]
                        .split(|c: char| c == '"' || c.is_whitespace())
                        .next()
                        .unwrap()
                        .to_owned();
                    let _ = tx.send(addr);
                }
                let mut l = logs.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
    }
    let addr = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("server did not start: {}", logs.lock().unwrap()));
    ServerProcess { child, addr, logs }
}
