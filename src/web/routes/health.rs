//! `GET /healthz` (the process answers) and `GET /readyz` (events can be stored).

use axum::extract::State;
use axum::http::StatusCode;

use crate::web::AppState;

pub async fn alive() -> &'static str {
    "ok\n"
}

pub async fn ready(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if state.publisher.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the event store is not accepting events\n",
        )
    }
}
