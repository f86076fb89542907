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

/// An error answered while the request body may still be (partly) unread.
/// The connection cannot carry another request then, so the response says
/// `Connection: close` and keep-alive clients do not reuse it.
pub struct UnreadBody(pub Error);

impl From<Error> for UnreadBody {
    fn from(error: Error) -> Self {
        UnreadBody(error)
    }
}

impl IntoResponse for UnreadBody {
    fn into_response(self) -> Response {
        let mut response = self.0.into_response();
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        response
    }
}

pub async fn not_found() -> Response {
    json_error(StatusCode::NOT_FOUND, "not found")
}

pub async fn method_not_allowed() -> Response {
    json_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
}
