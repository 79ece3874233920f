//! `GET /stats` (the dashboard, or its figures for HTMX when the live stream is
//! down) and `GET /api/stats` (JSON, with the click patterns).

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::patterns::PatternReport;
use crate::stats::Stats;
use crate::web::dashboard::PageParts;
use crate::web::templates::{Page, StatsFragment, StatsPage};
use crate::web::visitor::Htmx;
use crate::web::{AppState, Visitor};

pub async fn page(State(state): State<AppState>, visitor: Visitor, Htmx(htmx): Htmx) -> Response {
    let stats = state.viewer_stats(&visitor).await;
    let body = stats.map(|stats| {
        let parts = PageParts::new(&stats, &state.live.latest(), state.min_count);
        if htmx {
            Page(StatsFragment::new(&stats, parts, state.min_count)).into_response()
        } else {
            Page(StatsPage::new(
                &stats,
                parts,
                state.min_count,
                &state.attribution,
            ))
            .into_response()
        }
    });
    (visitor.cookie(), body).into_response()
}

/// `/api/stats`: the viewer's statistics and the live click patterns.
#[derive(Serialize)]
struct ApiStats {
    #[serde(flatten)]
    stats: Stats,
    /// 1-based rank of the viewer's country among the public ones.
    your_country_rank: Option<usize>,
    /// Click patterns seen by this server's live view.
    patterns: PatternReport,
}

pub async fn api(State(state): State<AppState>, visitor: Visitor) -> Response {
    let stats = state.viewer_stats(&visitor).await;
    let body = stats.map(|stats| {
        let your_country_rank = stats.your_country_rank();
        let patterns = (*state.live.latest().latest_patterns).clone();
        Json(ApiStats {
            stats,
            your_country_rank,
            patterns,
        })
    });
    (visitor.cookie(), body).into_response()
}
