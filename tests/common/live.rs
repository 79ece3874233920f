//! A dashboard viewer: follows `/stats/live` like htmx's SSE extension does, as
//! a visitor (its address and cookie), and hands out the events by name.

use std::time::{Duration, Instant};

use super::app::{TestApp, Visitor};

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub struct Event {
    pub name: String,
    pub data: String,
}

/// An open `/stats/live` stream.
pub struct LiveViewer {
    response: reqwest::Response,
    buffer: String,
}

impl LiveViewer {
    /// Opens the stream as `visitor` (who should have a cookie already, to
    /// follow its session's figures).
    pub async fn connect(app: &TestApp, visitor: &Visitor<'_>) -> LiveViewer {
        let mut req = app
            .http
            .get(app.url("/stats/live"))
            .header("x-forwarded-for", &visitor.ip)
            .header("accept", "text/event-stream");
        if let Some(c) = &visitor.cookie {
            req = req.header("cookie", c);
        }
        let response = req.send().await.expect("the live stream answers");
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "an event stream"
        );
        LiveViewer {
            response,
            buffer: String::new(),
        }
    }

    /// The next event, or none when the stream stays silent for `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut name = String::from("message");
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(n) = line.strip_prefix("event: ") {
                        name = n.to_owned();
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data.push(d);
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some(Event {
                    name,
                    data: data.join("\n"),
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.response.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                Ok(Ok(None)) | Ok(Err(_)) | Err(_) => return None,
            }
        }
    }

    /// Reads events until one named `name` satisfies `want`; panics after
    /// `timeout` with what was seen.
    pub async fn wait_for(
        &mut self,
        name: &str,
        timeout: Duration,
        want: impl Fn(&str) -> bool,
    ) -> Event {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Some(e) if e.name == name && want(&e.data) => return e,
                Some(e) => seen.push(format!("{}: {:.80}", e.name, e.data)),
                None => panic!("no `{name}` event as wanted within {timeout:?}; saw {seen:#?}"),
            }
        }
    }
}
