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
use tokio::sync::{mpsc, oneshot};

use super::{Bucket, GovernorLimiter, RateLimiter, RetryAfter, retry_after_secs};
use crate::config::{Quota, RateLimits, RedisFailure};

/// GCRA over every key of the call, in order (a key named twice sees its
/// first update). KEYS[i] holds the bucket's "theoretical arrival time"
/// (ms); ARGV[2i-1], ARGV[2i]: its emission interval (ms per request) and
/// burst. Returns {allowed_1, wait_ms_1, allowed_2, wait_ms_2, …}.
const GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local out = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  local allow_at = tat - interval * (burst - 1)
  if allow_at > now then
    out[#out + 1] = 0
    out[#out + 1] = math.ceil(allow_at - now)
  else
    local new_tat = tat + interval
    redis.call('SET', key, string.format('%.3f', new_tat), 'PX', math.max(1, math.ceil(new_tat - now)))
    out[#out + 1] = 1
    out[#out + 1] = 0
  end
end
return out
"#;

/// Checks per script call, at most.
const MAX_CHECKS_PER_CALL: usize = 256;
/// Checks waiting for the batching task, at most; beyond, a check waits.
const QUEUE: usize = 4096;

/// One request's check, waiting for its batch: the verdict `(allowed,
/// wait_ms)`, or `None` when Redis did not answer.
struct Pending {
    key: String,
    quota: Quota,
    verdict: oneshot::Sender<Option<(i64, i64)>>,
}

pub struct RedisLimiter {
    checks: mpsc::Sender<Pending>,
    prefix: String,
    limits: RateLimits,
    on_failure: RedisFailure,
    /// Used when Redis fails and `on_failure` is `Local`.
    fallback: GovernorLimiter,
}

impl RedisLimiter {
    /// Spawns the task that sends the checks to Redis: whatever is waiting
    /// goes as ONE script call, one call in flight (like group commit, no
    /// added delay: a lone check waits for nothing but its own call). One
    /// `EVALSHA` per request cost Redis ~21 µs of CPU each, most of it the
    /// call, not the bucket.
    pub fn new(
        conn: ConnectionManager,
        prefix: &str,
        limits: RateLimits,
        on_failure: RedisFailure,
    ) -> Self {
        let (checks, queue) = mpsc::channel(QUEUE);
        tokio::spawn(send_checks(conn, queue));
        Self {
            checks,
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

async fn send_checks(mut conn: ConnectionManager, mut queue: mpsc::Receiver<Pending>) {
    let script = Script::new(GCRA);
    let mut batch = Vec::with_capacity(MAX_CHECKS_PER_CALL);
    while queue.recv_many(&mut batch, MAX_CHECKS_PER_CALL).await > 0 {
        let mut call = script.prepare_invoke();
        for check in &batch {
            call.key(&check.key)
                .arg(1000.0 / check.quota.per_sec)
                .arg(check.quota.burst);
        }
        let verdicts: redis::RedisResult<Vec<i64>> = call.invoke_async(&mut conn).await;
        let verdicts = match verdicts {
            Ok(v) if v.len() == 2 * batch.len() => Some(v),
            Ok(v) => {
                tracing::error!(
                    checks = batch.len(),
                    values = v.len(),
                    "rate-limit script answered the wrong number of values"
                );
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, checks = batch.len(), "shared rate limiter unavailable");
                None
            }
        };
        for (i, check) in batch.drain(..).enumerate() {
            let verdict = verdicts.as_ref().map(|v| (v[2 * i], v[2 * i + 1]));
            // The request may have gone meanwhile: nobody to tell.
            let _ = check.verdict.send(verdict);
        }
    }
}

#[async_trait]
impl RateLimiter for RedisLimiter {
    async fn check(&self, bucket: Bucket) -> Result<(), RetryAfter> {
        let (key, quota) = self.key_and_quota(&bucket);
        let (verdict, answer) = oneshot::channel();
        let pending = Pending {
            key,
            quota,
            verdict,
        };
        let verdict = match self.checks.send(pending).await {
            Ok(()) => answer.await.ok().flatten(),
            Err(_) => None,
        };
        match verdict {
            Some((1, _)) => Ok(()),
            Some((_, wait_ms)) => Err(RetryAfter(retry_after_secs(
                std::time::Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0)),
            ))),
            None => match self.on_failure {
                RedisFailure::Local => self.fallback.check(bucket).await,
                RedisFailure::Open => Ok(()),
                RedisFailure::Closed => Err(RetryAfter(1)),
            },
        }
    }

    fn housekeeping(&self) {
        // Redis expires idle buckets itself (PX); only the fallback needs it.
        self.fallback.housekeeping();
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::time::Duration;

    use uuid::Uuid;

    use super::*;
    use crate::backoff::Backoff;
    use crate::config::RedisSettings;

    /// A limiter on the test Redis under a fresh key prefix, or `None`
    /// (skip) when Redis is not reachable and `OBSCURA_REQUIRE_BACKENDS`
    /// is unset.
    async fn limiter(test: &str, quota: Quota) -> Option<RedisLimiter> {
        let settings = RedisSettings {
            url: std::env::var("OBSCURA_TEST_REDIS_URL")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
            backoff: Backoff::new(Duration::from_millis(50), Duration::from_millis(100)),
            key_prefix: format!("t-{}", Uuid::new_v4().simple()),
            timeout: Duration::from_secs(2),
            on_failure: RedisFailure::Closed,
        };
        match crate::redis_client::connect(&settings).await {
            Ok(conn) => Some(RedisLimiter::new(
                conn,
                &settings.key_prefix,
                RateLimits {
                    user: quota,
                    ip: quota,
                    auth: quota,
                },
                settings.on_failure,
            )),
            Err(e) if std::env::var("OBSCURA_REQUIRE_BACKENDS").is_ok_and(|v| v == "1") => {
                panic!("{test}: Redis required: {e:#}")
            }
            Err(e) => {
                use std::io::Write;
                let _ = writeln!(std::io::stderr(), "SKIPPED {test}: Redis: {e:#}");
                None
            }
        }
    }

    /// Checks sent together share one script call, in which a bucket can
    /// appear many times: each sees the updates before it, so a burst of 3
    /// admits exactly 3 of 40 concurrent requests, and other buckets (of
    /// the same call) are untouched.
    #[tokio::test]
    async fn concurrent_checks_of_one_bucket_share_its_burst_exactly() {
        let quota = Quota {
            per_sec: 0.01,
            burst: 3,
        };
        let Some(limiter) = limiter(
            "concurrent_checks_of_one_bucket_share_its_burst_exactly",
            quota,
        )
        .await
        else {
            return;
        };
        let limiter = std::sync::Arc::new(limiter);
        let user = Uuid::new_v4();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let checks: Vec<_> = (0..40)
            .map(|i| {
                let limiter = limiter.clone();
                let bucket = if i % 2 == 0 {
                    Bucket::User(user)
                } else {
                    Bucket::Ip(ip)
                };
                tokio::spawn(async move { (bucket, limiter.check(bucket).await) })
            })
            .collect();
        let mut allowed = std::collections::HashMap::new();
        for check in checks {
            let (bucket, verdict) = check.await.unwrap();
            match verdict {
                Ok(()) => *allowed.entry(bucket).or_insert(0) += 1,
                // 100 s per request: the next one is ~100 s away.
                Err(RetryAfter(secs)) => assert!((90..=101).contains(&secs), "{secs}"),
            }
        }
        assert_eq!(allowed.get(&Bucket::User(user)), Some(&3));
        assert_eq!(allowed.get(&Bucket::Ip(ip)), Some(&3));
        assert!(limiter.check(Bucket::Auth(ip)).await.is_ok());
    }
}
