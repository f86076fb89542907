//! "Who is connected where": tells a user's live gateway session that it
//! has new messages, that its pre-keys run low, or that it must close.
//!
//! The store stays the source of truth; a signal only says "look now", so a
//! lost signal delays delivery until the next one or the next connection but
//! never loses a message. The in-process registry is [`local::LocalFanout`];
//! a cluster needs an implementation that relays the same calls over a
//! pub/sub bus (Redis), which is why the interface is fire-and-forget.

pub mod local;
pub mod redis;
pub mod signals;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use local::LocalFanout;
pub use redis::RedisFanout;

/// Something a live session should react to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// New messages are queued: read the store past your cursor.
    Messages,
    /// This message was just committed by this node's store writer: a
    /// session that has sent everything up to its `prev_seq` may send it
    /// without reading the store (otherwise it reads, as for `Messages`).
    Message(std::sync::Arc<crate::store::group_commit::Committed>),
    /// The one-time pre-key count just fell below the threshold.
    PreKeysLow { remaining: u32 },
}

/// Why a session is told to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// A newer connection of the same user took over.
    Replaced,
    /// Device takeover: the identity changed, queued messages are gone.
    Takeover,
}

/// A session's registration. Dropping it unregisters the session and tells
/// a successor (one that replaced it) that it has finished.
pub struct Subscription {
    pub signals: signals::SignalReceiver,
    /// Cancelled when the session must close; the reason is in `close_reason`.
    pub close: CancellationToken,
    pub close_reason: std::sync::Arc<std::sync::Mutex<Option<CloseReason>>>,
    /// The replaced session's "finished" token: wait for it (bounded) before
    /// delivering, so its pending ACK deletes land first.
    pub predecessor_done: Option<CancellationToken>,
    /// Set when a signal for this session was dropped (its queue was full):
    /// the `Message` signals it holds are then incomplete.
    pub lagged: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The session's cursor (the highest `seq` it has sent), kept up to
    /// date by the session for the node's safety-net poll.
    pub cursor: std::sync::Arc<std::sync::atomic::AtomicI64>,
    pub(crate) _guard: Box<dyn Send + Sync>,
}

impl Subscription {
    /// Whether a signal was dropped since the last call.
    pub fn take_lagged(&self) -> bool {
        self.lagged.swap(false, std::sync::atomic::Ordering::AcqRel)
    }

    pub fn close_reason(&self) -> Option<CloseReason> {
        self.close_reason.lock().map(|r| *r).unwrap_or(None)
    }
}

pub trait Fanout: Send + Sync + 'static {
    /// Registers a live session of the user beside the others (up to a
    /// per-user limit, past which the oldest is replaced; across nodes, a
    /// user's sessions live on one node).
    fn subscribe(&self, user: Uuid) -> Subscription;
    /// Wakes the user's sessions, wherever they are. Never blocks.
    fn notify(&self, user: Uuid, signal: Signal);
    /// Closes the user's sessions, wherever they are.
    fn disconnect(&self, user: Uuid, reason: CloseReason);
    /// Number of live sessions on this node.
    fn connected(&self) -> usize;
    /// Whether `user` has a live session (wake-ups are only for users
    /// without one). The default, "unknown", counts as offline: the pending
    /// wake-up is then cancelled by the user's connect or ACK instead.
    fn is_connected(&self, _user: Uuid) -> bool {
        false
    }
    /// How often the node checks the store for messages its live sessions
    /// have not been told of, when signals can be lost (a network between
    /// nodes); `None` when they cannot.
    fn poll_interval(&self) -> Option<std::time::Duration> {
        None
    }
    /// Each live session on this node: its user and its cursor.
    fn cursors(&self) -> Vec<(Uuid, i64)>;
}
