//! One askama struct per page or fragment, checked at compile time.

use askama::Template;
use axum::response::{Html, IntoResponse, Response};

use super::AppError;
use crate::stats::{Stats, share};

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

/// One row of the per-country table.
pub struct CountryRow<'a> {
    pub country_code: &'a str,
    pub country_name: &'a str,
    pub presses: u64,
    pub share: String,
}

fn rows(stats: &Stats) -> Vec<CountryRow<'_>> {
    stats
        .by_country
        .iter()
        .map(|c| CountryRow {
            country_code: &c.country_code,
            country_name: &c.country_name,
            presses: c.presses,
            share: share(c.presses, stats.total),
        })
        .collect()
}

/// The stats page.
#[derive(Template)]
#[template(path = "stats.html")]
pub struct StatsPage<'a> {
    pub page: &'static str,
    pub attribution: &'a str,
    pub stats: &'a Stats,
    pub rows: Vec<CountryRow<'a>>,
}

impl<'a> StatsPage<'a> {
    pub fn new(stats: &'a Stats, attribution: &'a str) -> Self {
        StatsPage {
            page: "stats",
            attribution,
            stats,
            rows: rows(stats),
        }
    }
}

/// The self-refreshing part of the stats page.
#[derive(Template)]
#[template(path = "partials/stats.html")]
pub struct StatsFragment<'a> {
    pub stats: &'a Stats,
    pub rows: Vec<CountryRow<'a>>,
}

impl<'a> StatsFragment<'a> {
    pub fn new(stats: &'a Stats) -> Self {
        StatsFragment {
            stats,
            rows: rows(stats),
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
