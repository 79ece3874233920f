//! One URL type for every service reached with credentials (PostgreSQL,
//! ClickHouse, the schema registry): the user name and password are split off at
//! parse time (percent-decoded, so `p%40ss` is the password `p@ss`), the password is
//! held as a secret, and neither `Debug` nor `Display` ever shows it.

use std::fmt;
use std::str::FromStr;

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

/// Characters escaped when credentials are put back into a URL (RFC 3986 userinfo).
const USERINFO: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b':')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'@')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// A service URL whose credentials never print.
#[derive(Clone)]
pub struct CredentialedUrl {
    /// The URL without user name and password.
    url: Url,
    user: Option<String>,
    password: Option<SecretString>,
}

/// Why a URL was refused.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    /// Not a URL at all.
    #[error("not a URL ({0}); expected SCHEME://[USER[:PASSWORD]@]HOST[:PORT][/PATH][?QUERY]")]
    Syntax(#[from] url::ParseError),
    /// A scheme this service does not speak.
    #[error("the URL scheme must be {expected}, not `{found}`")]
    Scheme {
        /// The schemes accepted.
        expected: &'static str,
        /// The one given.
        found: String,
    },
    /// Credentials that are not UTF-8 once decoded.
    #[error("the user name or password in the URL is not valid UTF-8 once percent-decoded")]
    Encoding,
}

impl CredentialedUrl {
    /// Parses `s` and checks that its scheme is one of `schemes`.
    pub fn parse_with_schemes(s: &str, schemes: &[&'static str]) -> Result<Self, UrlError> {
        let u: CredentialedUrl = s.parse()?;
        if !schemes.contains(&u.url.scheme()) {
            return Err(UrlError::Scheme {
                expected: match schemes {
                    ["http", "https"] => "http or https",
                    ["postgres", "postgresql"] => "postgres or postgresql",
                    _ => "another one",
                },
                found: u.url.scheme().to_owned(),
            });
        }
        Ok(u)
    }

    /// The URL without credentials: safe to log and to show in errors.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The user name, decoded.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The password, decoded.
    pub fn password(&self) -> Option<&SecretString> {
        self.password.as_ref()
    }

    /// The whole URL with its credentials (percent-encoded again), for a client
    /// library that parses URLs itself. Never log the result.
    pub fn expose(&self) -> String {
        let Some(user) = &self.user else {
            return self.url.to_string();
        };
        let mut userinfo = utf8_percent_encode(user, USERINFO).to_string();
        if let Some(p) = &self.password {
            userinfo.push(':');
            userinfo.extend(utf8_percent_encode(p.expose_secret(), USERINFO));
        }
        let s = self.url.as_str();
        // `Url` always writes `scheme://` for the special and non-special schemes we
        // accept, which have an authority.
        match s.split_once("://") {
            Some((scheme, rest)) => format!("{scheme}://{userinfo}@{rest}"),
            None => s.to_owned(),
        }
    }

    /// `host:port` (the scheme's default port when none is given), for messages.
    pub fn host_port(&self) -> String {
        let host = self.url.host_str().unwrap_or("localhost");
        match self.url.port_or_known_default() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        }
    }
}

impl FromStr for CredentialedUrl {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, UrlError> {
        let mut url = Url::parse(s.trim())?;
        let decode = |raw: &str| {
            percent_decode_str(raw)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| UrlError::Encoding)
        };
        let user = match url.username() {
            "" => None,
            raw => Some(decode(raw)?),
        };
        let password = url
            .password()
            .map(decode)
            .transpose()?
            .map(SecretString::from);
        // Cannot fail for URLs with a host, which are the only ones with credentials.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        Ok(CredentialedUrl {
            url,
            user,
            password,
        })
    }
}

impl fmt::Display for CredentialedUrl {
    /// The URL with the user name and a masked password: `https://avnadmin:***@host/`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.user, self.url.as_str().split_once("://")) {
            (Some(user), Some((scheme, rest))) => {
                let masked = if self.password.is_some() { ":***" } else { "" };
                write!(f, "{scheme}://{user}{masked}@{rest}")
            }
            _ => f.write_str(self.url.as_str()),
        }
    }
}

impl fmt::Debug for CredentialedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CredentialedUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_split_off_decoded_and_never_printed() {
        let u: CredentialedUrl = "https://avnadmin:s3cr%40t-pw@registry.example:13044/x"
            .parse()
            .unwrap();
        assert_eq!(u.user(), Some("avnadmin"));
        assert_eq!(u.password().unwrap().expose_secret(), "s3cr@t-pw");
        assert_eq!(u.url().as_str(), "https://registry.example:13044/x");
        for shown in [format!("{u}"), format!("{u:?}")] {
            assert!(!shown.contains("s3cr"), "{shown}");
            assert!(shown.contains("registry.example:13044"), "{shown}");
        }
        assert_eq!(u.host_port(), "registry.example:13044");
    }

    #[test]
    fn expose_round_trips_awkward_passwords() {
        for password in ["p@ss:w/rd?#", "späß %20", "plain"] {
            let encoded = utf8_percent_encode(password, USERINFO).to_string();
            let s = format!("postgres://me:{encoded}@db.example:5432/app?sslmode=require");
            let u: CredentialedUrl = s.parse().unwrap();
            assert_eq!(u.password().unwrap().expose_secret(), password);
            let again: CredentialedUrl = u.expose().parse().unwrap();
            assert_eq!(again.password().unwrap().expose_secret(), password);
            assert_eq!(again.user(), Some("me"));
            assert_eq!(again.url(), u.url());
        }
    }

    #[test]
    fn a_url_without_credentials_stays_as_it_is() {
        let u: CredentialedUrl = "http://127.0.0.1:8123/?database=x".parse().unwrap();
        assert_eq!(u.user(), None);
        assert!(u.password().is_none());
        assert_eq!(u.expose(), "http://127.0.0.1:8123/?database=x");
    }

    #[test]
    fn wrong_schemes_and_non_urls_are_refused_with_a_reason() {
        let err = CredentialedUrl::parse_with_schemes("ftp://x", &["http", "https"]).unwrap_err();
        assert!(err.to_string().contains("http or https"), "{err}");
        let err = "host=db dbname=app".parse::<CredentialedUrl>().unwrap_err();
        assert!(err.to_string().contains("not a URL"), "{err}");
    }
}
