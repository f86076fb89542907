//! Connections to Redis, shared by the cross-node fan-out and the shared
//! rate limiter: a `ConnectionManager` reconnects by itself with
//! exponential back-off, and commands time out after `--redis-timeout-ms`.

use std::time::Duration;

use anyhow::Context;
use redis::aio::{AsyncPushSender, ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, ProtocolVersion};

use crate::config::RedisSettings;

/// Longest pause between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

fn config(settings: &RedisSettings) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_response_timeout(Some(settings.timeout))
        .set_connection_timeout(Some(settings.timeout))
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(MAX_BACKOFF)
}

/// A command connection; start-up retries for up to `within`.
pub async fn connect(
    settings: &RedisSettings,
    within: Duration,
) -> anyhow::Result<ConnectionManager> {
    let client = redis::Client::open(settings.url.as_str()).context("invalid --redis-url")?;
    retry(within, || {
        ConnectionManager::new_with_config(client.clone(), config(settings))
    })
    .await
}

/// A RESP3 connection whose pub/sub messages go to `push`; it re-subscribes
/// to its channels by itself after a reconnect.
pub async fn connect_pubsub(
    settings: &RedisSettings,
    within: Duration,
    push: impl AsyncPushSender + Clone,
) -> anyhow::Result<ConnectionManager> {
    let info = settings
        .url
        .as_str()
        .into_connection_info()
        .context("invalid --redis-url")?;
    let resp3 = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    let client = redis::Client::open(info.set_redis_settings(resp3))?;
    retry(within, || {
        ConnectionManager::new_with_config(
            client.clone(),
            config(settings)
                .set_push_sender(push.clone())
                .set_automatic_resubscription(),
        )
    })
    .await
}

async fn retry<F, Fut>(within: Duration, mut connect: F) -> anyhow::Result<ConnectionManager>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = redis::RedisResult<ConnectionManager>>,
{
    let deadline = tokio::time::Instant::now() + within;
    let mut delay = Duration::from_millis(100);
    loop {
        match connect().await {
            Ok(conn) => return Ok(conn),
            Err(e) if tokio::time::Instant::now() + delay < deadline => {
                tracing::warn!(error = %e, "Redis not reachable yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_BACKOFF);
            }
            Err(e) => return Err(e).context("connecting to Redis (--redis-url)"),
        }
    }
}
