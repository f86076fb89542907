//! The safety net for lost cross-node signals: every poll interval, one
//! task per node asks the store which of its live sessions have a message
//! past their cursor, and wakes only those.
//!
//! Why per node and not per session: a cluster node holds tens of thousands
//! of mostly idle sessions. Each re-reading its own queue every interval
//! cost 17–28 % of a core per node at 16,667 idle sessions and slowed new
//! handshakes (docs/performance.md); one batched existence check per 1,000
//! sessions does the same job. The guarantee is unchanged: a message whose
//! signal was lost is delivered within about one interval.

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::domain::Relay;
use crate::fanout::Signal;
use crate::store::PENDING_CHECK_USERS;

/// Starts the poller if the fan-out can lose signals (`None` otherwise).
pub fn spawn(relay: Arc<Relay>, shutdown: CancellationToken) -> Option<JoinHandle<()>> {
    let every = relay.fanout.poll_interval()?;
    Some(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.reset();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticks.tick() => wake_sessions_behind(&relay).await,
            }
        }
    }))
}

/// Wakes every live session of this node that has a message past its cursor.
async fn wake_sessions_behind(relay: &Relay) {
    let cursors = relay.fanout.cursors();
    for chunk in cursors.chunks(PENDING_CHECK_USERS) {
        match relay.store.users_with_pending(chunk).await {
            // A session that has read meanwhile gets a needless wake-up,
            // which costs it one read.
            Ok(users) => {
                for user in users {
                    relay.fanout.notify(user, Signal::Messages);
                }
            }
            Err(e) => tracing::warn!(error = %e, "delivery poll failed; retrying next interval"),
        }
    }
}
