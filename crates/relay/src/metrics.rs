//! Prometheus metrics: every series the relay exports is named here, and
//! the rest of the crate records through these functions (so names and
//! labels cannot drift apart). The `metrics` facade records; the exporter's
//! recorder renders the text format on `GET /metrics` (management port).
//!
//! Labels are bounded: HTTP series use the matched route template
//! (`/v1/keys/:user_id`, never the raw path, which carries user ids), method and status; push series
//! use provider × outcome. No series is labelled with a user or token.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ::metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

pub const HTTP_REQUESTS: &str = "obscura_relay_http_requests_total";
pub const HTTP_DURATION: &str = "obscura_relay_http_request_duration_seconds";
pub const WEBSOCKETS: &str = "obscura_relay_websockets";
pub const QUEUED_MESSAGES: &str = "obscura_relay_queued_messages";
pub const MESSAGES_ENQUEUED: &str = "obscura_relay_messages_enqueued_total";
pub const DELIVERIES: &str = "obscura_relay_deliveries_total";
pub const ACK_BATCHES: &str = "obscura_relay_ack_batches_total";
pub const ACKED_MESSAGES: &str = "obscura_relay_acked_messages_total";
pub const PUSHES: &str = "obscura_relay_pushes_total";
pub const RATE_LIMITED: &str = "obscura_relay_rate_limited_total";
pub const GROUP_COMMITS: &str = "obscura_relay_group_commits_total";
pub const GROUP_COMMIT_WRITES: &str = "obscura_relay_group_commit_writes_total";

/// Latency buckets (seconds): sub-millisecond reads to multi-second uploads.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Histograms are folded into their exported form this often.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide recorder's handle, installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.into()), LATENCY_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if ::metrics::set_global_recorder(recorder).is_err() {
            // Another component of this process installed one first; its
            // handle is not reachable from here, so this one stays empty.
            tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
        }
        describe();
        handle
    })
}

fn describe() {
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests by method, matched route and status."
    );
    describe_histogram!(
        HTTP_DURATION,
        ::metrics::Unit::Seconds,
        "HTTP request latency by method and matched route (until the response head)."
    );
    describe_gauge!(WEBSOCKETS, "Live gateway WebSockets on this node.");
    describe_gauge!(
        QUEUED_MESSAGES,
        "Messages stored and not yet acknowledged (all users)."
    );
    describe_counter!(MESSAGES_ENQUEUED, "Messages accepted by POST /v1/messages.");
    describe_counter!(DELIVERIES, "Envelopes sent over gateway WebSockets.");
    describe_counter!(ACK_BATCHES, "Acknowledgement batches flushed to the store.");
    describe_counter!(
        ACKED_MESSAGES,
        "Message ids acknowledged (in flushed batches)."
    );
    describe_counter!(PUSHES, "Wake-up pushes by provider and outcome.");
    describe_counter!(RATE_LIMITED, "Requests refused with 429.");
    describe_counter!(
        GROUP_COMMITS,
        "Message-path transactions (enqueues and ACK deletes grouped per commit)."
    );
    describe_counter!(
        GROUP_COMMIT_WRITES,
        "Writes applied by group commits (÷ commits = mean batch size)."
    );
}

/// Runs the exporter's periodic upkeep (histogram maintenance) until shutdown.
pub fn spawn_upkeep(shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
    let handle = handle();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => handle.run_upkeep(),
            }
        }
    })
}

/// Middleware: counts and times every request by its matched route. Added
/// with `Router::layer`, so it runs after routing and sees [`MatchedPath`].
pub async fn track_http(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| route_label(p.as_str()))
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    counter!(HTTP_REQUESTS, "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    histogram!(HTTP_DURATION, "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// `/v1/keys/{user_id}` → `/v1/keys/:user_id`: braces inside label values
/// are legal but trip up line-oriented parsers and grep.
fn route_label(template: &str) -> String {
    template.replace('{', ":").replace('}', "")
}

/// Known methods by name; anything else collapses into one label value.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// Sets the gauges that are sampled rather than counted (at scrape time).
pub fn set_levels(websockets: usize, queued_messages: Option<u64>) {
    gauge!(WEBSOCKETS).set(websockets as f64);
    if let Some(queued) = queued_messages {
        gauge!(QUEUED_MESSAGES).set(queued as f64);
    }
}

pub fn message_enqueued() {
    counter!(MESSAGES_ENQUEUED).increment(1);
}

pub fn delivered(envelopes: usize) {
    if envelopes > 0 {
        counter!(DELIVERIES).increment(envelopes as u64);
    }
}

pub fn ack_batch(ids: usize) {
    counter!(ACK_BATCHES).increment(1);
    counter!(ACKED_MESSAGES).increment(ids as u64);
}

pub fn push(provider: &'static str, outcome: &'static str) {
    counter!(PUSHES, "provider" => provider, "outcome" => outcome).increment(1);
}

pub fn group_commit(writes: usize) {
    counter!(GROUP_COMMITS).increment(1);
    counter!(GROUP_COMMIT_WRITES).increment(writes as u64);
}

pub fn rate_limited() {
    counter!(RATE_LIMITED).increment(1);
}
