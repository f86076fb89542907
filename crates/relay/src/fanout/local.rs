//! The in-process [`Fanout`]: a map from user to their one live session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{CloseReason, Fanout, Signal, Subscription};

/// Signals are coalescible hints, so a tiny queue is enough: when it is
/// full the session already has a wake-up pending.
const SIGNAL_QUEUE: usize = 4;

struct Entry {
    conn: u64,
    signals: mpsc::Sender<Signal>,
    close: CancellationToken,
    close_reason: Arc<Mutex<Option<CloseReason>>>,
    done: CancellationToken,
}

impl Entry {
    fn close(&self, reason: CloseReason) {
        if let Ok(mut r) = self.close_reason.lock() {
            r.get_or_insert(reason);
        }
        self.close.cancel();
    }
}

#[derive(Default)]
struct Registry {
    next_conn: u64,
    sessions: HashMap<Uuid, Entry>,
}

#[derive(Default, Clone)]
pub struct LocalFanout {
    inner: Arc<Mutex<Registry>>,
}

impl LocalFanout {
    pub fn new() -> Self {
        Self::default()
    }
}

/// Unregisters on drop, unless a newer session already replaced this one.
struct Guard {
    registry: Arc<Mutex<Registry>>,
    user: Uuid,
    conn: u64,
    done: CancellationToken,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(mut reg) = self.registry.lock()
            && reg
                .sessions
                .get(&self.user)
                .is_some_and(|e| e.conn == self.conn)
        {
            reg.sessions.remove(&self.user);
        }
        self.done.cancel();
    }
}

impl Fanout for LocalFanout {
    fn subscribe(&self, user: Uuid) -> Subscription {
        let (tx, rx) = mpsc::channel(SIGNAL_QUEUE);
        let close = CancellationToken::new();
        let close_reason = Arc::new(Mutex::new(None));
        let done = CancellationToken::new();
        let mut reg = match self.inner.lock() {
            Ok(reg) => reg,
            Err(poisoned) => poisoned.into_inner(),
        };
        reg.next_conn += 1;
        let conn = reg.next_conn;
        let entry = Entry {
            conn,
            signals: tx,
            close: close.clone(),
            close_reason: close_reason.clone(),
            done: done.clone(),
        };
        let predecessor_done = reg.sessions.insert(user, entry).map(|old| {
            old.close(CloseReason::Replaced);
            old.done.clone()
        });
        drop(reg);
        Subscription {
            signals: rx,
            close,
            close_reason,
            predecessor_done,
            _guard: Box::new(Guard {
                registry: self.inner.clone(),
                user,
                conn,
                done,
            }),
        }
    }

    fn notify(&self, user: Uuid, signal: Signal) {
        if let Ok(reg) = self.inner.lock()
            && let Some(entry) = reg.sessions.get(&user)
        {
            // Full queue = a wake-up is already pending; a PreKeysLow lost
            // this way is re-evaluated by the client on its next upload.
            let _ = entry.signals.try_send(signal);
        }
    }

    fn disconnect(&self, user: Uuid, reason: CloseReason) {
        if let Ok(reg) = self.inner.lock()
            && let Some(entry) = reg.sessions.get(&user)
        {
            entry.close(reason);
        }
    }

    fn connected(&self) -> usize {
        self.inner.lock().map(|r| r.sessions.len()).unwrap_or(0)
    }

    fn is_connected(&self, user: Uuid) -> bool {
        self.inner
            .lock()
            .map(|r| r.sessions.contains_key(&user))
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_subscription_replaces_the_old_one() {
        let fanout = LocalFanout::new();
        let user = Uuid::new_v4();
        let first = fanout.subscribe(user);
        let second = fanout.subscribe(user);
        assert!(first.close.is_cancelled());
        assert_eq!(first.close_reason(), Some(CloseReason::Replaced));
        assert!(!second.close.is_cancelled());
        let done = second.predecessor_done.clone().unwrap();
        assert!(!done.is_cancelled());
        drop(first);
        assert!(done.is_cancelled());
        // Dropping the replaced one must not unregister the live one.
        assert_eq!(fanout.connected(), 1);
        fanout.disconnect(user, CloseReason::Takeover);
        assert_eq!(second.close_reason(), Some(CloseReason::Takeover));
        drop(second);
        assert_eq!(fanout.connected(), 0);
    }

    #[test]
    fn notify_reaches_only_the_live_session() {
        let fanout = LocalFanout::new();
        let user = Uuid::new_v4();
        let mut sub = fanout.subscribe(user);
        fanout.notify(user, Signal::Messages);
        fanout.notify(Uuid::new_v4(), Signal::Messages);
        assert_eq!(sub.signals.try_recv().ok(), Some(Signal::Messages));
        assert!(sub.signals.try_recv().is_err());
        // Never blocks, even when nobody drains the queue.
        for _ in 0..100 {
            fanout.notify(user, Signal::Messages);
        }
    }
}
