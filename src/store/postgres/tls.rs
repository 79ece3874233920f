//! TLS for PostgreSQL, as libpq's `sslmode` and `sslrootcert` ask: the connector
//! that tokio-postgres uses for every connection.
//!
//! Guarantee: the verification libpq would do for the same URL, no less: `prefer`
//! and `require` encrypt without checking the certificate (unless `sslrootcert` is
//! given, which makes `require` verify the chain as `verify-ca` does), `verify-ca`
//! checks the chain, `verify-full` the chain and the host name; `sslrootcert=system`
//! means the system's trust store and `verify-full`.

use anyhow::Context;
use postgres_native_tls::MakeTlsConnector;

/// libpq's `sslmode`, with the verification levels tokio-postgres leaves to the
/// TLS connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TlsMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it, unverified (libpq's `allow` too).
    Prefer,
    /// TLS, unverified.
    Require,
    /// TLS, the chain verified.
    VerifyCa,
    /// TLS, the chain and the host name verified.
    VerifyFull,
}

/// The TLS connector for `mode`, trusting the CA certificates in `root_cert`.
pub(super) fn tls_connector(
    mode: TlsMode,
    root_cert: Option<&str>,
) -> anyhow::Result<MakeTlsConnector> {
    let mut builder = native_tls::TlsConnector::builder();
    // libpq: `sslrootcert=system` means the system's trust store, and verify-full.
    let (mode, root_cert) = match root_cert {
        Some("system") => (TlsMode::VerifyFull, None),
        // libpq: with a root certificate, `require` verifies the chain like verify-ca.
        Some(path) if mode == TlsMode::Require => (TlsMode::VerifyCa, Some(path)),
        other => (mode, other),
    };
    match mode {
        TlsMode::Disable | TlsMode::Prefer | TlsMode::Require => {
            builder
                .danger_accept_invalid_certs(true)
                .danger_accept_invalid_hostnames(true);
        }
        TlsMode::VerifyCa => {
            builder.danger_accept_invalid_hostnames(true);
        }
        TlsMode::VerifyFull => {}
    }
    if let Some(path) = root_cert {
        for pem in crate::tls::ca_certificates(std::path::Path::new(path), "PostgreSQL")? {
            let cert = native_tls::Certificate::from_pem(&pem)
                .with_context(|| format!("invalid certificate in {path}"))?;
            builder.add_root_certificate(cert);
        }
    }
    let connector = builder
        .build()
        .context("cannot set up TLS for PostgreSQL")?;
    Ok(MakeTlsConnector::new(connector))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_connectors_build_for_every_mode() {
        for mode in [
            TlsMode::Disable,
            TlsMode::Prefer,
            TlsMode::Require,
            TlsMode::VerifyCa,
            TlsMode::VerifyFull,
        ] {
            tls_connector(mode, None).unwrap();
        }
        let err = tls_connector(TlsMode::VerifyFull, Some("/nonexistent/ca.pem"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("ca.pem");
        std::fs::write(&empty, "not a certificate").unwrap();
        let err = tls_connector(TlsMode::VerifyFull, empty.to_str())
            .err()
            .unwrap();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
    }
}
