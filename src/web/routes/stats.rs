//! `GET /stats` (page, or the refreshing fragment for HTMX) and `GET /api/stats` (JSON).

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use crate::web::templates::{Page, StatsFragment, StatsPage};
use crate::web::visitor::is_htmx;
use crate::web::{AppError, AppState, Visitor};

pub async fn page(State(state): State<AppState>, visitor: Visitor, headers: HeaderMap) -> Response {
    let stats = state
        .stats
        .for_viewer(visitor.session.id, &visitor.session.location)
        .await;
    let body = stats.map_err(AppError::from).map(|stats| {
        if is_htmx(&headers) {
            Page(StatsFragment::new(&stats)).into_response()
        } else {
            Page(StatsPage::new(&stats, &state.attribution)).into_response()
        }
    });
    (visitor.cookie(), body).into_response()
}

pub async fn api(State(state): State<AppState>, visitor: Visitor) -> Response {
    let stats = state
        .stats
        .for_viewer(visitor.session.id, &visitor.session.location)
        .await;
    (visitor.cookie(), stats.map(Json).map_err(AppError::from)).into_response()
}
