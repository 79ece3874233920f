//! The sink's status over HTTP, with `--status-listen`: `GET /healthz` (the
//! process answers), `GET /readyz` (503, with the store and the cause, while a
//! store fails permanently; see [`super::write::Health`]) and `GET /metrics`
//! (Prometheus: events, batches, dead letters, write failures, the group's lag).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::lag::GroupReading;
use super::write::Health;
use crate::telemetry::{metric, prometheus};

#[derive(Clone)]
struct Status {
    health: Arc<Health>,
    lag: watch::Receiver<Option<GroupReading>>,
}

/// Listens on `addr` and serves the status until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    health: Arc<Health>,
    lag: watch::Receiver<Option<GroupReading>>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    prometheus();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (--status-listen)"))?;
    tracing::info!(
        "status on http://{}/readyz and /metrics",
        listener.local_addr()?
    );
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(Status { health, lag });
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::warn!("the status server stopped: {e}");
        }
    });
    Ok(())
}

async fn ready(State(s): State<Status>) -> (StatusCode, String) {
    match s.health.unready() {
        None => (StatusCode::OK, "ready\n".into()),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("unready: {why}\n")),
    }
}

async fn metrics(State(s): State<Status>) -> impl IntoResponse {
    let handle = prometheus();
    if let Some(reading) = s.lag.borrow().as_ref() {
        // The lag is known only when every partition's is; at least this many wait.
        metrics::gauge!(metric::SINK_LAG_AT_LEAST).set(reading.lag.at_least() as f64);
    }
    metrics::gauge!(metric::SINK_UNREADY).set(f64::from(u8::from(s.health.unready().is_some())));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
}
