//! Route table.

mod forget;
mod health;
mod metrics;
mod page;
mod press;
mod stats;

use std::sync::Arc;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};

use super::limit::{self, PressLimits};
use super::{AppState, assets};

/// The routes; presses go through `limits` first.
pub fn routes(limits: Arc<PressLimits>) -> Router<AppState> {
    Router::new()
        .route("/", get(page::index))
        .route(
            "/press",
            post(press::press).route_layer(from_fn_with_state(limits, limit::enforce)),
        )
        .route("/reset", get(forget::forget).post(forget::forget))
        .route("/stats", get(stats::page))
        .route("/api/stats", get(stats::api))
        .route("/healthz", get(health::alive))
        .route("/readyz", get(health::ready))
        .route("/metrics", get(metrics::render))
        .route("/assets/htmx.min.js", get(assets::htmx))
        .route("/assets/style.css", get(assets::style))
}
