//! One error type for the web tier. Visitors see a friendly page or fragment; the
//! cause is logged once, by [`log_cause`] in the response middleware, never by
//! the handler.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::templates::{self, ErrorPage, ReplyFragment};
use crate::publish::PublishError;
use crate::stats::StatsError;

/// What can go wrong while answering.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The event could not be stored: the visitor should try again (503).
    #[error(transparent)]
    Busy(#[from] PublishError),
    /// Statistics cannot be read (503).
    #[error(transparent)]
    Stats(#[from] StatsError),
    /// A bug or an unexpected failure (opaque 500).
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The logged description of an error, carried to [`log_cause`].
#[derive(Clone)]
struct Logged(String, StatusCode);

/// Message a press gets when it could not be stored.
pub const TRY_AGAIN: &str =
    "The button is a little overwhelmed right now. Nothing was recorded: please try again.";

impl AppError {
    /// The response for an HTMX request (`htmx`) or a full page load.
    pub fn respond(self, htmx: bool) -> Response {
        let (status, body) = match (&self, htmx) {
            (AppError::Busy(_), true) => (
                StatusCode::SERVICE_UNAVAILABLE,
                templates::render(&ReplyFragment {
                    text: TRY_AGAIN,
                    overloaded: true,
                    reply_index: None,
                }),
            ),
            (AppError::Busy(_), false) => (
                StatusCode::SERVICE_UNAVAILABLE,
                templates::render(&ErrorPage::new("Try again in a moment", TRY_AGAIN)),
            ),
            (AppError::Stats(_), _) => (
                StatusCode::SERVICE_UNAVAILABLE,
                templates::render(&ErrorPage::new(
                    "Statistics are not available",
                    "The statistics store cannot be read right now. Presses are still recorded.",
                )),
            ),
            (AppError::Internal(_), _) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                templates::render(&ErrorPage::new(
                    "Something went wrong",
                    "That was our fault, not yours. Please try again.",
                )),
            ),
        };
        let logged = Logged(format!("{:#}", anyhow::Error::from(self)), status);
        let mut response = (status, Html(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert("retry-after", "1".parse().expect("valid header"));
        }
        response.extensions_mut().insert(logged);
        response
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        self.respond(false)
    }
}

/// Logs the cause of an error response, once, inside the request's span.
pub fn log_cause(response: &Response) {
    if let Some(Logged(cause, status)) = response.extensions().get::<Logged>() {
        if status.is_server_error() && *status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(status = status.as_u16(), "{cause}");
        } else {
            tracing::warn!(status = status.as_u16(), "{cause}");
        }
    }
}
