//! Reading a PostgreSQL URL the way libpq does: our TLS settings (`sslmode`,
//! `sslrootcert`) are split off, libpq-only parameters that change nothing here are
//! dropped, and the rest goes to tokio-postgres as it is.
//!
//! Guarantee: a setting we cannot honour (client certificates, revocation lists, an
//! unknown `sslmode`) is an error at start, never silently ignored; errors name the
//! parameter, never the password.

use percent_encoding::percent_decode_str;

use super::tls::TlsMode;

/// What [`parse_url`] makes of a connection string.
#[derive(Debug)]
pub(super) struct ParsedUrl {
    /// The connection string for tokio-postgres (libpq-only parameters removed,
    /// `sslmode` mapped to a value it knows).
    pub(super) conn_str: String,
    /// The TLS verification libpq's `sslmode` asks for.
    pub(super) mode: TlsMode,
    /// `sslrootcert`: a PEM file of CA certificates, or `system`.
    pub(super) root_cert: Option<String>,
}

/// libpq parameters tokio-postgres rejects but that change nothing we need.
const IGNORED_PARAMS: &[&str] = &["sslcompression", "sslsni", "gssencmode", "krbsrvname"];

/// Splits our TLS settings off a `postgres://` URL. Other forms (`key=value ...`)
/// are given to tokio-postgres as they are (with its `sslmode` values only).
pub(super) fn parse_url(url: &str) -> anyhow::Result<ParsedUrl> {
    let url = url.trim();
    let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
    let (base, query) = match url.split_once('?') {
        Some((b, q)) if is_url => (b, q),
        _ => {
            return Ok(ParsedUrl {
                conn_str: url.to_owned(),
                mode: TlsMode::Prefer,
                root_cert: None,
            });
        }
    };
    let mut kept = Vec::new();
    let mut mode = TlsMode::Prefer;
    let mut root_cert = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(key);
        match key.as_str() {
            "sslmode" => {
                mode = match percent_decode(value).as_str() {
                    "disable" => TlsMode::Disable,
                    "allow" | "prefer" => TlsMode::Prefer,
                    "require" => TlsMode::Require,
                    "verify-ca" => TlsMode::VerifyCa,
                    "verify-full" => TlsMode::VerifyFull,
                    other => anyhow::bail!(
                        "invalid sslmode {other:?} in the PostgreSQL URL \
                         (disable, prefer, require, verify-ca or verify-full)"
                    ),
                };
            }
            "sslrootcert" => root_cert = Some(percent_decode(value)),
            "sslcert" | "sslkey" | "sslpassword" | "sslcrl" | "sslcrldir" => anyhow::bail!(
                "{key} in the PostgreSQL URL is not supported (client certificates and \
                 revocation lists); use password authentication over TLS"
            ),
            k if IGNORED_PARAMS.contains(&k) => {}
            _ => kept.push(pair),
        }
    }
    kept.push(match mode {
        TlsMode::Disable => "sslmode=disable",
        TlsMode::Prefer => "sslmode=prefer",
        // tokio-postgres only encrypts; the connector does the verification.
        TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => "sslmode=require",
    });
    Ok(ParsedUrl {
        conn_str: format!("{base}?{}", kept.join("&")),
        mode,
        root_cert,
    })
}

/// Decodes `%XX` escapes (and nothing else: `+` stays, as in URL paths and libpq).
fn percent_decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_postgres::Config;
    use tokio_postgres::config::SslMode;

    #[test]
    fn libpq_sslmodes_map_to_tokio_postgres_and_tls_checks() {
        let p = parse_url("postgres://u:p@h:1/db?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem")
            .unwrap();
        assert_eq!(p.mode, TlsMode::VerifyFull);
        assert_eq!(p.root_cert.as_deref(), Some("/tmp/ca.pem"));
        assert_eq!(p.conn_str, "postgres://u:p@h:1/db?sslmode=require");
        let c: Config = p.conn_str.parse().unwrap();
        assert_eq!(c.get_ssl_mode(), SslMode::Require);

        let p = parse_url("postgresql://h/db?application_name=x&sslmode=disable").unwrap();
        assert_eq!(p.mode, TlsMode::Disable);
        assert_eq!(
            p.conn_str,
            "postgresql://h/db?application_name=x&sslmode=disable"
        );

        let p = parse_url("postgres://h/db").unwrap();
        assert_eq!(p.mode, TlsMode::Prefer);
        assert_eq!(p.conn_str, "postgres://h/db");

        let p = parse_url("postgres://h/db?sslmode=verify-ca&sslsni=1").unwrap();
        assert_eq!(p.mode, TlsMode::VerifyCa);
        assert_eq!(p.conn_str, "postgres://h/db?sslmode=require");

        assert!(parse_url("postgres://h/db?sslmode=bogus").is_err());
        let err = parse_url("postgres://h/db?sslcert=x").unwrap_err();
        assert!(err.to_string().contains("sslcert"), "{err}");
        // key=value strings pass through untouched.
        let p = parse_url("host=h dbname=db").unwrap();
        assert_eq!(p.conn_str, "host=h dbname=db");
    }

    #[test]
    fn percent_escapes_decode() {
        assert_eq!(percent_decode("a%2Fb%20c"), "a/b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("p%40ss+word"), "p@ss+word");
    }
}
