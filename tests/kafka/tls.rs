//! The schema registry over HTTPS with a private CA (Aiven's Karapace is signed by
//! the project's CA): the registry stand-in behind a real TLS endpoint.

use button::config::RegistryConfig;
use button::kafka::SchemaRegistry;

use crate::common::registry::start_registry;
use crate::common::tls::{self, TestCa};

fn config(port: u16, ca: Option<std::path::PathBuf>) -> RegistryConfig {
    RegistryConfig {
        url: format!("https://user:pa%40ss@localhost:{port}")
            .parse()
            .unwrap(),
        ca,
    }
}

#[tokio::test]
async fn the_registry_over_https_trusts_the_given_ca_and_refuses_any_other() {
    let registry = start_registry().await;
    let project_ca = TestCa::new("button test project CA");
    let port = project_ca.proxy_to(&tls::host_port(&registry.url)).await;
    let schema = button::encoding::avro::SCHEMA_JSON;

    let client = SchemaRegistry::new(&config(port, Some(project_ca.ca_file()))).unwrap();
    let id = client.register("t-value", schema).await.unwrap();
    client.schema(id).await.unwrap();

    let other_ca = TestCa::new("some other CA");
    for ca in [Some(other_ca.ca_file()), None] {
        let client = SchemaRegistry::new(&config(port, ca.clone())).unwrap();
        let err = anyhow::Error::from(client.register("t-value", schema).await.unwrap_err());
        let msg = format!("{err:#}");
        assert!(msg.contains(&format!("https://localhost:{port}/")), "{msg}");
        assert!(msg.contains("certificate"), "with {ca:?}: {msg}");
        assert!(!msg.contains("pa@ss") && !msg.contains("pa%40ss"), "{msg}");
    }
}

#[test]
fn an_unreadable_ca_file_is_refused_up_front() {
    let Err(err) = SchemaRegistry::new(&config(1, Some("/nonexistent/ca.pem".into()))) else {
        panic!("a registry client with a CA file that does not exist");
    };
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}
