//! What the guardian tells its operator: Prometheus metrics (recorded
//! through the `metrics` facade, rendered by `metrics-exporter-prometheus` on
//! the management listener) and log setup.
//!
//! Every series is named and described here, so the list in
//! `docs/operations.md` has one source. Label values are always from fixed
//! sets (never a raw path, method or identity), so a client cannot grow
//! the number of series. Nothing secret (shares, tokens, nonces) is ever a
//! label or a log field.

use std::time::Duration;

use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::cli::LogFormat;
use crate::cluster::{PeerState, PeerStatus};

/// HTTP requests by `method`, matched `route` and `status`.
pub const HTTP_REQUESTS: &str = "obscura_guardian_http_requests_total";
/// Time to answer (response headers ready), by `method` and `route`.
pub const HTTP_DURATION: &str = "obscura_guardian_http_request_duration_seconds";
/// Vault operations by `op` and `outcome`.
pub const VAULT_OPS: &str = "obscura_guardian_vault_operations_total";
/// Authentication steps by `step` and `outcome`.
pub const AUTH: &str = "obscura_guardian_auth_total";
/// Requests refused by a rate limit, by `scope` (`ip`, `identity`).
pub const RATE_LIMITED: &str = "obscura_guardian_rate_limited_total";
/// Configured peers by liveness `state`.
pub const PEERS: &str = "obscura_guardian_peers";
/// Heartbeats sent to peers, by `outcome` (`acked`, `missed`).
pub const HEARTBEATS: &str = "obscura_guardian_heartbeats_total";
/// Identities holding a V1 share.
pub const SHARES: &str = "obscura_guardian_stored_shares";

/// Latency buckets (seconds): sub-millisecond reads up to slow fsyncs.
const DURATION_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Installs the process-wide recorder and describes every series. Called
/// once, when the management listener is configured; without it the
/// `metrics` macros are no-ops.
pub fn install_recorder() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.into()), &DURATION_BUCKETS)?
        .install_recorder()?;
    describe_counter!(
        HTTP_REQUESTS,
        Unit::Count,
        "HTTP requests answered, by method, route and status"
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "Time to answer an HTTP request, by method and route"
    );
    describe_counter!(
        VAULT_OPS,
        Unit::Count,
        "Vault operations (push, pull, put, get, delete, list) by outcome"
    );
    describe_counter!(
        AUTH,
        Unit::Count,
        "Authentication steps (challenge, session, token, bearer) by outcome"
    );
    describe_counter!(
        RATE_LIMITED,
        Unit::Count,
        "Requests refused by a rate limit, by scope"
    );
    describe_gauge!(PEERS, Unit::Count, "Configured peers by liveness state");
    describe_counter!(
        HEARTBEATS,
        Unit::Count,
        "Heartbeats sent to peers, by outcome"
    );
    describe_gauge!(SHARES, Unit::Count, "Identities holding a V1 share");
    Ok(handle)
}

/// How often histogram samples are folded into the exported buckets.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// An HTTP request answered. `route` is the matched route template.
pub fn http_request(method: &'static str, route: String, status: u16, took: Duration) {
    metrics::histogram!(HTTP_DURATION, "method" => method, "route" => route.clone())
        .record(took.as_secs_f64());
    counter!(HTTP_REQUESTS, "method" => method, "route" => route, "status" => status.to_string())
        .increment(1);
}

/// A vault operation and how it ended.
pub fn vault_op(op: &'static str, outcome: &'static str) {
    counter!(VAULT_OPS, "op" => op, "outcome" => outcome).increment(1);
}

/// An authentication step and how it ended.
pub fn auth(step: &'static str, outcome: &'static str) {
    counter!(AUTH, "step" => step, "outcome" => outcome).increment(1);
}

pub fn rate_limited(scope: &'static str) {
    counter!(RATE_LIMITED, "scope" => scope).increment(1);
}

pub fn heartbeat(acked: bool) {
    let outcome = if acked { "acked" } else { "missed" };
    counter!(HEARTBEATS, "outcome" => outcome).increment(1);
}

/// Point-in-time gauges, refreshed before each scrape: peers per state
/// (every state present, zeros included) and stored shares.
pub fn refresh_gauges(peers: &[PeerStatus], shares: u64) {
    for state in [
        PeerState::Unknown,
        PeerState::Alive,
        PeerState::Suspect,
        PeerState::Dead,
    ] {
        let n = peers.iter().filter(|p| p.state == state).count();
        gauge!(PEERS, "state" => state.as_str()).set(n as f64);
    }
    gauge!(SHARES).set(shares as f64);
}

/// Process-wide log subscriber: level filter from `OBSCURA_LOG` (default
/// `info`), lines on stderr as text or JSON. Spans (the request span with
/// its `request_id`) are part of every line.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OBSCURA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}
