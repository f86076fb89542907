//! The relay's one error type. Domain code returns it; `http::error` maps it
//! to a status and a `{"error": …}` body (the only place that does).

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed or violates a rule (400).
    #[error("{0}")]
    Invalid(String),
    /// Missing, invalid or expired credentials (401).
    #[error("unauthorized")]
    Unauthorized,
    /// The addressed resource does not exist (404).
    #[error("not found")]
    NotFound,
    /// The request conflicts with stored state, e.g. a taken username (409).
    #[error("{0}")]
    Conflict(String),
    /// Too many requests; retry after this many whole seconds (429).
    #[error("rate limit exceeded")]
    RateLimited { retry_after_secs: u64 },
    /// The storage backend failed (500, details only in the log).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Anything else that is the server's fault (500, details only in the log).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
