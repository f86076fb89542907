//! `GET /metrics` (management port): Prometheus text exposition.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::metrics;

pub async fn scrape(State(state): State<AppState>) -> Response {
    // Levels are sampled now rather than tracked on every change.
    let queued = match state.relay.store.queued_message_count().await {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!(error = %e, "could not count queued messages");
            None
        }
    };
    metrics::set_levels(state.relay.fanout.connected(), queued);
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        metrics::handle().render(),
    )
        .into_response()
}
