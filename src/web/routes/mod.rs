//! Route table.

mod forget;
mod health;
mod live;
mod metrics;
mod page;
mod press;
mod stats;

use std::sync::Arc;

use axum::Router;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};

use super::limit::{self, PressLimits};
use super::origin;
use super::{AppState, assets};

/// The routes; presses go through `limits` first.
pub fn routes(limits: Arc<PressLimits>) -> Router<AppState> {
    Router::new()
        .route("/", get(page::index))
        .route("/press", press_route(limits))
        .route("/reset", get(forget::forget).post(forget::forget))
        .route("/stats", get(stats::page))
        .route("/stats/live", get(live::stream))
        .route("/api/stats", get(stats::api))
        .route("/healthz", get(health::alive))
        .route("/readyz", get(health::ready))
        .route("/metrics", get(metrics::render))
        .route("/assets/htmx.min.js", get(assets::htmx))
        .route("/assets/htmx-ext-sse.js", get(assets::htmx_sse))
        .route("/assets/dashboard.js", get(assets::dashboard))
        .route("/assets/style.css", get(assets::style))
}

/// `POST /press`, the one state change worth forging: from this site's pages
/// only, and behind the press limits when any is on. (Layers on this route alone:
/// each costs a little on every request it wraps.)
fn press_route(limits: Arc<PressLimits>) -> axum::routing::MethodRouter<AppState> {
    let press = post(press::press);
    let press = if limits.is_on() {
        press.route_layer(from_fn_with_state(limits, limit::enforce))
    } else {
        press
    };
    press.route_layer(from_fn(origin::same_origin))
}
