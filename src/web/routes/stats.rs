//! `GET /stats` (page, or the refreshing fragment for HTMX) and `GET /api/stats` (JSON).

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};

use crate::web::templates::{StatsFragment, StatsPage, render};
use crate::web::visitor::is_htmx;
use crate::web::{AppState, Visitor};

pub async fn page(State(state): State<AppState>, visitor: Visitor, headers: HeaderMap) -> Response {
    let htmx = is_htmx(&headers);
    let stats = match state
        .stats
        .for_viewer(visitor.session.id, &visitor.session.location)
        .await
    {
        Ok(s) => s,
        Err(e) => return crate::web::AppError::from(e).respond(htmx),
    };
    let body = if htmx {
        render(&StatsFragment::new(&stats))
    } else {
        render(&StatsPage::new(&stats, &state.attribution))
    };
    (visitor.cookie(), Html(body)).into_response()
}

pub async fn api(State(state): State<AppState>, visitor: Visitor) -> Response {
    match state
        .stats
        .for_viewer(visitor.session.id, &visitor.session.location)
        .await
    {
        Ok(stats) => (visitor.cookie(), Json(stats)).into_response(),
        Err(e) => crate::web::AppError::from(e).into_response(),
    }
}
