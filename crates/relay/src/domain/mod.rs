//! The relay's use cases, free of HTTP: handlers parse, call one method of
//! [`Relay`], and render. Pure validation rules live beside them as plain
//! functions (unit-tested).

pub mod accounts;
pub mod attachments;
pub mod keys;
pub mod messages;
pub mod push;
pub mod sessions;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::blobs::BlobStore;
use crate::config::Config;
use crate::fanout::Fanout;
use crate::ratelimit::RateLimiter;
use crate::store::Store;

pub use accounts::PasswordHasher;
pub use sessions::{AuthTokens, Tokens};

/// Everything a request needs, shared by all handlers and sessions.
pub struct Relay {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub blobs: Arc<dyn BlobStore>,
    pub fanout: Arc<dyn Fanout>,
    pub limiter: Arc<dyn RateLimiter>,
    /// Wake-up pushes for users without a live socket.
    pub push: Arc<crate::push::Wakeups>,
    pub tokens: Tokens,
    pub passwords: PasswordHasher,
    /// The store hands each committed message to the fan-out itself
    /// (`Signal::Message`), so `send_message` does not notify.
    pub commits_published: bool,
}

/// Seconds since the UNIX epoch.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Milliseconds since the UNIX epoch.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
