//! Static assets, embedded in the binary: the page needs no other origin.

use axum::http::header;
use axum::response::IntoResponse;

/// HTMX, pinned in `package.json` and fetched from the npm registry at build time.
pub const HTMX_JS: &[u8] = include_bytes!(env!("BUTTON_HTMX_JS"));

/// htmx's Server-Sent Events extension (for htmx 2), pinned beside htmx.
pub const HTMX_SSE_JS: &[u8] = include_bytes!(env!("BUTTON_HTMX_SSE_JS"));

/// The dashboard's own script: map shades, dots, hover, and the fallback to
/// periodic refresh when the live stream breaks.
pub const DASHBOARD_JS: &str = include_str!("../../assets/dashboard.js");

/// The stylesheet.
pub const STYLE_CSS: &str = include_str!("../../assets/style.css");

// Not fingerprinted, so browsers revalidate after an hour rather than never.
const CACHE: &str = "public, max-age=3600";

pub async fn htmx() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, CACHE),
        ],
        HTMX_JS,
    )
}

pub async fn htmx_sse() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, CACHE),
        ],
        HTMX_SSE_JS,
    )
}

pub async fn dashboard() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, CACHE),
        ],
        DASHBOARD_JS,
    )
}

pub async fn style() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, CACHE),
        ],
        STYLE_CSS,
    )
}
