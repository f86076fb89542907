//! Background housekeeping: TTL clean-up of messages, attachments (rows,
//! then blobs) and expired refresh tokens, and forgetting idle rate-limit
//! buckets. Runs every `cleanup-interval-secs` until shutdown; in a
//! cluster only the node holding the `cleanup` [`lease::Lease`] cleans up.

pub mod lease;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::domain::{Relay, now_secs};

/// Attachments removed per store round trip.
const ATTACHMENT_BATCH: u32 = 500;

pub fn spawn_cleanup(
    relay: Arc<Relay>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let lease = lease::Lease::new("cleanup", relay.config.cleanup_interval * 3);
        let mut tick = tokio::time::interval(relay.config.cleanup_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    if lease.acquire(relay.store.as_ref()).await {
                        run_once(&relay).await;
                    } else {
                        // Rate-limit buckets are per node: always forget idle ones.
                        relay.limiter.housekeeping();
                    }
                }
            }
        }
    })
}

/// One clean-up pass. Errors are logged and retried on the next pass.
pub async fn run_once(relay: &Relay) {
    let now = now_secs();
    match relay.store.purge_expired(now).await {
        Ok(p) if p.messages + p.refresh_tokens > 0 => {
            tracing::info!(
                messages = p.messages,
                refresh_tokens = p.refresh_tokens,
                "expired rows deleted"
            );
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "message/refresh-token clean-up failed"),
    }
    loop {
        let expired = match relay.store.expired_attachments(now, ATTACHMENT_BATCH).await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(error = %e, "attachment clean-up failed");
                break;
            }
        };
        for id in &expired {
            // Blob first: a row without a blob is a 404, a blob without a row a leak.
            if let Err(e) = relay.blobs.delete(*id).await {
                tracing::warn!(%id, error = %e, "failed to delete attachment blob");
                continue;
            }
            if let Err(e) = relay.store.delete_attachment(*id).await {
                tracing::warn!(%id, error = %e, "failed to delete attachment row");
            }
        }
        if expired.len() < ATTACHMENT_BATCH as usize {
            break;
        }
    }
    relay.limiter.housekeeping();
}
