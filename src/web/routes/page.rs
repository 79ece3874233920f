//! `GET /`: the button. A plain visit records `EnterPage`.

use axum::extract::{Query, State};
use axum::response::IntoResponse;
use serde::Deserialize;

use crate::domain::Action;
use crate::web::templates::{IndexPage, Page};
use crate::web::{AppState, Visitor};

#[derive(Deserialize)]
pub struct IndexQuery {
    /// Set when a press without JavaScript redirected back here: show that reply.
    reply: Option<usize>,
    /// Set by `/reset`: say that the old session is gone.
    forgotten: Option<String>,
}

pub async fn index(
    State(state): State<AppState>,
    visitor: Visitor,
    Query(q): Query<IndexQuery>,
) -> axum::response::Response {
    let reply = q
        .reply
        .and_then(|i| state.replies.text(i, &visitor.session.location));
    if reply.is_none() {
        // A page view that cannot be recorded still shows the page: the visitor
        // loses nothing, and the failure is logged and visible in /readyz.
        if let Err(e) = state.record(Action::EnterPage, &visitor.session).await {
            tracing::warn!(error = %e, "page view not recorded");
        }
    }
    let page = IndexPage {
        page: "button",
        attribution: &state.attribution,
        reply: reply.as_deref(),
        reply_index: reply.as_ref().and(q.reply),
        forgotten: q.forgotten.is_some(),
    };
    (visitor.cookie(), Page(page)).into_response()
}
