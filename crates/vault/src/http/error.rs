//! The one error type of the HTTP API and its mapping to
//! `{"error":"…"}` with the exact statuses and strings of the API contract.

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::auth::AuthError;
use crate::identity::{IdentityError, InvalidSecretName};
use crate::storage::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("empty body")]
    EmptyBody,
    #[error("request body too large")]
    BodyTooLarge,
    #[error("request body timeout")]
    BodyTimeout,
    /// `missing identity field`, `missing share field`, `missing nonce field`…
    #[error("missing {0} field")]
    MissingField(&'static str),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("invalid base64 in share")]
    InvalidBase64,
    #[error("share data too large")]
    ShareTooLarge,
    #[error("share data is empty")]
    ShareEmpty,
    #[error("missing or invalid version field")]
    InvalidVersion,
    #[error("version must be greater than current stored version")]
    VersionNotGreater,
    #[error("invalid secret name")]
    InvalidSecretName,
    #[error("missing session token")]
    MissingSession,
    #[error("invalid session token")]
    InvalidSession,
    #[error("invalid challenge")]
    InvalidChallenge,
    #[error("challenge expired")]
    ChallengeExpired,
    #[error("share not found")]
    ShareNotFound,
    #[error("secret not found")]
    SecretNotFound,
    #[error("not found")]
    RouteNotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("too many secrets")]
    TooManySecrets,
    #[error("rate limit exceeded")]
    RateLimited { limit: u32 },
    #[error("internal server error")]
    Internal,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            EmptyBody | BodyTooLarge | MissingField(_) | Identity(_) | InvalidBase64
            | ShareTooLarge | ShareEmpty | InvalidVersion | VersionNotGreater
            | InvalidSecretName => StatusCode::BAD_REQUEST,
            BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            MissingSession | InvalidSession | InvalidChallenge | ChallengeExpired => {
                StatusCode::UNAUTHORIZED
            }
            ShareNotFound | SecretNotFound | RouteNotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            TooManySecrets => StatusCode::CONFLICT,
            RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// How an operation refused with this error ended, for metrics: a small
    /// fixed vocabulary, coarser than the messages.
    pub fn outcome(&self) -> &'static str {
        use ApiError::*;
        match self {
            EmptyBody | BodyTooLarge | MissingField(_) | Identity(_) | InvalidBase64
            | ShareTooLarge | ShareEmpty | InvalidVersion | InvalidSecretName
            | MethodNotAllowed => "rejected",
            VersionNotGreater => "stale_version",
            TooManySecrets => "too_many_secrets",
            BodyTimeout => "timeout",
            MissingSession | InvalidSession => "unauthenticated",
            InvalidChallenge => "invalid",
            ChallengeExpired => "expired",
            ShareNotFound | SecretNotFound | RouteNotFound => "not_found",
            RateLimited { .. } => "rate_limited",
            Internal => "error",
        }
    }
}

/// An error answer's [`ApiError::outcome`], carried in the response's
/// extensions to the metrics middleware.
#[derive(Debug, Clone, Copy)]
pub struct ErrorOutcome(pub &'static str);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status(),
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response();
        resp.extensions_mut().insert(ErrorOutcome(self.outcome()));
        if let ApiError::RateLimited { limit } = self {
            let h = resp.headers_mut();
            h.insert("x-ratelimit-limit", HeaderValue::from(limit));
            h.insert("x-ratelimit-remaining", HeaderValue::from(0u32));
        }
        resp
    }
}

impl From<InvalidSecretName> for ApiError {
    fn from(_: InvalidSecretName) -> Self {
        Self::InvalidSecretName
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::InvalidChallenge => Self::InvalidChallenge,
            AuthError::ChallengeExpired => Self::ChallengeExpired,
            AuthError::InvalidSession => Self::InvalidSession,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::VersionNotGreater { .. } => Self::VersionNotGreater,
            StoreError::TooManySecrets => Self::TooManySecrets,
            StoreError::Corrupt(path) => {
                tracing::error!(path = %path.display(), "integrity check failed: stored record not served");
                Self::Internal
            }
            e @ (StoreError::Io { .. } | StoreError::Task(_)) => {
                tracing::error!(error = %e, "storage failure");
                Self::Internal
            }
        }
    }
}
