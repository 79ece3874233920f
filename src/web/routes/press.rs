//! `POST /press`: records `PressButton`, answers with a reply. HTMX gets a fragment;
//! a plain form post (no JavaScript) is redirected back to the page showing it.

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, http::HeaderValue};
use serde::Deserialize;

use crate::domain::Action;
use crate::web::templates::{Page, ReplyFragment};
use crate::web::visitor::Htmx;
use crate::web::{AppState, Visitor};

#[derive(Deserialize)]
pub struct PressForm {
    /// Index of the reply currently shown, so the next one differs.
    #[serde(default)]
    last: String,
}

pub async fn press(
    State(state): State<AppState>,
    visitor: Visitor,
    Htmx(htmx): Htmx,
    form: Result<Form<PressForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let event_id = match state.record(Action::PressButton, &visitor.session).await {
        Ok(id) => id,
        Err(e) => return (visitor.cookie(), e).into_response(),
    };
    let last = form.ok().and_then(|Form(f)| f.last.parse().ok());
    let location = &visitor.session.location;
    let i = state.replies.pick_for(&mut rand::rng(), last, location);
    let text = state.replies.text(i, location).unwrap_or_default();
    // The id of the stored event: lets clients (and tests) check it was kept.
    let id = [(
        "x-event-id",
        HeaderValue::from_str(&event_id.to_string()).expect("uuid"),
    )];
    if htmx {
        let fragment = ReplyFragment {
            text: &text,
            overloaded: false,
            reply_index: Some(i),
        };
        (visitor.cookie(), id, Page(fragment)).into_response()
    } else {
        (visitor.cookie(), id, Redirect::to(&format!("/?reply={i}"))).into_response()
    }
}
