//! Static assets, embedded in the binary: the page needs no other origin.

use axum::http::header;
use axum::response::IntoResponse;

/// HTMX, pinned in `package.json` and fetched from the npm registry at build time.
pub const HTMX_JS: &[u8] = include_bytes!(env!("BUTTON_HTMX_JS"));

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

pub async fn style() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, CACHE),
        ],
        STYLE_CSS,
    )
}
