//! The in-process [`Fanout`]: a map from user to their live sessions.
//!
//! A user may hold several sockets at once (two browser tabs, a phone and a
//! desktop page): each gets every signal, and whichever ACKs a message
//! first deletes it (clients deduplicate by `Envelope.id`). Beyond
//! [`MAX_SESSIONS_PER_USER`] the oldest is closed (`replaced`), so a client
//! reconnecting in a loop cannot pile up sessions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::signals::{self, SignalSender};
use super::{CloseReason, Fanout, Signal, Subscription};

/// Room for a burst of `Message` signals; when it is full the session has a
/// wake-up pending and is marked lagged, so it reads the store instead.
const SIGNAL_QUEUE: usize = 32;
/// Live sessions per user on one node; a newer one replaces the oldest.
pub const MAX_SESSIONS_PER_USER: usize = 4;

struct Entry {
    conn: u64,
    signals: SignalSender,
    close: CancellationToken,
    close_reason: Arc<Mutex<Option<CloseReason>>>,
    done: CancellationToken,
    lagged: Arc<AtomicBool>,
    cursor: Arc<AtomicI64>,
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
    /// Each user's sessions, oldest first.
    sessions: HashMap<Uuid, Vec<Entry>>,
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

/// Unregisters its session on drop.
struct Guard {
    registry: Arc<Mutex<Registry>>,
    user: Uuid,
    conn: u64,
    done: CancellationToken,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(mut reg) = self.registry.lock()
            && let Some(entries) = reg.sessions.get_mut(&self.user)
        {
            entries.retain(|e| e.conn != self.conn);
            if entries.is_empty() {
                reg.sessions.remove(&self.user);
            }
        }
        self.done.cancel();
    }
}

impl Fanout for LocalFanout {
    fn subscribe(&self, user: Uuid) -> Subscription {
        let (tx, rx) = signals::queue(SIGNAL_QUEUE);
        let close = CancellationToken::new();
        let close_reason = Arc::new(Mutex::new(None));
        let done = CancellationToken::new();
        let lagged = Arc::new(AtomicBool::new(false));
        let cursor = Arc::new(AtomicI64::new(0));
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
            lagged: lagged.clone(),
            cursor: cursor.clone(),
        };
        let entries = reg.sessions.entry(user).or_default();
        // Over the limit, the oldest goes; the new session waits for it to
        // flush its ACKs (bounded) before delivering, as for a takeover.
        let predecessor_done = (entries.len() >= MAX_SESSIONS_PER_USER).then(|| {
            let oldest = entries.remove(0);
            oldest.close(CloseReason::Replaced);
            oldest.done.clone()
        });
        entries.push(entry);
        drop(reg);
        Subscription {
            signals: rx,
            close,
            close_reason,
            predecessor_done,
            lagged,
            cursor,
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
            && let Some(entries) = reg.sessions.get(&user)
        {
            for entry in entries {
                // Full queue = a wake-up is already pending; a PreKeysLow
                // lost this way is re-evaluated by the client on its next
                // upload. A lost `Message` makes the session's view
                // incomplete: flag it, then make sure a signal follows the
                // flag (the session may have emptied the queue in between),
                // so the session reads the store.
                if entry.signals.try_send(signal.clone()).is_err() {
                    entry.lagged.store(true, Ordering::Release);
                    let _ = entry.signals.try_send(Signal::Messages);
                }
            }
        }
    }

    fn cursors(&self) -> Vec<(Uuid, i64)> {
        match self.inner.lock() {
            Ok(reg) => reg
                .sessions
                .iter()
                // The least advanced session of each user: a wake-up
                // reaches all of them, and each reads from its own cursor.
                .filter_map(|(user, entries)| {
                    entries
                        .iter()
                        .map(|e| e.cursor.load(Ordering::Acquire))
                        .min()
                        .map(|cursor| (*user, cursor))
                })
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    fn disconnect(&self, user: Uuid, reason: CloseReason) {
        if let Ok(reg) = self.inner.lock()
            && let Some(entries) = reg.sessions.get(&user)
        {
            for entry in entries {
                entry.close(reason);
            }
        }
    }

    fn connected(&self) -> usize {
        self.inner
            .lock()
            .map(|r| r.sessions.values().map(Vec::len).sum())
            .unwrap_or(0)
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
    fn sessions_coexist_up_to_the_limit_then_the_oldest_is_replaced() {
        let fanout = LocalFanout::new();
        let user = Uuid::new_v4();
        let mut subs: Vec<Subscription> = (0..MAX_SESSIONS_PER_USER)
            .map(|_| fanout.subscribe(user))
            .collect();
        assert!(subs.iter().all(|s| !s.close.is_cancelled()));
        assert!(subs.iter().all(|s| s.predecessor_done.is_none()));
        fanout.notify(user, Signal::Messages);
        for sub in &mut subs {
            assert_eq!(sub.signals.try_recv(), Some(Signal::Messages));
        }
        let newest = fanout.subscribe(user);
        assert_eq!(subs[0].close_reason(), Some(CloseReason::Replaced));
        assert!(subs[1..].iter().all(|s| !s.close.is_cancelled()));
        let done = newest.predecessor_done.clone().unwrap();
        assert!(!done.is_cancelled());
        drop(subs.remove(0));
        assert!(done.is_cancelled());
        assert_eq!(fanout.connected(), MAX_SESSIONS_PER_USER);
        fanout.disconnect(user, CloseReason::Takeover);
        assert!(
            subs.iter()
                .all(|s| s.close_reason() == Some(CloseReason::Takeover))
        );
        assert_eq!(newest.close_reason(), Some(CloseReason::Takeover));
        drop(subs);
        drop(newest);
        assert_eq!(fanout.connected(), 0);
        assert!(!fanout.is_connected(user));
    }

    #[test]
    fn notify_reaches_only_the_live_session() {
        let fanout = LocalFanout::new();
        let user = Uuid::new_v4();
        let mut sub = fanout.subscribe(user);
        fanout.notify(user, Signal::Messages);
        fanout.notify(Uuid::new_v4(), Signal::Messages);
        assert_eq!(sub.signals.try_recv(), Some(Signal::Messages));
        assert!(sub.signals.try_recv().is_none());
        // Never blocks, even when nobody drains the queue.
        for _ in 0..100 {
            fanout.notify(user, Signal::Messages);
        }
    }

    #[test]
    fn cursors_list_live_sessions_only() {
        let fanout = LocalFanout::new();
        let user = Uuid::new_v4();
        let sub = fanout.subscribe(user);
        sub.cursor.store(42, Ordering::Release);
        let behind = fanout.subscribe(user);
        behind.cursor.store(7, Ordering::Release);
        assert_eq!(fanout.cursors(), [(user, 7)], "the least advanced one");
        drop(behind);
        assert_eq!(fanout.cursors(), [(user, 42)]);
        drop(sub);
        assert!(fanout.cursors().is_empty());
    }

    #[test]
    fn a_dropped_signal_marks_the_session_lagged() {
        let fanout = LocalFanout::new();
        let user = Uuid::new_v4();
        let mut sub = fanout.subscribe(user);
        let message = |seq| {
            Signal::Message(Arc::new(crate::store::group_commit::Committed {
                message: crate::store::StoredMessage {
                    seq,
                    id: Uuid::new_v4(),
                    sender: Uuid::new_v4(),
                    timestamp_ms: 0,
                    msg_type: 1,
                    content: vec![],
                },
                prev_seq: seq - 1,
            }))
        };
        for seq in 0..SIGNAL_QUEUE as i64 {
            fanout.notify(user, message(seq));
        }
        assert!(!sub.take_lagged(), "nothing lost yet");
        fanout.notify(user, message(99));
        assert!(sub.take_lagged(), "the 33rd message was dropped");
        assert!(!sub.take_lagged(), "taking clears the flag");
        // What was queued stays, in order.
        let seqs: Vec<i64> = std::iter::from_fn(|| sub.signals.try_recv())
            .map(|s| match s {
                Signal::Message(c) => c.message.seq,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(seqs, (0..SIGNAL_QUEUE as i64).collect::<Vec<_>>());
    }
}
