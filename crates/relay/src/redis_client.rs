//! Connections to Redis, shared by the cross-node fan-out and the shared
//! rate limiter: a `ConnectionManager` reconnects by itself with
//! exponential back-off (up to `--backoff-max-ms`), and commands time out
//! after `--redis-timeout-ms`.

use std::time::Duration;

use anyhow::Context;
use redis::aio::{AsyncPushSender, ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, ProtocolVersion};

use crate::config::RedisSettings;

fn config(settings: &RedisSettings) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_response_timeout(Some(settings.timeout))
        .set_connection_timeout(Some(settings.timeout))
        .set_min_delay(Duration::from_millis(50).min(settings.backoff.max))
        .set_max_delay(settings.backoff.max)
}

/// A command connection; start-up retries as `settings.backoff` says.
pub async fn connect(settings: &RedisSettings) -> anyhow::Result<ConnectionManager> {
    let client = redis::Client::open(settings.url.as_str()).context("invalid --redis-url")?;
    retry(settings, || {
        ConnectionManager::new_with_config(client.clone(), config(settings))
    })
    .await
}

/// A RESP3 connection whose pub/sub messages go to `push`; it re-subscribes
/// to its channels by itself after a reconnect.
pub async fn connect_pubsub(
    settings: &RedisSettings,
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
    retry(settings, || {
        ConnectionManager::new_with_config(
            client.clone(),
            config(settings)
                .set_push_sender(push.clone())
                .set_automatic_resubscription(),
        )
    })
    .await
}

async fn retry<F, Fut>(settings: &RedisSettings, connect: F) -> anyhow::Result<ConnectionManager>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = redis::RedisResult<ConnectionManager>>,
{
    settings
        .backoff
        .retry("Redis", |_: &redis::RedisError| true, connect)
        .await
        .context("connecting to Redis (--redis-url)")
}
