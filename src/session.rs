//! The visitor session: a random id and the location looked up once, kept in a
//! cookie signed with HMAC-SHA256 (the `cookie` crate's signed jar).
//!
//! The payload carries its own expiry, checked on the server, so an old cookie cannot
//! be replayed after its hour is up even if a client ignores `Max-Age`. Anything that
//! does not verify (missing, expired, garbled, forged, signed with another key) simply
//! starts a new session: it is never an error the visitor sees.
//!
//! The cookie holds no address: only the session id, the coarse location and the
//! expiry. Visitors can read it (it is signed, not encrypted), and can see that.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cookie::{Cookie, CookieJar, Key, SameSite};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::Location;

/// Name of the session cookie.
pub const COOKIE_NAME: &str = "button_session";

/// How long a session lives without activity.
pub const SESSION_TTL: Duration = Duration::from_secs(3600);

/// A cookie is re-issued (renewing its hour) once it is this old. Renewing on every
/// request would cost a signature per press for no visible difference.
pub const RENEW_AFTER: Duration = Duration::from_secs(60);

/// Minimum length of a configured secret, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// How many verified cookie values a [`SessionCodec`] remembers (a few hundred
/// bytes each); when full, it forgets them all and starts again.
const VERIFIED_CAPACITY: usize = 4096;

/// What a request's cookie opened ([`SessionCodec::from_headers`]), kept in the
/// request's extensions by the first layer that opens it (the press limiter), so
/// that the handler's `Visitor` does not open the same cookie again.
#[derive(Debug, Clone)]
pub struct Opened(pub Option<(Session, bool)>);

/// A verified session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Random session id (UUIDv4).
    #[serde(rename = "sid")]
    pub id: Uuid,
    /// Where the session comes from, looked up when it started.
    #[serde(rename = "loc")]
    pub location: Location,
}

#[derive(Serialize, Deserialize)]
struct Payload {
    #[serde(rename = "s")]
    session: Session,
    /// Unix seconds after which the cookie is no longer accepted.
    exp: u64,
}

/// Why a cookie was not accepted. Each case just starts a new session.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CookieError {
    /// The signature does not verify: forged, edited, or another key.
    #[error("bad signature")]
    BadSignature,
    /// Signed by us but unreadable (an older format).
    #[error("malformed payload")]
    Malformed,
    /// Older than [`SESSION_TTL`].
    #[error("expired")]
    Expired,
}

/// Seals sessions into cookie values and opens them again.
pub struct SessionCodec {
    key: Key,
    secure: bool,
    /// Cookie values verified lately, with the session and expiry each holds:
    /// a visitor pressing again costs a lookup instead of a signature check, two
    /// base64 decodings and a JSON parse (about a twentieth of a press's CPU).
    /// Keyed by the whole value, so only a value this codec verified is found.
    verified: Mutex<Verified>,
}

/// Verified cookie values, with the session each holds and its expiry (Unix s).
type Verified = HashMap<Box<str>, (Session, u64), foldhash::fast::RandomState>;

impl std::fmt::Debug for SessionCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCodec")
            .field("key", &"<redacted>")
            .finish()
    }
}

impl SessionCodec {
    /// A codec whose signing key is derived (HKDF) from `secret`, which must be at
    /// least [`MIN_SECRET_LEN`] bytes. `secure` adds the `Secure` cookie attribute.
    pub fn new(secret: &[u8], secure: bool) -> Result<Self, String> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(format!(
                "the session secret must be at least {MIN_SECRET_LEN} bytes, got {}",
                secret.len()
            ));
        }
        Ok(SessionCodec {
            key: Key::derive_from(secret),
            secure,
            verified: Mutex::default(),
        })
    }

    /// The signed cookie value for `session`, valid for [`SESSION_TTL`] from `now`.
    pub fn seal(&self, session: &Session, now: SystemTime) -> String {
        let payload = Payload {
            session: session.clone(),
            exp: unix_secs(now + SESSION_TTL),
        };
        let json = serde_json::to_vec(&payload).expect("a session always serializes");
        let mut jar = CookieJar::new();
        jar.signed_mut(&self.key)
            .add(Cookie::new(COOKIE_NAME, URL_SAFE_NO_PAD.encode(json)));
        jar.get(COOKIE_NAME).expect("just added").value().to_owned()
    }

    /// The session in a cookie value, if it verifies and has not expired at `now`.
    pub fn open(&self, value: &str, now: SystemTime) -> Result<Session, CookieError> {
        self.open_with_expiry(value, now).map(|(s, _)| s)
    }

    /// Like [`Self::open`], also returning when the cookie expires.
    pub fn open_with_expiry(
        &self,
        value: &str,
        now: SystemTime,
    ) -> Result<(Session, SystemTime), CookieError> {
        let now = unix_secs(now);
        let remembered = self.verified().get(value).cloned();
        let (session, exp) = match remembered {
            Some(hit) => hit,
            None => {
                let Payload { session, exp } = self.verify(value)?;
                if exp > now {
                    let mut verified = self.verified();
                    if verified.len() >= VERIFIED_CAPACITY {
                        verified.clear();
                    }
                    verified.insert(value.into(), (session.clone(), exp));
                }
                (session, exp)
            }
        };
        if exp <= now {
            self.verified().remove(value);
            return Err(CookieError::Expired);
        }
        Ok((session, UNIX_EPOCH + Duration::from_secs(exp)))
    }

    fn verified(&self) -> std::sync::MutexGuard<'_, Verified> {
        self.verified.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The payload of a cookie value whose signature verifies.
    fn verify(&self, value: &str) -> Result<Payload, CookieError> {
        let jar = CookieJar::new();
        let verified = jar
            .signed(&self.key)
            .verify(Cookie::new(COOKIE_NAME, value.to_owned()))
            .ok_or(CookieError::BadSignature)?;
        let json = URL_SAFE_NO_PAD
            .decode(verified.value())
            .map_err(|_| CookieError::Malformed)?;
        serde_json::from_slice(&json).map_err(|_| CookieError::Malformed)
    }

    /// The session cookie in a request's `Cookie` headers, if any verifies, and
    /// whether it is old enough to be renewed (see [`RENEW_AFTER`]).
    pub fn from_headers(
        &self,
        headers: &axum::http::HeaderMap,
        now: SystemTime,
    ) -> Option<(Session, bool)> {
        headers
            .get_all(axum::http::header::COOKIE)
            .iter()
            .filter_map(|h| h.to_str().ok())
            .flat_map(Cookie::split_parse)
            .filter_map(Result::ok)
            .filter(|c| c.name() == COOKIE_NAME)
            .find_map(|c| self.open_with_expiry(c.value(), now).ok())
            .map(|(session, expires)| {
                let fresh_until = now + SESSION_TTL - RENEW_AFTER;
                (session, expires < fresh_until)
            })
    }

    /// A `Set-Cookie` header value that deletes the session cookie; `https`: the
    /// request came over HTTPS (see [`SessionCodec::set_cookie`]).
    pub fn clear_cookie(&self, https: bool) -> String {
        Cookie::build((COOKIE_NAME, ""))
            .path("/")
            .http_only(true)
            .same_site(SameSite::Lax)
            .secure(self.secure || https)
            .max_age(cookie::time::Duration::ZERO)
            .build()
            .to_string()
    }

    /// A complete `Set-Cookie` header value for `session`. It is `Secure` when
    /// the codec always says so (`--cookie-secure`) or the request came over
    /// HTTPS (`https`, as a trusted proxy reports it).
    pub fn set_cookie(&self, session: &Session, now: SystemTime, https: bool) -> String {
        Cookie::build((COOKIE_NAME, self.seal(session, now)))
            .path("/")
            .http_only(true)
            .same_site(SameSite::Lax)
            .secure(self.secure || https)
            .max_age(cookie::time::Duration::seconds(SESSION_TTL.as_secs() as i64))
            .build()
            .to_string()
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The secret from `--secret`, else the one kept in `data_dir/secret.key`, created
/// with 64 random bytes (mode 0600) on first start.
pub fn load_or_create_secret(
    configured: Option<&secrecy::SecretString>,
    data_dir: &Path,
) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context;
    use secrecy::ExposeSecret;
    if let Some(s) = configured {
        return Ok(s.expose_secret().as_bytes().to_vec());
    }
    let path = data_dir.join("secret.key");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let bytes = hex::decode(text.trim())
                .with_context(|| format!("{} is not a hex-encoded secret", path.display()))?;
            return Ok(bytes);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let secret: [u8; 64] = rand::random();
    let encoded = hex::encode(secret);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut file = opts
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(file, "{encoded}")?;
    file.sync_all()?;
    tracing::info!(path = %path.display(), "generated a new session secret");
    Ok(secret.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn an_arbitrary_cookie_value_never_opens(value in ".{0,400}") {
            proptest::prop_assert!(codec().open(&value, SystemTime::now()).is_err());
        }

        #[test]
        fn a_sealed_cookie_with_any_character_changed_never_opens(
            at in 0usize..1000,
            replacement in proptest::char::range('!', '~'),
        ) {
            let now = SystemTime::now();
            let sealed = codec().seal(&session(), now);
            let at = at % sealed.len();
            let mut forged: Vec<char> = sealed.chars().collect();
            proptest::prop_assume!(forged[at] != replacement);
            forged[at] = replacement;
            let forged: String = forged.into_iter().collect();
            proptest::prop_assert!(codec().open(&forged, now).is_err());
        }

        #[test]
        fn arbitrary_cookie_headers_never_panic_and_never_yield_a_session(
            header in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
        ) {
            let mut headers = axum::http::HeaderMap::new();
            if let Ok(v) = axum::http::HeaderValue::from_bytes(&header) {
                headers.insert(axum::http::header::COOKIE, v);
            }
            proptest::prop_assert!(codec().from_headers(&headers, SystemTime::now()).is_none());
        }
    }

    fn codec() -> SessionCodec {
        SessionCodec::new(&[7u8; 64], false).unwrap()
    }

    fn session() -> Session {
        let mut location = Location::unknown();
        location.country_code = "NL".into();
        location.country_name = "Netherlands".into();
        Session {
            id: Uuid::new_v4(),
            location,
        }
    }

    #[test]
    fn sealed_session_opens_again() {
        let now = SystemTime::now();
        let s = session();
        assert_eq!(codec().open(&codec().seal(&s, now), now), Ok(s));
    }

    #[test]
    fn session_expires_after_an_hour() {
        let now = SystemTime::now();
        let sealed = codec().seal(&session(), now);
        assert!(
            codec()
                .open(&sealed, now + Duration::from_secs(3599))
                .is_ok()
        );
        assert_eq!(
            codec().open(&sealed, now + Duration::from_secs(3600)),
            Err(CookieError::Expired)
        );
    }

    #[test]
    fn a_remembered_cookie_still_expires_after_an_hour() {
        let now = SystemTime::now();
        let codec = codec();
        let s = session();
        let sealed = codec.seal(&s, now);
        assert_eq!(codec.open(&sealed, now), Ok(s.clone()));
        assert_eq!(codec.verified().len(), 1, "the value is remembered");
        assert_eq!(
            codec.open(&sealed, now + Duration::from_secs(3600)),
            Err(CookieError::Expired)
        );
        assert!(codec.verified().is_empty(), "an expired value is forgotten");
        assert_eq!(codec.open(&sealed, now + Duration::from_secs(3599)), Ok(s));
    }

    #[test]
    fn a_remembered_cookie_opens_no_other_value() {
        let now = SystemTime::now();
        let codec = codec();
        let sealed = codec.seal(&session(), now);
        codec.open(&sealed, now).unwrap();
        let mut forged = sealed.clone();
        forged.push('A');
        assert!(codec.open(&forged, now).is_err());
        assert!(codec.open(&sealed[..sealed.len() - 1], now).is_err());
        assert_eq!(codec.verified().len(), 1, "failures are not remembered");
    }

    #[test]
    fn the_remembered_values_stay_bounded() {
        let now = SystemTime::now();
        let codec = codec();
        let sessions: Vec<Session> = (0..VERIFIED_CAPACITY + 10).map(|_| session()).collect();
        for s in &sessions {
            assert_eq!(codec.open(&codec.seal(s, now), now).as_ref(), Ok(s));
            assert!(codec.verified().len() <= VERIFIED_CAPACITY);
        }
        // Full at VERIFIED_CAPACITY, it forgot them all: only the last ten are left.
        assert_eq!(codec.verified().len(), 10);
        // Forgotten values verify again, and are remembered again.
        let first = codec.seal(&sessions[0], now);
        assert_eq!(codec.open(&first, now), Ok(sessions[0].clone()));
        assert_eq!(codec.verified().len(), 11);
    }

    #[test]
    fn any_change_to_the_cookie_breaks_the_signature() {
        let now = SystemTime::now();
        let sealed = codec().seal(&session(), now);
        for i in 0..sealed.len() {
            let mut bytes = sealed.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(bytes).unwrap();
            if tampered != sealed {
                assert!(codec().open(&tampered, now).is_err(), "byte {i} accepted");
            }
        }
    }

    #[test]
    fn an_edited_country_is_rejected() {
        let now = SystemTime::now();
        let sealed = codec().seal(&session(), now);
        let (mac, body) = sealed.split_at(44);
        let json = String::from_utf8(URL_SAFE_NO_PAD.decode(body).unwrap()).unwrap();
        let forged = format!("{mac}{}", URL_SAFE_NO_PAD.encode(json.replace("NL", "US")));
        assert_eq!(codec().open(&forged, now), Err(CookieError::BadSignature));
    }

    #[test]
    fn other_keys_and_garbage_are_rejected() {
        let now = SystemTime::now();
        let other = SessionCodec::new(&[8u8; 64], false).unwrap();
        assert_eq!(
            other.open(&codec().seal(&session(), now), now),
            Err(CookieError::BadSignature)
        );
        for junk in ["", "x", "%%%", "{\"sid\":1}", &"A".repeat(5000)] {
            assert!(codec().open(junk, now).is_err());
        }
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(
            SessionCodec::new(b"too short", false)
                .unwrap_err()
                .contains("at least 32")
        );
    }

    #[test]
    fn cookie_is_renewed_only_once_it_is_a_minute_old() {
        let now = SystemTime::now();
        let s = session();
        let header = |v: &str| {
            let mut h = axum::http::HeaderMap::new();
            h.insert(
                "cookie",
                format!("other=1; {COOKIE_NAME}={v}").parse().unwrap(),
            );
            h
        };
        let sealed = codec().seal(&s, now);
        assert_eq!(
            codec().from_headers(&header(&sealed), now),
            Some((s.clone(), false))
        );
        let later = now + RENEW_AFTER + Duration::from_secs(1);
        assert_eq!(
            codec().from_headers(&header(&sealed), later),
            Some((s, true))
        );
        assert_eq!(codec().from_headers(&header("forged"), now), None);
    }

    #[test]
    fn set_cookie_is_http_only_and_lax() {
        let h = codec().set_cookie(&session(), SystemTime::now(), false);
        assert!(h.starts_with("button_session="), "{h}");
        for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=3600"] {
            assert!(h.contains(attr), "{attr} missing in {h}");
        }
        assert!(!h.contains("Secure"));
    }

    #[test]
    fn a_cookie_sent_over_https_is_secure() {
        let h = codec().set_cookie(&session(), SystemTime::now(), true);
        assert!(h.contains("Secure"), "{h}");
        assert!(codec().clear_cookie(true).contains("Secure"));
        assert!(!codec().clear_cookie(false).contains("Secure"));
    }

    #[test]
    fn secret_is_generated_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_secret(None, dir.path()).unwrap();
        let b = load_or_create_secret(None, dir.path()).unwrap();
        assert_eq!(a.len(), 64);
        assert_eq!(a, b);
        assert_eq!(
            load_or_create_secret(Some(&"given".into()), dir.path()).unwrap(),
            b"given"
        );
    }
}
