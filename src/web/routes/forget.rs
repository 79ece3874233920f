//! `/reset` ("forget me"): ends the visitor's session. The cookie is deleted, so
//! the next visit starts a new session with a new id and nothing links it to the
//! old one. `POST` from the page's button; `GET` too, for the original app's link.

use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};

use crate::web::AppState;
use crate::web::visitor::peer;

pub async fn forget(State(state): State<AppState>, parts: Parts) -> Response {
    let https = state
        .proxies
        .forwarded_https(peer(&parts.extensions), &parts.headers);
    (
        [(SET_COOKIE, state.sessions.clear_cookie(https))],
        Redirect::to("/?forgotten=1"),
    )
        .into_response()
}
