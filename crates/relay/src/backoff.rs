//! Retrying an unreachable service with exponential back-off, the one
//! policy used for PostgreSQL, Redis and S3 (`--connect-timeout-secs`,
//! `--backoff-max-ms`).

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

/// 100 ms, doubling up to `max`, for at most `within` in total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub within: Duration,
}

impl Backoff {
    pub fn new(max: Duration, within: Duration) -> Self {
        Self {
            initial: Duration::from_millis(100).min(max),
            max,
            within,
        }
    }

    /// Runs `attempt` until it succeeds, fails with an error `retryable`
    /// rejects, or the next pause would end past `within`.
    pub async fn retry<T, E, F, Fut>(
        &self,
        service: &str,
        retryable: impl Fn(&E) -> bool,
        mut attempt: F,
    ) -> Result<T, E>
    where
        E: Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let deadline = tokio::time::Instant::now() + self.within;
        let mut delay = self.initial;
        loop {
            match attempt().await {
                Ok(v) => return Ok(v),
                Err(e) if retryable(&e) && tokio::time::Instant::now() + delay < deadline => {
                    tracing::warn!(error = %e, retry_in = ?delay, "{service} not reachable yet");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.max);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn retries_until_success_or_deadline() {
        let policy = Backoff::new(Duration::from_millis(20), Duration::from_millis(300));
        let calls = AtomicU32::new(0);
        let ok: Result<u32, String> = policy
            .retry(
                "test",
                |_| true,
                || async {
                    match calls.fetch_add(1, Ordering::SeqCst) {
                        0..=2 => Err("down".to_string()),
                        n => Ok(n),
                    }
                },
            )
            .await;
        assert_eq!(ok, Ok(3));

        let calls = AtomicU32::new(0);
        let err: Result<(), String> = policy
            .retry(
                "test",
                |_| true,
                || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err("down".to_string())
                },
            )
            .await;
        assert!(err.is_err(), "gives up once the window is spent");
        // Pauses of 20 ms (the cap) fit several times into 300 ms.
        assert!(calls.load(Ordering::SeqCst) >= 3);

        let calls = AtomicU32::new(0);
        let fatal: Result<(), String> = policy
            .retry(
                "test",
                |_| false,
                || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err("bad password".to_string())
                },
            )
            .await;
        assert!(fatal.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1, "no retry of a fatal error");
    }
}
