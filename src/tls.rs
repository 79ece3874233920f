//! Trusting a private certificate authority: Aiven signs its services'
//! certificates with a CA of the project (`ca.pem`). Every TLS client the app
//! makes (PostgreSQL, ClickHouse over HTTPS, the schema registry) reads such a
//! file here, so a missing or unreadable file is the same clear error everywhere;
//! Kafka's librdkafka reads it itself (`ssl.ca.location`).
//!
//! Guarantee: a CA file is added to the system's trust store, never instead of
//! host-name verification: a certificate must still name the host connected to.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

/// The certificates in the PEM file `path`, the CA file for `service` (named in
/// errors). A file with no certificate is an error, not an empty trust list.
pub fn ca_certificates(path: &Path, service: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    let pem = std::fs::read(path).with_context(|| {
        format!(
            "cannot read the {service} CA certificate {}",
            path.display()
        )
    })?;
    let certs = pem_certificates(&pem);
    anyhow::ensure!(
        !certs.is_empty(),
        "no PEM certificate in the {service} CA file {}",
        path.display()
    );
    Ok(certs)
}

/// An HTTP(S) client for `service` with `timeout` per request, trusting the
/// certificates in `ca` (a PEM file) besides the system's.
pub fn http_client(
    service: &str,
    ca: Option<&Path>,
    builder: reqwest::ClientBuilder,
) -> anyhow::Result<reqwest::Client> {
    let mut builder = builder
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("button/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = ca {
        for pem in ca_certificates(path, service)? {
            let cert = reqwest::Certificate::from_pem(&pem)
                .with_context(|| format!("invalid certificate in {}", path.display()))?;
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .with_context(|| format!("cannot set up the HTTP client for {service}"))
}

/// How long a TCP connection and TLS handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Each `BEGIN CERTIFICATE` block of a PEM bundle, on its own.
fn pem_certificates(pem: &[u8]) -> Vec<Vec<u8>> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let text = String::from_utf8_lossy(pem);
    let mut out = Vec::new();
    let mut rest = text.as_ref();
    while let Some(start) = rest.find(BEGIN) {
        let Some(len) = rest[start..].find(END) else {
            break;
        };
        let end = start + len + END.len();
        out.push(rest.as_bytes()[start..end].to_vec());
        rest = &rest[end..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_bundles_split_into_certificates() {
        let pem = b"junk\n-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n\
                    -----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n";
        let certs = pem_certificates(pem);
        assert_eq!(certs.len(), 2);
        assert!(String::from_utf8_lossy(&certs[1]).contains("BBB"));
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_an_error_naming_it() {
        let err = ca_certificates(Path::new("/nonexistent/ca.pem"), "ClickHouse").unwrap_err();
        assert!(
            err.to_string()
                .contains("ClickHouse CA certificate /nonexistent/ca.pem"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("ca.pem");
        std::fs::write(&empty, "not a certificate").unwrap();
        let err = http_client("ClickHouse", Some(&empty), reqwest::Client::builder()).unwrap_err();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
    }
}
