//! A stand-in for a Confluent schema registry: the only stand-in in these tests,
//! because no registry can run on this machine.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};

/// The registry: it speaks the two REST calls we use, and can be told to refuse
/// schemas as incompatible, or to answer schema lookups with 503 (an outage).
pub struct Registry {
    pub url: String,
    pub refuse: Arc<Mutex<bool>>,
    pub schemas: Arc<Mutex<Vec<(String, String)>>>,
    /// While set, `GET /schemas/ids/N` answers 503.
    pub unavailable: Arc<AtomicBool>,
    /// How many lookups got a 503.
    pub unavailable_answers: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct RegistryState {
    refuse: Arc<Mutex<bool>>,
    schemas: Arc<Mutex<Vec<(String, String)>>>,
    unavailable: Arc<AtomicBool>,
    unavailable_answers: Arc<AtomicUsize>,
}

pub async fn start_registry() -> Registry {
    let state = RegistryState {
        refuse: Arc::default(),
        schemas: Arc::default(),
        unavailable: Arc::default(),
        unavailable_answers: Arc::default(),
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
        unavailable: state.unavailable,
        unavailable_answers: state.unavailable_answers,
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
    if s.unavailable.load(Ordering::SeqCst) {
        s.unavailable_answers.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"error_code": 50301, "message": "Registry is starting"})),
        );
    }
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
