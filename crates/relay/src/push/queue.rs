//! The wake-up queue: when to push, and the worker that does it.
//!
//! Rules (each enforced by the store in one statement, so they hold across
//! nodes sharing a database):
//! - a message queued for a user without a live socket (and with a push
//!   token) schedules a job `delay` later; while a job is pending, further
//!   messages join it (one wake-up per burst);
//! - at most one wake-up per `throttle` per user: a job is never due earlier
//!   than `throttle` after the last one sent;
//! - connecting or acknowledging cancels the pending job (the app is awake);
//! - a worker claims due jobs with a lease (a crashed worker's jobs are
//!   claimed again when it expires; a live lease keeps other nodes off), so
//!   each wake-up is sent once, and the job rows make it survive restarts;
//! - "token invalid" deletes the token; transient failures retry with
//!   exponential back-off (or the provider's `Retry-After`) up to
//!   `max_attempts`.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rand::Rng;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::apns::ApnsConfig;
use super::fcm::FcmConfig;
use super::{Delivery, Providers, PushKind};
use crate::domain::now_millis;
use crate::fanout::Fanout;
use crate::metrics;
use crate::store::{PushJob, PushOutcome, Store};

/// Jobs claimed per store round trip.
const CLAIM_BATCH: u32 = 64;
/// Wake-ups sent concurrently by one worker.
const CONCURRENCY: usize = 16;
/// A claimed job is someone else's to retry after this long (≫ provider timeouts).
const LEASE: Duration = Duration::from_secs(60);
/// The worker looks at the table at least this often (other nodes' jobs,
/// expired leases); its own schedules wake it at once.
const POLL: Duration = Duration::from_secs(1);
/// First retry delay; doubles per attempt up to [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
pub struct PushConfig {
    /// Wait this long after a message before waking the device (a burst of
    /// messages then costs one push, and a device about to connect none).
    pub delay: Duration,
    /// At most one wake-up per user per this long.
    pub throttle: Duration,
    /// Give up on a wake-up after this many transient failures.
    pub max_attempts: u32,
    pub fcm: Option<FcmConfig>,
    pub apns: Option<ApnsConfig>,
    /// Accept `http://` and private/loopback UnifiedPush endpoints.
    pub unifiedpush_allow_private: bool,
}

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            delay: Duration::from_secs(2),
            throttle: Duration::from_secs(30),
            max_attempts: 8,
            fcm: None,
            apns: None,
            unifiedpush_allow_private: false,
        }
    }
}

/// The hooks the rest of the relay calls, and the worker's shared state.
pub struct Wakeups {
    store: Arc<dyn Store>,
    fanout: Arc<dyn Fanout>,
    config: PushConfig,
    /// Wakes the worker when this node scheduled a job.
    scheduled: Notify,
    /// Providers with credentials: tokens of other kinds get no jobs.
    kinds: Vec<&'static str>,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Wakeups {
    pub fn new(store: Arc<dyn Store>, fanout: Arc<dyn Fanout>, config: PushConfig) -> Self {
        let kinds = [
            (PushKind::Fcm, config.fcm.is_some()),
            (PushKind::Apns, config.apns.is_some()),
            (PushKind::UnifiedPush, true),
        ]
        .into_iter()
        .filter_map(|(kind, enabled)| enabled.then_some(kind.as_str()))
        .collect();
        Self {
            store,
            fanout,
            config,
            scheduled: Notify::new(),
            kinds,
        }
    }

    /// A message was durably queued for `user`. Failures are logged, not
    /// returned: the message is stored either way and the sender must not
    /// retry (and duplicate) it because a wake-up could not be scheduled.
    pub async fn message_queued(&self, user: Uuid) {
        if self.fanout.is_connected(user) {
            return;
        }
        let due = now_millis().saturating_add(millis(self.config.delay));
        match self
            .store
            .schedule_push(user, due, millis(self.config.throttle), &self.kinds)
            .await
        {
            Ok(true) => self.scheduled.notify_one(),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "could not schedule a wake-up"),
        }
    }

    /// The user connected (their app is awake): no wake-up needed.
    pub async fn session_started(&self, user: Uuid) {
        self.cancel(user).await;
    }

    /// The user acknowledged messages (possibly on another node).
    pub async fn acknowledged(&self, user: Uuid) {
        self.cancel(user).await;
    }

    async fn cancel(&self, user: Uuid) {
        if let Err(e) = self.store.cancel_push(user, now_millis()).await {
            tracing::warn!(error = %e, "could not cancel a wake-up");
        }
    }
}

/// Runs the worker until `shutdown`.
pub fn spawn_worker(
    wakeups: Arc<Wakeups>,
    providers: Providers,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let providers = Arc::new(providers);
    tokio::spawn(async move {
        loop {
            let claimed = run_once(&wakeups, &providers).await;
            if claimed >= CLAIM_BATCH as usize {
                continue;
            }
            let wait = match wakeups.store.next_push_due().await {
                Ok(Some(due)) => {
                    let ms = due.saturating_sub(now_millis()).max(0);
                    Duration::from_millis(u64::try_from(ms).unwrap_or(0)).min(POLL)
                }
                Ok(None) => POLL,
                Err(e) => {
                    tracing::warn!(error = %e, "wake-up queue unavailable");
                    POLL
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = wakeups.scheduled.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    })
}

/// Claims the due jobs and sends them; returns how many were claimed.
pub async fn run_once(wakeups: &Wakeups, providers: &Providers) -> usize {
    let now = now_millis();
    let claim = Uuid::new_v4();
    let jobs = match wakeups
        .store
        .claim_pushes(claim, now, now.saturating_add(millis(LEASE)), CLAIM_BATCH)
        .await
    {
        Ok(jobs) => jobs,
        Err(e) => {
            tracing::warn!(error = %e, "could not claim wake-ups");
            return 0;
        }
    };
    let claimed = jobs.len();
    futures::stream::iter(jobs)
        .for_each_concurrent(CONCURRENCY, |job| async move {
            let outcome = deliver(wakeups, providers, &job).await;
            if let Err(e) = wakeups.store.finish_push(&job, outcome, now_millis()).await {
                // The lease runs out and the job is tried again.
                tracing::warn!(error = %e, "could not record a wake-up outcome");
            }
        })
        .await;
    claimed
}

/// Sends one job's wake-up and decides what becomes of the job.
async fn deliver(wakeups: &Wakeups, providers: &Providers, job: &PushJob) -> PushOutcome {
    let Some(target) = &job.target else {
        metrics::push("none", "no_token");
        return PushOutcome::Done;
    };
    let kind = PushKind::from_stored(target.kind.as_deref());
    if wakeups.fanout.is_connected(job.user) {
        metrics::push(kind.as_str(), "connected");
        return PushOutcome::Done;
    }
    let delivery = providers.send(kind, &target.token).await;
    metrics::push(kind.as_str(), delivery.outcome());
    // Logged without the token or user: the provider and outcome suffice.
    match delivery {
        Delivery::Sent => PushOutcome::Sent,
        Delivery::InvalidToken => {
            tracing::info!(
                provider = kind.as_str(),
                "push token refused by the provider; deleted"
            );
            PushOutcome::InvalidToken
        }
        Delivery::Retry { after } => {
            let attempts = job.attempts.saturating_add(1);
            if attempts >= wakeups.config.max_attempts {
                tracing::warn!(
                    provider = kind.as_str(),
                    attempts,
                    "wake-up abandoned after repeated transient failures"
                );
                return PushOutcome::Done;
            }
            let wait = after.unwrap_or_else(|| backoff(job.attempts));
            PushOutcome::Retry {
                at_ms: now_millis().saturating_add(millis(wait)),
            }
        }
        Delivery::Failed(reason) => {
            tracing::warn!(provider = kind.as_str(), %reason, "wake-up not deliverable");
            PushOutcome::Done
        }
    }
}

/// `BASE_BACKOFF · 2^attempts`, capped, with ±25 % jitter so that a provider
/// outage does not end in a synchronized stampede.
pub fn backoff(attempts: u32) -> Duration {
    let exp = BASE_BACKOFF.saturating_mul(1u32 << attempts.min(16));
    let capped = exp.min(MAX_BACKOFF);
    let jitter = rand::thread_rng().gen_range(0.75..1.25);
    capped.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_and_is_capped() {
        assert!(backoff(0) <= Duration::from_millis(1250));
        assert!(backoff(3) >= Duration::from_secs(6));
        assert!(backoff(3) <= Duration::from_secs(10));
        assert!(backoff(40) <= MAX_BACKOFF.mul_f64(1.25));
    }
}
