//! Route table.

mod health;
mod page;
mod press;
mod stats;

use axum::Router;
use axum::routing::{get, post};

use super::AppState;
use super::assets;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(page::index))
        .route("/press", post(press::press))
        .route("/stats", get(stats::page))
        .route("/api/stats", get(stats::api))
        .route("/healthz", get(health::alive))
        .route("/readyz", get(health::ready))
        .route("/assets/htmx.min.js", get(assets::htmx))
        .route("/assets/style.css", get(assets::style))
}
