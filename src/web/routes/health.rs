//! `GET /healthz` (the process answers) and `GET /readyz` (events can be stored,
//! and how many wait in the disk spool).

use axum::extract::State;
use axum::http::StatusCode;

use crate::web::AppState;

pub async fn alive() -> &'static str {
    "ok\n"
}

pub async fn ready(State(state): State<AppState>) -> (StatusCode, String) {
    let (status, mut body) = if state.publisher.is_ready() {
        (StatusCode::OK, "ready\n".to_owned())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the event store is not accepting events\n".to_owned(),
        )
    };
    if let Some(spool) = state.publisher.spooled().filter(|s| s.events > 0) {
        body.push_str(&format!(
            "spooled: {} presses wait on disk for Kafka ({} bytes)\n",
            spool.events, spool.bytes
        ));
    }
    (status, body)
}
