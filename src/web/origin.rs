//! Same-origin only for state changes: a `POST /press` (or any method that is not
//! `GET`, `HEAD` or `OPTIONS` on a route this guards) made by another site's page
//! is refused with 403 before the handler runs, so no site can press the button
//! with a visitor's cookie. (`/reset` only ends a session: harmless if forged.) Browsers say where a request comes from: `Sec-Fetch-Site` (every
//! current one), else `Origin`. Programs (`curl`, `button generate --http`) send
//! neither and pass: they cannot carry a visitor's cookie anyway.

use axum::extract::Request;
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppError;

/// Middleware: refuses cross-site state changes.
pub async fn same_origin(request: Request, next: Next) -> Response {
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if safe {
        return next.run(request).await;
    }
    match check(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(why) => AppError::CrossSite(why).into_response(),
    }
}

/// `Ok` when the request comes from this site's own pages, or from no page.
fn check(headers: &HeaderMap) -> Result<(), &'static str> {
    if let Some(site) = headers.get("sec-fetch-site") {
        return match site.as_bytes() {
            // `none`: typed in, a bookmark; not a page of any site.
            b"same-origin" | b"none" => Ok(()),
            _ => Err("Sec-Fetch-Site is not same-origin"),
        };
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let authority = origin
        .to_str()
        .ok()
        .and_then(|o| {
            o.strip_prefix("https://")
                .or_else(|| o.strip_prefix("http://"))
        })
        .ok_or("Origin is not an http(s) origin")?;
    // Behind a proxy that rewrites Host, the host the browser saw is in
    // X-Forwarded-Host; a page cannot set either header on a cross-site request.
    let same = [header::HOST.as_str(), "x-forwarded-host"]
        .into_iter()
        .filter_map(|h| headers.get(h)?.to_str().ok())
        .any(|host| host.eq_ignore_ascii_case(authority));
    if same {
        Ok(())
    } else {
        Err("Origin is another site")
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn a_press_from_the_page_itself_passes() {
        assert_eq!(
            check(&headers(&[("sec-fetch-site", "same-origin")])),
            Ok(())
        );
        assert_eq!(
            check(&headers(&[
                ("origin", "http://localhost:3000"),
                ("host", "localhost:3000")
            ])),
            Ok(())
        );
        assert_eq!(
            check(&headers(&[
                ("origin", "https://button.example"),
                ("host", "10.0.0.5:3000"),
                ("x-forwarded-host", "button.example"),
            ])),
            Ok(())
        );
    }

    #[test]
    fn a_program_without_browser_headers_passes() {
        assert_eq!(check(&HeaderMap::new()), Ok(()));
    }

    #[test]
    fn a_press_from_another_site_is_refused() {
        for h in [
            headers(&[("sec-fetch-site", "cross-site")]),
            headers(&[("sec-fetch-site", "same-site")]),
            // Sec-Fetch-Site wins over a matching Origin.
            headers(&[
                ("sec-fetch-site", "cross-site"),
                ("origin", "http://localhost:3000"),
                ("host", "localhost:3000"),
            ]),
            headers(&[
                ("origin", "https://evil.example"),
                ("host", "localhost:3000"),
            ]),
            headers(&[("origin", "null"), ("host", "localhost:3000")]),
            headers(&[("origin", "http://localhost:3000")]),
        ] {
            assert!(check(&h).is_err(), "{h:?}");
        }
    }
}
