//! The `button` binary as a child process, for what only a real process shows:
//! surviving `kill -9`, and everything it logs.
//!
//! The server is given a port picked free here and is ready once `/healthz`
//! answers from a socket the child itself listens on; should another process take
//! the port first, the server exits and is started again on another.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::app::TEST_SECRET;

/// How often a server is started on a fresh port before giving up.
const ATTEMPTS: usize = 3;

/// A `button serve` child process and everything it logged.
pub struct ServerProcess {
    /// The process (killed, if still running, when this is dropped).
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its standard output and error, line by line.
    pub logs: Arc<Mutex<String>>,
    /// The threads copying output into `logs`; done once the process has exited.
    readers: Vec<JoinHandle<()>>,
}

impl ServerProcess {
    /// Starts `button serve` with its data in `data_dir`, loopback as the trusted
    /// proxy and `extra_env` set; returns once it answers `/healthz`.
    pub async fn start(data_dir: &Path, extra_env: &[(&str, &str)]) -> ServerProcess {
        let mut tried = Vec::new();
        for _ in 0..ATTEMPTS {
            let addr = SocketAddr::from(([127, 0, 0, 1], super::free_port()));
            let mut server = spawn(addr, data_dir, extra_env);
            if server.wait_until_healthy().await {
                return server;
            }
            tried.push(format!("{addr}:\n{}", server.logs.lock().unwrap()));
        }
        panic!(
            "the server did not start in {ATTEMPTS} attempts:\n{}",
            tried.join("\n")
        );
    }

    /// `http://ADDR/PATH`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The logs so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// Sends SIGTERM (a graceful stop); returns once the process has exited and
    /// [`Self::logs`] holds everything it wrote.
    pub fn terminate(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM failed");
        self.wait()
    }

    /// Sends SIGKILL: the process gets no chance to flush anything. Returns once
    /// it has exited.
    pub fn kill(&mut self) -> ExitStatus {
        self.child.kill().unwrap();
        self.wait()
    }

    fn wait(&mut self) -> ExitStatus {
        let status = self.child.wait().unwrap();
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        status
    }

    /// True once `/healthz` answers 200; false if the process exits first (the
    /// port was taken, say). Panics, with the logs, if it does neither in time.
    async fn wait_until_healthy(&mut self) -> bool {
        let http = reqwest::Client::new();
        let healthz = self.url("/healthz");
        let until = Instant::now() + Duration::from_secs(30);
        let mut pause = Duration::from_millis(10);
        loop {
            if self.child.try_wait().unwrap().is_some() {
                self.wait();
                return false;
            }
            if let Ok(r) = http.get(&healthz).send().await {
                // Another test's server on the same port would answer too.
                if r.status().is_success() && super::listens_on(self.child.id(), self.addr.port()) {
                    return true;
                }
            }
            assert!(
                Instant::now() < until,
                "the server did not answer /healthz within 30 s; its logs:\n{}",
                self.logs()
            );
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(addr: SocketAddr, data_dir: &Path, extra_env: &[(&str, &str)]) -> ServerProcess {
    let mut child = Command::new(env!("CARGO_BIN_EXE_button"))
        .args(["serve", "--trusted-proxies", "127.0.0.1/32"])
        .args(["--listen", &addr.to_string()])
        .arg("--data-dir")
        .arg(data_dir)
        .env("BUTTON_SECRET", TEST_SECRET)
        .envs(extra_env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the button binary starts");
    let logs = Arc::new(Mutex::new(String::new()));
    let streams: [Box<dyn Read + Send>; 2] = [
        Box::new(child.stderr.take().unwrap()),
        Box::new(child.stdout.take().unwrap()),
    ];
    let readers = streams
        .into_iter()
        .map(|stream| {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut l = logs.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            })
        })
        .collect();
    ServerProcess {
        child,
        addr,
        logs,
        readers,
    }
}
