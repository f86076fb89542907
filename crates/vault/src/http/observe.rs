//! Per-request observability, as one middleware around every route:
//! * a request id — the client's `X-Request-Id` when it is a sane token,
//!   otherwise a new UUID — returned on every answer and recorded in a
//!   `request` span, so every log line of the request carries it;
//! * request count and latency by method and matched route (the route
//!   template, never the raw path: names in paths must not become series);
//! * vault operations and authentication steps by outcome, read from the
//!   answer (its status, and the [`ErrorOutcome`] an error leaves in it).

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use super::error::ErrorOutcome;
use super::routes;
use crate::telemetry;

const REQUEST_ID: &str = "x-request-id";
/// Longest client-chosen request id kept; longer ones are replaced.
const MAX_REQUEST_ID: usize = 128;

pub async fn observe(matched: Option<MatchedPath>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(req.headers());
    let method = method_label(req.method());
    let template = matched.as_ref().map(MatchedPath::as_str);
    let op = template.and_then(|t| Operation::of(req.method(), t));
    let route = template.map_or_else(|| "unmatched".into(), route_label);
    let span = tracing::info_span!(
        "request",
        request_id = %id.to_str().unwrap_or("-"),
        method,
        route = %route,
    );
    let mut resp = next.run(req).instrument(span.clone()).await;

    let status = resp.status();
    telemetry::http_request(method, route, status.as_u16(), started.elapsed());
    if let Some(op) = op {
        let outcome = if status.is_success() {
            op.success()
        } else {
            resp.extensions()
                .get::<ErrorOutcome>()
                .map_or("error", |o| o.0)
        };
        op.record(outcome);
    }
    span.in_scope(|| {
        tracing::debug!(
            status = status.as_u16(),
            took_ms = started.elapsed().as_millis() as u64,
            "request answered"
        );
    });
    resp.headers_mut().insert(REQUEST_ID, id);
    resp
}

/// A route template as a label: `/v2/vault/secrets/{name}` becomes
/// `/v2/vault/secrets/:name`. Braces are legal in Prometheus label values,
/// but several text-format parsers split samples on them.
fn route_label(template: &str) -> String {
    template.replace('{', ":").replace('}', "")
}

/// The client's id when it is 1–128 characters of `[A-Za-z0-9._:-]` (safe
/// in logs and headers), otherwise a new UUID.
fn request_id(headers: &HeaderMap) -> HeaderValue {
    let sane = |v: &&HeaderValue| {
        let b = v.as_bytes();
        !b.is_empty()
            && b.len() <= MAX_REQUEST_ID
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'))
    };
    match headers.get(REQUEST_ID).filter(sane) {
        Some(v) => v.clone(),
        None => {
            let mut buf = uuid::Uuid::encode_buffer();
            let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
            HeaderValue::from_str(id).unwrap_or(HeaderValue::from_static("-"))
        }
    }
}

/// Methods the API knows; anything else is `other` (clients choose methods).
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// What a request does, when it is a vault operation or an auth step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Push,
    Pull,
    Put,
    Get,
    Delete,
    List,
    Challenge,
    Session,
}

impl Operation {
    fn of(method: &Method, route: &str) -> Option<Self> {
        let secret = [
            routes::SECRET,
            routes::SECRET_EMPTY_NAME,
            routes::SECRET_NESTED_NAME,
            routes::SECRET_TRAILING_SLASH,
        ]
        .contains(&route);
        Some(match *method {
            Method::POST if route == routes::PUSH => Self::Push,
            Method::POST if route == routes::PULL => Self::Pull,
            Method::PUT if secret => Self::Put,
            Method::GET if secret => Self::Get,
            Method::DELETE if secret => Self::Delete,
            Method::GET if route == routes::SECRETS => Self::List,
            Method::POST if route == routes::V1_CHALLENGE || route == routes::V2_CHALLENGE => {
                Self::Challenge
            }
            Method::POST if route == routes::V1_SESSION || route == routes::V2_SESSION => {
                Self::Session
            }
            _ => return None,
        })
    }

    /// The outcome of a 2xx answer.
    fn success(self) -> &'static str {
        match self {
            Self::Push | Self::Put => "stored",
            Self::Pull | Self::Get => "found",
            Self::Delete => "deleted",
            Self::List => "listed",
            Self::Challenge | Self::Session => "issued",
        }
    }

    fn record(self, outcome: &'static str) {
        match self {
            Self::Push => telemetry::vault_op("push", outcome),
            Self::Pull => telemetry::vault_op("pull", outcome),
            Self::Put => telemetry::vault_op("put", outcome),
            Self::Get => telemetry::vault_op("get", outcome),
            Self::Delete => telemetry::vault_op("delete", outcome),
            Self::List => telemetry::vault_op("list", outcome),
            Self::Challenge => telemetry::auth("challenge", outcome),
            Self::Session => telemetry::auth("session", outcome),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_from_clients_are_kept_only_when_sane() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(REQUEST_ID, HeaderValue::from_str(v).unwrap());
            request_id(&h)
        };
        assert_eq!(with("abc-123.x_y:z"), "abc-123.x_y:z");
        for bad in ["", "a b", "x\"y", &"a".repeat(129)] {
            let id = with(bad);
            assert_ne!(id, bad);
            assert!(uuid::Uuid::parse_str(id.to_str().unwrap()).is_ok());
        }
        assert!(uuid::Uuid::parse_str(request_id(&HeaderMap::new()).to_str().unwrap()).is_ok());
    }

    #[test]
    fn operations_follow_method_and_route() {
        assert_eq!(
            Operation::of(&Method::PUT, routes::SECRET),
            Some(Operation::Put)
        );
        assert_eq!(
            Operation::of(&Method::GET, routes::SECRETS),
            Some(Operation::List)
        );
        assert_eq!(
            Operation::of(&Method::POST, routes::V2_SESSION),
            Some(Operation::Session)
        );
        assert_eq!(Operation::of(&Method::GET, routes::PUSH), None);
        assert_eq!(Operation::of(&Method::GET, routes::HEALTH), None);
    }

    #[test]
    fn route_labels_have_no_braces() {
        assert_eq!(route_label(routes::SECRET), "/v2/vault/secrets/:name");
        assert_eq!(route_label(routes::PUSH), routes::PUSH);
    }
}
