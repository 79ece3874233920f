use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use button::config::KafkaArgs;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// The shared test broker, or `None` (and a note) when the script did not start one.
pub fn broker() -> Option<String> {
    match std::env::var("BUTTON_TEST_KAFKA") {
        Ok(b) if !b.is_empty() => Some(b),
        _ => {
            eprintln!("SKIPPED: BUTTON_TEST_KAFKA is not set; run scripts/test to start a broker");
            None
        }
    }
}

/// Kafka settings for `broker` and `topic`, parsed like the command line.
pub fn kafka_args(broker: &str, topic: &str) -> KafkaArgs {
    let argv = ["migrate", "--kafka-brokers", broker, "--topic", topic];
    let button::cli::Command::Migrate(m) = crate::api::command(&argv) else {
        unreachable!()
    };
    m.kafka
}

/// A new topic with three partitions.
pub async fn new_topic(broker: &str) -> String {
    let topic = format!("test-{}", uuid::Uuid::new_v4().simple());
    button::kafka::admin::ensure_topic(&kafka_args(broker, &topic).require().unwrap(), 3, 1)
        .await
        .expect("the test broker creates topics");
    topic
}

/// One record as read back.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Every record of `topic`, read from the beginning of each partition. Waits for
/// at least `expected`, then keeps reading a moment longer so that extras
/// (duplicates) would be seen too.
pub fn read_topic(broker: &str, topic: &str, expected: usize, timeout: Duration) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("group.id", format!("test-reader-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut settle_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if now > deadline || settle_until.is_some_and(|s| now > s) {
            break;
        }
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|hd| (hd.key.to_owned(), hd.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default();
            out.push(Record {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().unwrap_or_default().to_vec(),
                value: m.payload().unwrap_or_default().to_vec(),
                headers,
            });
        }
        if out.len() >= expected && settle_until.is_none() {
            settle_until = Some(Instant::now() + Duration::from_millis(1500));
        }
    }
    out
}

/// A stand-in for a Confluent schema registry: the only stand-in in these tests,
/// because no registry can run on this machine. It speaks the two REST calls we
/// use, and can be told to refuse schemas as incompatible.
pub struct Registry {
    pub url: String,
    pub refuse: Arc<Mutex<bool>>,
    pub schemas: Arc<Mutex<Vec<(String, String)>>>,
}

#[derive(Clone)]
struct RegistryState {
    refuse: Arc<Mutex<bool>>,
    schemas: Arc<Mutex<Vec<(String, String)>>>,
}

pub async fn start_registry() -> Registry {
    let state = RegistryState {
        refuse: Arc::default(),
        schemas: Arc::default(),
    };
    let app = Router::new()
        .route("/subjects/{subject}/versions", post(register))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Registry {
        url,
        refuse: state.refuse,
        schemas: state.schemas,
    }
}

async fn register(
    State(s): State<RegistryState>,
    Path(subject): Path<String>,
    Json(body): Json<serde_json::Value>,
) -> (StatusCode, Json<serde_json::Value>) {
    if *s.refuse.lock().unwrap() {
        return (
            StatusCode::CONFLICT,
            Json(serde_json::json!({
                "error_code": 409,
                "message": "Incompatible schema, compatibility_mode=BACKWARD"
            })),
        );
    }
    let schema = body["schema"].as_str().unwrap().to_owned();
    let mut all = s.schemas.lock().unwrap();
    let id = match all.iter().position(|(_, sc)| *sc == schema) {
        Some(i) => i,
        None => {
            all.push((subject, schema));
            all.len() - 1
        }
    };
    // Ids start somewhere other than 0 or 1, so a wrong id would show.
    (StatusCode::OK, Json(serde_json::json!({ "id": id + 100 })))
}

async fn schema_by_id(
    State(s): State<RegistryState>,
    Path(id): Path<usize>,
) -> (StatusCode, Json<serde_json::Value>) {
    let all = s.schemas.lock().unwrap();
    match id.checked_sub(100).and_then(|i| all.get(i)) {
        Some((_, schema)) => (
            StatusCode::OK,
            Json(serde_json::json!({ "schema": schema })),
        ),
        None => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error_code": 40403, "message": "Schema not found"})),
        ),
    }
}

/// Records grouped by key, in partition order.
pub fn by_key(records: &[Record]) -> HashMap<Vec<u8>, Vec<Record>> {
    let mut sorted = records.to_vec();
    sorted.sort_by_key(|r| (r.partition, r.offset));
    let mut m: HashMap<Vec<u8>, Vec<Record>> = HashMap::new();
    for r in sorted {
        m.entry(r.key.clone()).or_default().push(r);
    }
    m
}
