//! Unauthenticated, unlimited information endpoints.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::AppState;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `GET /v1/vault/health`: liveness, never an error.
pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok", "version": VERSION }))
}

/// `GET /v1/vault/status`: configuration and runtime state. `peers` (the
/// outbound links and their liveness) is an addition to the reference.
pub async fn status(State(s): State<AppState>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "version": VERSION,
        "data_dir": s.data_dir.display().to_string(),
        "client_port": s.http_addr.port(),
        "peer_port": s.peer_addr.port(),
        "peers": s.cluster.peer_status(),
    }))
}

/// `GET /v1/vault/guardians`: self and the guardians heard from recently.
pub async fn guardians(State(s): State<AppState>) -> Json<Value> {
    let guardians = s.cluster.live_guardians();
    let total = guardians.len();
    Json(json!({ "guardians": guardians, "threshold": s.cluster.threshold(), "total": total }))
}
