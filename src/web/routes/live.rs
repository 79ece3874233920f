//! `GET /stats/live`: the dashboard's stream of Server-Sent Events.
//!
//! A viewer first gets the whole picture (a reconnecting one too), then each
//! update's news as it comes, plus its own figures when they move. The shared
//! part is the same bytes for every viewer (see `web/dashboard.rs`); a viewer
//! that falls behind skips to the latest picture instead of queueing. The stream
//! ends when the server shuts down.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::live::{Live, Update};
use crate::telemetry::metric;
use crate::web::dashboard::{self, Seen, Viewer};
use crate::web::{AppState, Visitor};

/// A comment line this often keeps proxies from closing a quiet stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub async fn stream(State(state): State<AppState>, visitor: Visitor) -> Response {
    // The viewer's own figures as its page showed them (one store query per
    // connection, none per update). A store that cannot answer now leaves the
    // figures to the live view.
    let location = &visitor.session.location;
    let asked = crate::domain::event::micros_since_epoch(std::time::SystemTime::now());
    let stats = match state.viewer_stats(&visitor).await {
        Ok(stats) => stats,
        Err(_) => dashboard::live_stats(&state.live.latest(), location, state.min_count),
    };
    let stream = ViewerStream::new(
        &state.live,
        Viewer::new(visitor.session.id, &stats, asked),
        state.min_count,
        state.live_stop.clone(),
    );
    let body = Body::from_stream(futures::stream::unfold(stream, |mut s| async move {
        s.next()
            .await
            .map(|chunk| (Ok::<_, std::convert::Infallible>(chunk), s))
    }));
    (
        visitor.cookie(),
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-store"),
            // Proxies that buffer responses would hold the events back.
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        body,
    )
        .into_response()
}

struct ViewerStream {
    live: Live,
    updates: broadcast::Receiver<Arc<Update>>,
    viewer: Viewer,
    min_count: u64,
    seq: u64,
    pending: VecDeque<Bytes>,
    keep_alive: tokio::time::Interval,
    stop: CancellationToken,
    _counted: Counted,
}

impl ViewerStream {
    fn new(live: &Live, viewer: Viewer, min_count: u64, stop: CancellationToken) -> Self {
        let (first, updates) = live.subscribe();
        let mut keep_alive = tokio::time::interval(KEEP_ALIVE);
        keep_alive.reset(); // the first tick would fire at once
        let mut s = ViewerStream {
            live: live.clone(),
            updates,
            viewer,
            min_count,
            seq: 0,
            pending: VecDeque::new(),
            keep_alive,
            stop,
            _counted: Counted::new(),
        };
        s.show(&first, Seen::First);
        s
    }

    fn show(&mut self, update: &Update, seen: Seen) {
        self.seq = update.seq;
        let shared = match seen {
            Seen::First | Seen::Gap => dashboard::full_frame(update, self.min_count),
            Seen::Next => dashboard::delta_frame(update, self.min_count),
        };
        if !shared.is_empty() {
            self.pending.push_back(shared);
        }
        let own = self.viewer.news(update, seen);
        if !own.is_empty() {
            self.pending.push_back(Bytes::from(own));
        }
    }

    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(chunk) = self.pending.pop_front() {
                return Some(chunk);
            }
            tokio::select! {
                () = self.stop.cancelled() => return None,
                _ = self.keep_alive.tick() => return Some(Bytes::from_static(b": keep-alive\n\n")),
                received = self.updates.recv() => match received {
                    Ok(update) if update.seq <= self.seq => {}
                    Ok(update) => {
                        let seen = if update.seq == self.seq + 1 { Seen::Next } else { Seen::Gap };
                        self.show(&update, seen);
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let latest = self.live.latest();
                        self.show(&latest, Seen::Gap);
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            }
        }
    }
}

/// Counts open streams in `button_sse_viewers` while it lives.
struct Counted;

impl Counted {
    fn new() -> Self {
        metrics::gauge!(metric::SSE_VIEWERS).increment(1.0);
        Counted
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        metrics::gauge!(metric::SSE_VIEWERS).decrement(1.0);
    }
}
