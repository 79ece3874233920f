//! `GET /metrics`: the Prometheus text format. Gauges that describe a state (the
//! event backlog, the rate-limit buckets) are read now, at scrape time.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::telemetry::{metric, prometheus};
use crate::web::AppState;

pub async fn render(State(state): State<AppState>) -> impl IntoResponse {
    let handle = prometheus();
    if let Some(backlog) = state.publisher.backlog() {
        metrics::gauge!(metric::BACKLOG).set(backlog as f64);
    }
    metrics::gauge!(metric::LIMITED_CLIENTS).set(state.limits.tracked() as f64);
    if let Some(spool) = state.publisher.spooled() {
        metrics::gauge!(metric::SPOOL_EVENTS).set(spool.events as f64);
        metrics::gauge!(metric::SPOOL_BYTES).set(spool.bytes as f64);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
}
