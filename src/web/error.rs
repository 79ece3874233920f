//! One error type for the web tier. Handlers return [`AppError`] and know nothing
//! about how it is shown: its response carries the error in an extension, and one
//! middleware ([`finish`]) that sees the request renders it for whoever asked (a
//! fragment for HTMX, JSON under `/api/`, else a page), keeping the headers the
//! handler set (the renewed session cookie), and logs the cause chain once.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};

use super::templates::{ErrorPage, ReplyFragment};
use super::visitor::is_htmx;
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
    /// Too many presses from one client address or session; nothing was
    /// recorded (429, with a `Retry-After` of `wait` rounded up).
    #[error("too many presses from one client: {} ms until the next", wait.as_millis())]
    TooFast {
        /// Until the next press would be accepted.
        wait: Duration,
    },
    /// A state change requested by another site's page (403).
    #[error("a request from another site was refused ({0})")]
    CrossSite(&'static str),
    /// A template failed to render: a bug (opaque 500).
    #[error("a template failed to render")]
    Render(#[from] askama::Error),
    /// A bug or an unexpected failure (opaque 500).
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Message a press gets when it could not be stored.
pub const TRY_AGAIN: &str =
    "The button is a little overwhelmed right now. Nothing was recorded: please try again.";

/// Message a press gets when it came too fast.
pub const SLOW_DOWN: &str = "Slow down. Nothing is happening anyway.";

/// Who asked, which decides how an error is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Audience {
    /// HTMX swaps the body into the page: a fragment.
    Htmx,
    /// A program reading `/api/`: JSON.
    Api,
    /// A browser loading a page.
    Page,
}

impl AppError {
    fn status(&self) -> StatusCode {
        match self {
            AppError::Busy(_) | AppError::Stats(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::TooFast { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::CrossSite(_) => StatusCode::FORBIDDEN,
            AppError::Render(_) | AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Title and explanation for people; never the cause.
    fn message(&self) -> (&'static str, &'static str) {
        match self {
            AppError::Busy(_) => ("Try again in a moment", TRY_AGAIN),
            AppError::TooFast { .. } => ("Slow down", SLOW_DOWN),
            AppError::CrossSite(_) => (
                "Not from here",
                "The button only takes presses from its own page.",
            ),
            AppError::Stats(_) => (
                "Statistics are not available",
                "The statistics store cannot be read right now. Presses are still recorded.",
            ),
            AppError::Render(_) | AppError::Internal(_) => (
                "Something went wrong",
                "That was our fault, not yours. Please try again.",
            ),
        }
    }

    /// The body for `audience`, and its content type.
    fn body(&self, audience: Audience) -> (String, &'static str) {
        const HTML: &str = "text/html; charset=utf-8";
        let (title, text) = self.message();
        match (self, audience) {
            (_, Audience::Api) => (
                serde_json::json!({
                    "error": title,
                    "message": text,
                    "status": self.status().as_u16(),
                })
                .to_string(),
                "application/json",
            ),
            (AppError::Busy(_) | AppError::TooFast { .. }, Audience::Htmx) => (
                render_or_plain(&ReplyFragment {
                    text,
                    overloaded: true,
                    reply_index: None,
                }),
                HTML,
            ),
            _ => (render_or_plain(&ErrorPage::new(title, text)), HTML),
        }
    }
}

/// An error page that fails to render itself falls back to plain words.
fn render_or_plain<T: askama::Template>(t: &T) -> String {
    t.render()
        .unwrap_or_else(|_| "Something went wrong. Please try again.".to_owned())
}

/// The error, carried from the handler to [`finish`].
#[derive(Clone)]
struct Failure(Arc<AppError>);

impl IntoResponse for AppError {
    /// The status and the error; [`finish`] writes the body.
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = status.into_response();
        let retry_after = match &self {
            AppError::Busy(_) | AppError::Stats(_) => Some(1),
            // Whole seconds, rounded up: never "0", which would invite a retry now.
            AppError::TooFast { wait } => Some(wait.as_secs() + u64::from(wait.subsec_nanos() > 0)),
            _ => None,
        };
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response.extensions_mut().insert(Failure(Arc::new(self)));
        response
    }
}

/// Middleware: renders error responses for their audience and logs their cause
/// once, inside the request's span.
pub async fn finish(request: Request, next: Next) -> Response {
    let audience = if request.uri().path().starts_with("/api/") {
        Audience::Api
    } else if is_htmx(request.headers()) {
        Audience::Htmx
    } else {
        Audience::Page
    };
    let mut response = next.run(request).await;
    let Some(Failure(error)) = response.extensions_mut().remove::<Failure>() else {
        return response;
    };
    let status = response.status();
    let cause = format!("{:#}", anyhow::Error::from(ErrorChain(error.clone())));
    if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
        tracing::error!(status = status.as_u16(), "{cause}");
    } else if status.is_server_error() {
        tracing::warn!(status = status.as_u16(), "{cause}");
    } else {
        // A client's doing (too fast, another site): not worth a line each at scale.
        tracing::debug!(status = status.as_u16(), "{cause}");
    }
    let (body, content_type) = error.body(audience);
    let (mut parts, _) = response.into_parts();
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Html(body).into_response().into_body())
}

/// Lets anyhow walk the shared error's source chain for the log line.
#[derive(Debug)]
struct ErrorChain(Arc<AppError>);

impl std::fmt::Display for ErrorChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for ErrorChain {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}
