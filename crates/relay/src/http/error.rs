//! The one error → HTTP mapping: status, `{"error": "…"}` body, and
//! `retry-after` on 429. Server faults are logged, never shown.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::Error;

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

/// A JSON error response with `status`.
pub fn json_error(status: StatusCode, message: &str) -> Response {
    (status, Json(ErrorBody { error: message })).into_response()
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match &self {
            Error::Invalid(msg) => json_error(StatusCode::BAD_REQUEST, msg),
            Error::Unauthorized => json_error(StatusCode::UNAUTHORIZED, "unauthorized"),
            Error::NotFound => json_error(StatusCode::NOT_FOUND, "not found"),
            Error::Conflict(msg) => json_error(StatusCode::CONFLICT, msg),
            Error::RateLimited { retry_after_secs } => {
                crate::metrics::rate_limited();
                let mut response = json_error(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded");
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
                response
            }
            Error::Store(e) => {
                tracing::error!(error = %e, "storage failure");
                json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal server error")
            }
            Error::Internal(e) => {
                tracing::error!(error = %e, "internal failure");
                json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal server error")
            }
        }
    }
}

pub async fn not_found() -> Response {
    json_error(StatusCode::NOT_FOUND, "not found")
}

pub async fn method_not_allowed() -> Response {
    json_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
}
