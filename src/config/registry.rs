//! Schema registry settings (Karapace on Aiven, or any Confluent-compatible one).
//! The original app's `SCHEMA_REGISTRY_URI` is read here, with the other variables.

use std::path::PathBuf;

use clap::Args;

use super::url::{CredentialedUrl, UrlError};

/// Schema registry flags.
#[derive(Debug, Clone, Args)]
pub struct RegistryArgs {
    /// Confluent-compatible schema registry, `https://user:password@host:port`.
    /// Also read from the original app's SCHEMA_REGISTRY_URI.
    #[arg(
        id = "schema_registry_url",
        long = "schema-registry-url",
        env = "BUTTON_SCHEMA_REGISTRY_URL",
        hide_env_values = true,
        value_parser = http_url
    )]
    pub url: Option<CredentialedUrl>,

    /// The original app's variable for the registry.
    #[arg(long = "schema-registry-uri", env = "SCHEMA_REGISTRY_URI", hide = true, hide_env_values = true, value_parser = http_url)]
    pub legacy_url: Option<CredentialedUrl>,

    /// CA certificate (PEM) that the registry's HTTPS certificate chains to,
    /// trusted besides the system's. The host name is verified either way.
    #[arg(
        id = "schema_registry_ca",
        long = "schema-registry-ca",
        env = "BUTTON_SCHEMA_REGISTRY_CA"
    )]
    pub ca: Option<PathBuf>,
}

/// Where the schema registry is.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Its address and credentials.
    pub url: CredentialedUrl,
    /// A CA certificate file to trust besides the system's.
    pub ca: Option<PathBuf>,
}

impl RegistryArgs {
    /// The registry, when one is configured.
    pub fn config(&self) -> Option<RegistryConfig> {
        self.url
            .clone()
            .or_else(|| self.legacy_url.clone())
            .map(|url| RegistryConfig {
                url,
                ca: self.ca.clone(),
            })
    }
}

impl std::str::FromStr for RegistryConfig {
    type Err = UrlError;
    fn from_str(s: &str) -> Result<Self, UrlError> {
        http_url(s).map(|url| RegistryConfig { url, ca: None })
    }
}

/// An `http://` or `https://` URL with optional credentials.
pub fn http_url(s: &str) -> Result<CredentialedUrl, UrlError> {
    CredentialedUrl::parse_with_schemes(s, &["http", "https"])
}
