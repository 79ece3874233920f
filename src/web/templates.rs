//! One askama struct per page or fragment, checked at compile time.

use askama::Template;
use axum::response::{Html, IntoResponse, Response};

use super::AppError;
use super::dashboard::PageParts;
use crate::stats::Stats;

/// A template as a response; a rendering failure (a bug) answers 500.
pub struct Page<T>(pub T);

impl<T: Template> IntoResponse for Page<T> {
    fn into_response(self) -> Response {
        match self.0.render() {
            Ok(html) => Html(html).into_response(),
            Err(e) => AppError::Render(e).into_response(),
        }
    }
}

/// The page with the button.
#[derive(Template)]
#[template(path = "index.html")]
pub struct IndexPage<'a> {
    pub page: &'static str,
    pub attribution: &'a str,
    /// A reply to show (after a press without JavaScript).
    pub reply: Option<&'a str>,
    pub reply_index: Option<usize>,
    /// The visitor just ended their session.
    pub forgotten: bool,
}

/// What a press swaps into the page.
#[derive(Template)]
#[template(path = "partials/reply.html")]
pub struct ReplyFragment<'a> {
    pub text: &'a str,
    pub overloaded: bool,
    pub reply_index: Option<usize>,
}

/// The stats page: the figures, the map, the ticker and the click patterns.
#[derive(Template)]
#[template(path = "stats.html")]
pub struct StatsPage<'a> {
    pub page: &'static str,
    pub attribution: &'a str,
    pub stats: &'a Stats,
    pub min_count: u64,
    pub rows: String,
    pub rank: String,
    pub map: String,
    pub legend: String,
    pub ticker: String,
    pub patterns: String,
}

impl<'a> StatsPage<'a> {
    pub fn new(stats: &'a Stats, parts: PageParts, min_count: u64, attribution: &'a str) -> Self {
        StatsPage {
            page: "stats",
            attribution,
            stats,
            min_count,
            rows: parts.rows,
            rank: parts.rank,
            map: parts.map,
            legend: parts.legend,
            ticker: parts.ticker,
            patterns: parts.patterns,
        }
    }
}

/// The figures and the table: what the page refreshes when the live stream is
/// down.
#[derive(Template)]
#[template(path = "partials/stats.html")]
pub struct StatsFragment<'a> {
    pub stats: &'a Stats,
    pub min_count: u64,
    pub rows: String,
    pub rank: String,
}

impl<'a> StatsFragment<'a> {
    pub fn new(stats: &'a Stats, parts: PageParts, min_count: u64) -> Self {
        StatsFragment {
            stats,
            min_count,
            rows: parts.rows,
            rank: parts.rank,
        }
    }
}

/// A full error page.
#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    pub page: &'static str,
    pub attribution: &'a str,
    pub heading: &'a str,
    pub message: &'a str,
}

impl<'a> ErrorPage<'a> {
    pub fn new(heading: &'a str, message: &'a str) -> Self {
        ErrorPage {
            page: "error",
            attribution: "",
            heading,
            message,
        }
    }
}
