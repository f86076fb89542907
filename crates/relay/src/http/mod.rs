//! The public HTTP API and the management endpoints.

pub mod accounts;
pub mod attachments;
pub mod client_ip;
pub mod connection;
pub mod dto;
pub mod error;
pub mod extract;
pub mod keys;
pub mod messages;
pub mod metrics;
pub mod openapi;
pub mod push_tokens;
pub mod server;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::domain::Relay;
use crate::gateway;

/// Largest JSON request body (registration with 100 one-time pre-keys is ~10 KiB).
pub const MAX_JSON_BYTES: usize = 256 * 1024;

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub relay: Arc<Relay>,
    /// Cancelled on SIGTERM: gateway sessions flush and close with 1001.
    pub shutdown: CancellationToken,
    /// One permit per live WebSocket session; shutdown waits for all of them.
    pub sessions: Arc<Semaphore>,
    /// The backends `/readyz` checks (database, and Redis/S3 when configured).
    pub readiness: Arc<crate::health::Readiness>,
}

/// The public API router (`/v1/*`, `/openapi.yaml`).
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/v1/users", post(accounts::register))
        .route(
            "/v1/sessions",
            post(accounts::login).delete(accounts::logout),
        )
        .route("/v1/sessions/refresh", post(accounts::refresh))
        .route("/v1/keys", post(keys::upload))
        .route("/v1/keys/{user_id}", get(keys::bundle))
        .route("/v1/messages/{recipient_id}", post(messages::send))
        // GET: HTTP/1.1 upgrade; CONNECT: WebSockets over HTTP/2 (RFC 8441).
        .route(
            "/v1/gateway",
            get(gateway::upgrade).connect(gateway::upgrade),
        )
        .route("/v1/attachments", post(attachments::upload))
        .route("/v1/attachments/{id}", get(attachments::download))
        .route("/v1/push-tokens", put(push_tokens::put))
        .route("/openapi.yaml", get(openapi::serve))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_JSON_BYTES))
        .layer(axum::middleware::from_fn(crate::metrics::track_http));
    // Outside the routes: a preflight is answered before routing (no 405),
    // authentication or rate limiting.
    let api = match cors_layer(&state.relay.config.cors) {
        Some(cors) => api.layer(cors),
        None => api,
    };
    with_common_layers(api.with_state(state))
}

/// `--cors-allowed-origins`: browser pages of those origins may call the API
/// with a bearer token (no cookies are involved, so no credentials mode).
fn cors_layer(origins: &crate::config::CorsOrigins) -> Option<CorsLayer> {
    use crate::config::CorsOrigins;
    use axum::http::{HeaderName, HeaderValue, Method, header};
    let allow = match origins {
        CorsOrigins::None => return None,
        CorsOrigins::Any => AllowOrigin::any(),
        CorsOrigins::List(list) => {
            AllowOrigin::list(list.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
        }
    };
    let request_id = HeaderName::from_static("x-request-id");
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                request_id.clone(),
            ])
            .expose_headers([request_id, header::RETRY_AFTER])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// `/livez` (the process answers), `/readyz` (the database answers) and
/// `/metrics` (Prometheus).
pub fn mgmt_router(state: AppState) -> Router {
    let mgmt = Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::scrape))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(state);
    with_common_layers(mgmt)
}

/// Request ids (a client's usable `x-request-id` is echoed, else a UUID v4
/// is made) on every response, errors and fallbacks included; panics become
/// a JSON 500.
fn with_common_layers(router: Router) -> Router {
    router.layer(
        ServiceBuilder::new()
            .map_request(drop_unusable_request_id)
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(PropagateRequestIdLayer::x_request_id())
            // The span names the path only: the gateway's query carries a JWT.
            .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<axum::body::Body>| {
                let request_id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
                tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id)
            }))
            .layer(CatchPanicLayer::custom(|_| {
                error::json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal server error")
            })),
    )
}

/// Longest client-chosen request id kept.
const MAX_REQUEST_ID: usize = 128;

/// A client's `x-request-id` is kept (echoed and logged) only when it is
/// 1–128 characters of `[A-Za-z0-9._:-]` (a UUID is); anything else is
/// dropped here and replaced by a fresh UUID, so no client writes
/// arbitrary text into the logs.
fn drop_unusable_request_id<B>(mut req: axum::http::Request<B>) -> axum::http::Request<B> {
    let usable = req.headers().get("x-request-id").is_some_and(|v| {
        let b = v.as_bytes();
        !b.is_empty()
            && b.len() <= MAX_REQUEST_ID
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'))
    });
    if !usable {
        req.headers_mut().remove("x-request-id");
    }
    req
}

async fn livez() -> Response {
    (
        StatusCode::OK,
        axum::Json(serde_json::json!({"status": "ok"})),
    )
        .into_response()
}

async fn readyz(State(state): State<AppState>) -> Response {
    let verdicts = state.readiness.check().await;
    let checks: serde_json::Map<String, serde_json::Value> = verdicts
        .iter()
        .map(|(name, v)| {
            (
                name.to_string(),
                if v.is_ok() { "ok" } else { "failing" }.into(),
            )
        })
        .collect();
    let failing: Vec<&str> = verdicts
        .iter()
        .filter_map(|(name, v)| v.as_ref().err().map(|e| (name, e)))
        .map(|(name, e)| {
            tracing::warn!(backend = name, error = %e, "readiness check failed");
            *name
        })
        .collect();
    if failing.is_empty() {
        (
            StatusCode::OK,
            axum::Json(serde_json::json!({"status": "ready", "checks": checks})),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({
                "error": format!("{} unavailable", failing.join(", ")),
                "checks": checks,
            })),
        )
            .into_response()
    }
}
