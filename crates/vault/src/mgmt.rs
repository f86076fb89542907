//! The management listener (`--mgmt-listen`): Prometheus `/metrics`,
//! `/livez` (the process answers) and `/readyz` (it can serve: storage
//! usable, not shutting down). Meant for a private network or loopback;
//! it has no authentication and no rate limit.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::telemetry;
use crate::vault::Vault;

/// What the management endpoints look at.
pub struct Mgmt {
    pub metrics: PrometheusHandle,
    pub cluster: Arc<Cluster>,
    pub vault: Vault,
    /// Cancelled when the guardian starts shutting down: `/readyz` fails
    /// from then on, so load balancers stop sending traffic while it drains.
    pub draining: CancellationToken,
}

pub fn router(state: Arc<Mgmt>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .fallback(|| async { (StatusCode::NOT_FOUND, Json(json!({"error": "not found"}))) })
        .with_state(state)
}

/// Serves the management API until `stop`, folding histogram samples into
/// the exported buckets meanwhile.
pub async fn serve(listener: TcpListener, state: Arc<Mgmt>, stop: CancellationToken) {
    let handle = state.metrics.clone();
    let upkeep_stop = stop.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(telemetry::UPKEEP_INTERVAL);
        loop {
            tokio::select! {
                _ = tick.tick() => handle.run_upkeep(),
                () = upkeep_stop.cancelled() => return,
            }
        }
    });
    if let Err(e) = axum::serve(listener, router(state))
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "management listener failed");
    }
}

/// Prometheus text exposition of every series (gauges refreshed first).
async fn metrics(State(m): State<Arc<Mgmt>>) -> Response {
    telemetry::refresh_gauges(&m.cluster.peer_status(), m.vault.share_count());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        m.metrics.render(),
    )
        .into_response()
}

async fn livez() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(m): State<Arc<Mgmt>>) -> Response {
    if m.draining.is_cancelled() {
        return not_ready("shutting down");
    }
    match m.vault.check().await {
        Ok(()) => Json(json!({ "status": "ready" })).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed: storage unusable");
            not_ready("storage unavailable")
        }
    }
}

fn not_ready(reason: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "status": "not ready", "reason": reason })),
    )
        .into_response()
}
