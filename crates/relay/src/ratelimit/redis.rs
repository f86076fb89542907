//! [`RateLimiter`] shared by every node through Redis: one GCRA bucket per
//! key, updated atomically by a Lua script on Redis's clock, so N nodes
//! give a client the budget of one, not N times it.
//!
//! When Redis does not answer (within `--redis-timeout-ms`) the request is
//! judged by `--rate-limit-redis-failure`: `local` (this node's in-memory
//! buckets: limits stay, per node), `open` (allowed) or `closed` (429).

use async_trait::async_trait;
use redis::Script;
use redis::aio::ConnectionManager;

use super::{Bucket, GovernorLimiter, RateLimiter, RetryAfter, retry_after_secs};
use crate::config::{Quota, RateLimits, RedisFailure};

/// GCRA. KEYS[1] holds the bucket's "theoretical arrival time" (ms); ARGV:
/// emission interval (ms per request), burst. Returns {allowed, wait_ms}.
const GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local allow_at = tat - interval * (burst - 1)
if allow_at > now then
  return {0, math.ceil(allow_at - now)}
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.max(1, math.ceil(new_tat - now)))
return {1, 0}
"#;

pub struct RedisLimiter {
    conn: ConnectionManager,
    script: Script,
    prefix: String,
    limits: RateLimits,
    on_failure: RedisFailure,
    /// Used when Redis fails and `on_failure` is `Local`.
    fallback: GovernorLimiter,
}

impl RedisLimiter {
    pub fn new(
        conn: ConnectionManager,
        prefix: &str,
        limits: RateLimits,
        on_failure: RedisFailure,
    ) -> Self {
        Self {
            conn,
            script: Script::new(GCRA),
            prefix: prefix.to_string(),
            limits,
            on_failure,
            fallback: GovernorLimiter::new(limits),
        }
    }

    fn key_and_quota(&self, bucket: &Bucket) -> (String, Quota) {
        match bucket {
            Bucket::User(user) => (format!("{}:rl:user:{user}", self.prefix), self.limits.user),
            Bucket::Ip(ip) => (format!("{}:rl:ip:{ip}", self.prefix), self.limits.ip),
            Bucket::Auth(ip) => (format!("{}:rl:auth:{ip}", self.prefix), self.limits.auth),
        }
    }
}

#[async_trait]
impl RateLimiter for RedisLimiter {
    async fn check(&self, bucket: Bucket) -> Result<(), RetryAfter> {
        let (key, quota) = self.key_and_quota(&bucket);
        let interval_ms = 1000.0 / quota.per_sec;
        let mut conn = self.conn.clone();
        let verdict: redis::RedisResult<(i64, i64)> = self
            .script
            .key(key)
            .arg(interval_ms)
            .arg(quota.burst)
            .invoke_async(&mut conn)
            .await;
        match verdict {
            Ok((1, _)) => Ok(()),
            Ok((_, wait_ms)) => Err(RetryAfter(retry_after_secs(
                std::time::Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0)),
            ))),
            Err(e) => {
                tracing::warn!(error = %e, mode = ?self.on_failure, "shared rate limiter unavailable");
                match self.on_failure {
                    RedisFailure::Local => self.fallback.check(bucket).await,
                    RedisFailure::Open => Ok(()),
                    RedisFailure::Closed => Err(RetryAfter(1)),
                }
            }
        }
    }

    fn housekeeping(&self) {
        // Redis expires idle buckets itself (PX); only the fallback needs it.
        self.fallback.housekeeping();
    }
}
