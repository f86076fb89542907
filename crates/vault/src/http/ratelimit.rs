//! Rate limits per client IP (a layer on push/pull/auth/secrets) and per
//! identity (checked by the handlers once the identity is known).

use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::DefaultClock;
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use super::AppState;
use super::error::ApiError;
use crate::config::RateLimit;
use crate::identity::Identity;
use crate::telemetry;

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock, StateInformationMiddleware>;

/// One keyed GCRA limiter and the burst it advertises as `X-RateLimit-Limit`.
pub struct Limiter<K: Hash + Eq + Clone> {
    inner: Keyed<K>,
    burst: u32,
    /// What is limited (`ip`, `identity`), for metrics.
    scope: &'static str,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    fn new(limit: RateLimit, scope: &'static str) -> Self {
        let per_min = NonZeroU32::new(limit.per_min).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(limit.burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_minute(per_min).allow_burst(burst);
        Self {
            inner: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            burst: burst.get(),
            scope,
        }
    }

    /// `Ok(remaining)` or the 429 error.
    fn check(&self, key: &K) -> Result<u32, ApiError> {
        match self.inner.check_key(key) {
            Ok(snapshot) => Ok(snapshot.remaining_burst_capacity()),
            Err(_) => {
                telemetry::rate_limited(self.scope);
                Err(ApiError::RateLimited { limit: self.burst })
            }
        }
    }
}

/// All limiters of the guardian; a `None` limiter is disabled.
pub struct RateLimits {
    ip: Option<Limiter<IpAddr>>,
    identity: Option<Limiter<Identity>>,
}

impl RateLimits {
    pub fn new(ip: Option<RateLimit>, identity: Option<RateLimit>) -> Self {
        Self {
            ip: ip.map(|l| Limiter::new(l, "ip")),
            identity: identity.map(|l| Limiter::new(l, "identity")),
        }
    }

    pub fn check_identity(&self, id: &Identity) -> Result<(), ApiError> {
        self.identity
            .as_ref()
            .map_or(Ok(()), |l| l.check(id).map(drop))
    }

    /// Forgets idle keys so the maps do not grow without bound.
    pub fn retain_recent(&self) {
        if let Some(l) = &self.ip {
            l.inner.retain_recent();
            l.inner.shrink_to_fit();
        }
        if let Some(l) = &self.identity {
            l.inner.retain_recent();
            l.inner.shrink_to_fit();
        }
    }
}

/// Per-IP limit as a middleware; adds `X-RateLimit-*` headers to answers.
pub async fn per_ip(
    State(state): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let Some(limiter) = &state.limits.ip else {
        return next.run(req).await;
    };
    match limiter.check(&remote.ip()) {
        Ok(remaining) => {
            let mut resp = next.run(req).await;
            let h = resp.headers_mut();
            h.entry("x-ratelimit-limit")
                .or_insert(HeaderValue::from(limiter.burst));
            h.entry("x-ratelimit-remaining")
                .or_insert(HeaderValue::from(remaining));
            resp
        }
        Err(e) => e.into_response(),
    }
}
