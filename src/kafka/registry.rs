//! A Confluent-compatible schema registry client (Karapace on Aiven, Confluent
//! Schema Registry, Redpanda): registers our Avro schema under `<topic>-value` and
//! fetches writer schemas by id, cached (ids are immutable).

use std::collections::HashMap;
use std::sync::Arc;

use apache_avro::Schema;
use secrecy::ExposeSecret;
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::config::{CredentialedUrl, RegistryConfig};

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// What the registry said.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Could not talk to it.
    #[error("cannot reach the schema registry at {url}")]
    Http {
        /// Where.
        url: String,
        /// Why.
        source: reqwest::Error,
    },
    /// It answered with an error.
    #[error("the schema registry refused ({status}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The registry's own explanation.
        message: String,
    },
    /// It returned a schema that does not parse.
    #[error("schema {id} from the registry is not valid Avro: {reason}")]
    BadSchema {
        /// Schema id.
        id: u32,
        /// Why.
        reason: String,
    },
}

impl RegistryError {
    /// Whether asking again later can help: the registry is unreachable,
    /// overloaded or refuses us (credentials, say). Not when it does not know the
    /// schema id, or serves a schema that does not parse: that is the message's
    /// fault, and no wait mends it.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Http { .. } => true,
            RegistryError::Refused { status, .. } => !matches!(status, 404 | 422),
            RegistryError::BadSchema { .. } => false,
        }
    }
}

/// A registry client. Cheap to clone.
#[derive(Clone)]
pub struct SchemaRegistry {
    url: CredentialedUrl,
    http: reqwest::Client,
    cache: Arc<Mutex<HashMap<u32, Arc<Schema>>>>,
}

#[derive(Deserialize)]
struct Registered {
    id: u32,
}

#[derive(Deserialize)]
struct Fetched {
    schema: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    message: Option<String>,
}

impl SchemaRegistry {
    /// A client for the configured registry; fails only on an unusable CA file.
    pub fn new(config: &RegistryConfig) -> anyhow::Result<Self> {
        let http = crate::tls::http_client(
            "the schema registry",
            config.ca.as_deref(),
            reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)),
        )?;
        Ok(SchemaRegistry {
            url: config.url.clone(),
            http,
            cache: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// A client for the registry in `config`, when one is configured.
    pub fn configured(config: Option<&RegistryConfig>) -> anyhow::Result<Option<Self>> {
        config.map(Self::new).transpose()
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut url = self.url.url().clone();
        url.set_path(&format!("{}{}", url.path().trim_end_matches('/'), path));
        let mut req = self
            .http
            .request(method, url)
            .header("accept", CONTENT_TYPE);
        if let Some(user) = self.url.user() {
            req = req.basic_auth(user, self.url.password().map(|p| p.expose_secret()));
        }
        req
    }

    async fn send<T: for<'de> Deserialize<'de>>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, RegistryError> {
        let http = |source: reqwest::Error| RegistryError::Http {
            url: self.url.url().to_string(),
            source: source.without_url(),
        };
        let res = req.send().await.map_err(http)?;
        let status = res.status();
        if !status.is_success() {
            let text = res.text().await.unwrap_or_default();
            let message = serde_json::from_str::<ErrorBody>(&text)
                .ok()
                .and_then(|b| b.message)
                .unwrap_or(text);
            return Err(RegistryError::Refused {
                status: status.as_u16(),
                message,
            });
        }
        res.json().await.map_err(http)
    }

    /// Registers `schema` (Avro JSON) under `subject`; returns its id. Registering
    /// the same schema again returns the same id.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let req = self
            .request(
                reqwest::Method::POST,
                &format!("/subjects/{subject}/versions"),
            )
            .header("content-type", CONTENT_TYPE)
            .json(&serde_json::json!({ "schema": schema }));
        Ok(self.send::<Registered>(req).await?.id)
    }

    /// The schema with `id`, fetched once and cached.
    pub async fn schema(&self, id: u32) -> Result<Arc<Schema>, RegistryError> {
        if let Some(s) = self.cache.lock().await.get(&id) {
            return Ok(s.clone());
        }
        let req = self.request(reqwest::Method::GET, &format!("/schemas/ids/{id}"));
        let fetched: Fetched = self.send(req).await?;
        let schema = Schema::parse_str(&fetched.schema).map_err(|e| RegistryError::BadSchema {
            id,
            reason: e.to_string(),
        })?;
        let schema = Arc::new(schema);
        self.cache.lock().await.insert(id, schema.clone());
        Ok(schema)
    }
}

/// The subject our value schema is registered under (TopicNameStrategy).
pub fn value_subject(topic: &str) -> String {
    format!("{topic}-value")
}
