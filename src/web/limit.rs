//! Abuse limits on presses, a middleware on `POST /press`: a token bucket per
//! client address and one per session (GCRA, from `governor`). Over either, the
//! press is refused with 429, a `Retry-After`, and a fragment HTMX shows; nothing
//! is recorded.
//!
//! Privacy: the address is kept only as a keyed hash (SipHash with a key drawn at
//! start, never written anywhere), in memory, and forgotten a few minutes after
//! its last press ([`PressLimits::forget_idle`]). It cannot be turned back into
//! the address, nor matched across restarts.

use std::hash::RandomState;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use uuid::Uuid;

use super::AppError;
use super::visitor::peer;
use crate::config::LimitConfig;
use crate::domain::TrustedProxies;
use crate::session::{Opened, SessionCodec};

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>;

/// The press limits, shared by every request.
pub struct PressLimits {
    by_address: Option<Keyed<u64>>,
    by_session: Option<Keyed<Uuid>>,
    hasher: RandomState,
    clock: DefaultClock,
    proxies: Arc<TrustedProxies>,
    sessions: Arc<SessionCodec>,
}

/// A bucket of `per_second` tokens a second that holds a burst of three
/// seconds' worth: a person drumming on the button for a moment is fine.
fn quota(per_second: NonZeroU32) -> Quota {
    let burst = per_second.saturating_mul(NonZeroU32::new(3).expect("3 > 0"));
    Quota::per_second(per_second).allow_burst(burst)
}

impl PressLimits {
    /// Limits from `config`; the proxies and sessions say who a request is from.
    pub fn new(
        config: &LimitConfig,
        proxies: Arc<TrustedProxies>,
        sessions: Arc<SessionCodec>,
    ) -> Self {
        PressLimits {
            by_address: config.per_address.map(|n| RateLimiter::keyed(quota(n))),
            by_session: config.per_session.map(|n| RateLimiter::keyed(quota(n))),
            hasher: RandomState::new(),
            clock: DefaultClock::default(),
            proxies,
            sessions,
        }
    }

    /// Whether any limit is on.
    pub fn is_on(&self) -> bool {
        self.by_address.is_some() || self.by_session.is_some()
    }

    /// `Ok` when the request may press now; otherwise how long to wait. With the
    /// session limit on, the session the cookie opened is left in the request's
    /// extensions ([`Opened`]) for the handler.
    fn check(&self, request: &mut Request) -> Result<(), Duration> {
        let now = self.clock.now();
        if let Some(limiter) = &self.by_address {
            let client = self
                .proxies
                .client_ip(peer(request.extensions()), request.headers());
            let key = client.keyed_hash(&self.hasher);
            limiter
                .check_key(&key)
                .map_err(|not_until| not_until.wait_time_from(now))?;
        }
        if let Some(limiter) = &self.by_session {
            let opened = self
                .sessions
                .from_headers(request.headers(), SystemTime::now());
            // A request without a valid session starts a new one: only the
            // address limit applies to it.
            let checked = match &opened {
                Some((session, _)) => limiter
                    .check_key(&session.id)
                    .map_err(|not_until| not_until.wait_time_from(now)),
                None => Ok(()),
            };
            request.extensions_mut().insert(Opened(opened));
            checked?;
        }
        Ok(())
    }

    /// Drops the buckets of addresses and sessions that have not pressed for a
    /// while (their buckets are full again, so nothing is lost); run every minute.
    pub fn forget_idle(&self) {
        if let Some(l) = &self.by_address {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.by_session {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }

    /// Addresses and sessions with a bucket now (for metrics).
    pub fn tracked(&self) -> usize {
        self.by_address.as_ref().map_or(0, |l| l.len())
            + self.by_session.as_ref().map_or(0, |l| l.len())
    }
}

/// Middleware: refuses a press over a limit with 429 before it is recorded.
pub async fn enforce(
    State(limits): State<Arc<PressLimits>>,
    mut request: Request,
    next: Next,
) -> Response {
    match limits.check(&mut request) {
        Ok(()) => next.run(request).await,
        Err(wait) => AppError::TooFast { wait }.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::extract::ConnectInfo;
    use axum::http::HeaderValue;

    use super::*;

    fn limits(per_address: u32, per_session: u32) -> PressLimits {
        PressLimits::new(
            &LimitConfig {
                per_address: NonZeroU32::new(per_address),
                per_session: NonZeroU32::new(per_session),
            },
            Arc::new(TrustedProxies::none()),
            Arc::new(SessionCodec::new(&[7; 64], false).unwrap()),
        )
    }

    fn from(ip: [u8; 4], cookie: Option<&str>) -> Request {
        let mut r = Request::new(axum::body::Body::empty());
        r.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((ip, 40000))));
        if let Some(c) = cookie {
            r.headers_mut()
                .insert("cookie", HeaderValue::from_str(c).unwrap());
        }
        r
    }

    #[test]
    fn an_address_gets_a_burst_of_three_seconds_then_waits() {
        let l = limits(2, 0);
        for _ in 0..6 {
            assert_eq!(l.check(&mut from([203, 0, 113, 9], None)), Ok(()));
        }
        let wait = l.check(&mut from([203, 0, 113, 9], None)).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        // Another address is not affected.
        assert_eq!(l.check(&mut from([198, 51, 100, 7], None)), Ok(()));
    }

    /// A new session and its cookie (`name=value`), sealed with the key of
    /// [`limits`].
    fn session_cookie() -> (crate::session::Session, String) {
        let codec = SessionCodec::new(&[7; 64], false).unwrap();
        let session = crate::session::Session {
            id: Uuid::new_v4(),
            location: crate::domain::Location::unknown(),
        };
        let set = codec.set_cookie(&session, SystemTime::now(), false);
        let cookie = set.split(';').next().unwrap().to_owned();
        (session, cookie)
    }

    #[test]
    fn a_session_is_limited_across_addresses() {
        let l = limits(0, 1);
        let (_, cookie) = session_cookie();
        let cookie = cookie.as_str();
        for i in 0..3u8 {
            assert_eq!(l.check(&mut from([203, 0, 113, i], Some(cookie))), Ok(()));
        }
        assert!(l.check(&mut from([203, 0, 113, 99], Some(cookie))).is_err());
        // No cookie: a new session, not limited by another's bucket.
        assert_eq!(l.check(&mut from([203, 0, 113, 99], None)), Ok(()));
    }

    #[test]
    fn the_session_limit_leaves_the_session_it_opened_for_the_handler() {
        let l = limits(0, 1);
        let (session, cookie) = session_cookie();
        let mut request = from([203, 0, 113, 1], Some(&cookie));
        l.check(&mut request).unwrap();
        let Some(Opened(Some((opened, _)))) = request.extensions().get::<Opened>() else {
            panic!("no session left in the extensions");
        };
        assert_eq!(opened, &session);
        // No valid cookie: that is left too, so the handler does not try again.
        let mut request = from([203, 0, 113, 1], Some("button_session=forged"));
        l.check(&mut request).unwrap();
        assert!(matches!(
            request.extensions().get::<Opened>(),
            Some(Opened(None))
        ));
        // The address limit alone opens no cookie, and leaves nothing.
        let mut request = from([203, 0, 113, 1], Some(&cookie));
        limits(5, 0).check(&mut request).unwrap();
        assert!(request.extensions().get::<Opened>().is_none());
    }

    #[test]
    fn zero_turns_a_limit_off() {
        let l = limits(0, 0);
        assert!(!l.is_on());
        for _ in 0..1000 {
            assert_eq!(l.check(&mut from([203, 0, 113, 9], None)), Ok(()));
        }
    }

    #[test]
    fn forgetting_idle_buckets_keeps_a_client_that_is_still_limited() {
        // 1 a second, burst 3: one press leaves the bucket short for a second, so
        // it must survive; dropping it would hand the client a fresh burst.
        let l = limits(1, 0);
        l.check(&mut from([203, 0, 113, 9], None)).unwrap();
        assert_eq!(l.tracked(), 1);
        l.forget_idle();
        assert_eq!(l.tracked(), 1);
    }
}
