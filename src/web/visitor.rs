//! The [`Visitor`] extractor: the verified session from the cookie, or a new one.
//!
//! A new session is where the client address is used, once: it is extracted (with
//! the trusted-proxy rule), looked up, and dropped; only the location is kept.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::SystemTime;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::SET_COOKIE;
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, HeaderValue};
use uuid::Uuid;

use super::AppState;
use crate::session::{Opened, Session};

/// The visitor behind a request, with the renewed cookie to send back.
#[derive(Debug)]
pub struct Visitor {
    /// The verified (or new) session.
    pub session: Session,
    /// Whether the session was started by this request.
    pub is_new: bool,
    /// The cookie to send back: new sessions, and sessions due for renewal.
    set_cookie: Option<HeaderValue>,
}

impl FromRequestParts<AppState> for Visitor {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        let now = SystemTime::now();
        // Opened already by the press limiter, or now.
        let opened = match parts.extensions.remove::<Opened>() {
            Some(Opened(opened)) => opened,
            None => state.sessions.from_headers(&parts.headers, now),
        };
        let (session, is_new, renew) = match opened {
            Some((session, renew)) => (session, false, renew),
            None => (new_session(parts, state), true, true),
        };
        // The hour counts from the last activity (to within a minute).
        let set_cookie = renew.then(|| {
            let https = state
                .proxies
                .forwarded_https(peer(&parts.extensions), &parts.headers);
            HeaderValue::from_str(&state.sessions.set_cookie(&session, now, https))
                .expect("a sealed cookie is a valid header value")
        });
        Ok(Visitor {
            session,
            is_new,
            set_cookie,
        })
    }
}

/// The socket peer's address, from a request's extensions (the unspecified
/// address when not known).
pub fn peer(extensions: &Extensions) -> IpAddr {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(Ipv4Addr::UNSPECIFIED.into(), |ConnectInfo(addr)| addr.ip())
}

fn new_session(parts: &Parts, state: &AppState) -> Session {
    let client = state
        .proxies
        .client_ip(peer(&parts.extensions), &parts.headers);
    Session {
        id: Uuid::new_v4(),
        location: state.geo.locate(&client),
    }
}

impl Visitor {
    /// The `Set-Cookie` header renewing this session, to put on the response.
    pub fn cookie(&self) -> impl axum::response::IntoResponseParts + use<> {
        let mut headers = HeaderMap::new();
        if let Some(v) = &self.set_cookie {
            headers.insert(SET_COOKIE, v.clone());
        }
        headers
    }
}

/// Whether a request was made by HTMX (and wants a fragment, not a page).
pub fn is_htmx(headers: &HeaderMap) -> bool {
    headers.get("hx-request").is_some_and(|v| v == "true")
}

/// [`is_htmx`] as an extractor, for handlers that need nothing else of the
/// headers (taking `HeaderMap` copies them all, on every press).
pub struct Htmx(pub bool);

impl<S: Sync> FromRequestParts<S> for Htmx {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Htmx(is_htmx(&parts.headers)))
    }
}
