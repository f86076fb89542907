//! Request rate limits (GCRA token buckets), keyed per user or per client IP.
//!
//! The in-memory [`GovernorLimiter`] is exact on one node; a cluster
//! shares its buckets in Redis ([`redis::RedisLimiter`]).

pub mod redis;

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use async_trait::async_trait;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota as GovernorQuota, RateLimiter as Governor};
use uuid::Uuid;

use crate::config::{Quota, RateLimits};

/// Which bucket a request draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    /// Any authenticated request, by user.
    User(Uuid),
    /// Unauthenticated routes (key bundles, gateway handshake, token
    /// refresh), by client IP.
    Ip(IpAddr),
    /// Register / login, by client IP (stricter: each costs an Argon2id hash).
    Auth(IpAddr),
}

/// Denied: retry after this many whole seconds (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub u64);

#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    async fn check(&self, bucket: Bucket) -> Result<(), RetryAfter>;
    /// Forgets idle buckets so memory stays bounded by active clients.
    fn housekeeping(&self);
}

pub struct GovernorLimiter {
    user: DefaultKeyedRateLimiter<Uuid>,
    ip: DefaultKeyedRateLimiter<IpAddr>,
    auth: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
}

fn quota(q: Quota) -> GovernorQuota {
    // Config validation guarantees per_sec > 0 and burst >= 1.
    let period = Duration::from_secs_f64(1.0 / q.per_sec).max(Duration::from_nanos(1));
    let burst = NonZeroU32::new(q.burst).unwrap_or(NonZeroU32::MIN);
    GovernorQuota::with_period(period)
        .unwrap_or_else(|| GovernorQuota::per_second(NonZeroU32::MIN))
        .allow_burst(burst)
}

impl GovernorLimiter {
    pub fn new(limits: RateLimits) -> Self {
        Self {
            user: Governor::keyed(quota(limits.user)),
            ip: Governor::keyed(quota(limits.ip)),
            auth: Governor::keyed(quota(limits.auth)),
            clock: DefaultClock::default(),
        }
    }
}

/// Whole seconds, rounded up, never 0 (clients treat 0 as "now").
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[async_trait]
impl RateLimiter for GovernorLimiter {
    async fn check(&self, bucket: Bucket) -> Result<(), RetryAfter> {
        let result = match &bucket {
            Bucket::User(user) => self.user.check_key(user),
            Bucket::Ip(ip) => self.ip.check_key(ip),
            Bucket::Auth(ip) => self.auth.check_key(ip),
        };
        result.map_err(|not_until| {
            RetryAfter(retry_after_secs(not_until.wait_time_from(self.clock.now())))
        })
    }

    fn housekeeping(&self) {
        self.user.retain_recent();
        self.ip.retain_recent();
        self.auth.retain_recent();
        self.user.shrink_to_fit();
        self.ip.shrink_to_fit();
        self.auth.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(burst: u32) -> RateLimits {
        let q = Quota {
            per_sec: 0.5,
            burst,
        };
        RateLimits {
            user: q,
            ip: q,
            auth: q,
        }
    }

    #[tokio::test]
    async fn burst_then_denied_with_retry_after() {
        let limiter = GovernorLimiter::new(limits(3));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert!(limiter.check(Bucket::Auth(ip)).await.is_ok());
        }
        let RetryAfter(secs) = limiter.check(Bucket::Auth(ip)).await.unwrap_err();
        assert!((1..=2).contains(&secs), "{secs}");
        // Buckets are independent per key and per class.
        assert!(
            limiter
                .check(Bucket::Auth("192.0.2.2".parse().unwrap()))
                .await
                .is_ok()
        );
        assert!(limiter.check(Bucket::Ip(ip)).await.is_ok());
        assert!(limiter.check(Bucket::User(Uuid::new_v4())).await.is_ok());
    }

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
    }
}
