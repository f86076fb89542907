//! Exactly-once accounting for a relay run.
//!
//! Every message the generator tries to send has a dense id `0..capacity`.
//! Senders record the outcome of the `POST` ([`Ledger::accepted`] /
//! [`Ledger::refused`]); receivers record each delivery
//! ([`Ledger::delivered`]). Deliveries can overtake the `201` (the relay
//! pushes as soon as it has committed), so nothing is judged until
//! [`Ledger::verdict`] at the end. Lock-free: one atomic per message, so
//! thousands of tasks can record concurrently.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use serde::Serialize;

/// What the sender learned about message `id`.
const SEND_UNKNOWN: u8 = 0;
const SEND_ACCEPTED: u8 = 1;
const SEND_REFUSED: u8 = 2;

/// What one delivery of a message means at the moment it is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The first delivery of this id.
    First,
    /// This id was delivered before.
    Duplicate,
    /// The id is not one this run could have sent.
    Foreign,
}

/// The end-of-run check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Messages the relay accepted (`201`).
    pub accepted: u64,
    /// Accepted messages delivered at least once.
    pub delivered: u64,
    /// Accepted but never delivered.
    pub missing: u64,
    /// Messages delivered more than once (each counted once).
    pub duplicated: u64,
    /// Extra deliveries beyond the first, summed over all messages.
    pub extra_deliveries: u64,
    /// Delivered although the send was refused or never answered (a relay
    /// that commits and then fails the request, or a client timeout).
    pub delivered_unaccepted: u64,
    /// Deliveries whose id this run never issued.
    pub foreign: u64,
    /// Deliveries that reached a user other than the addressed recipient.
    pub misrouted: u64,
}

impl Verdict {
    /// True when every accepted message arrived exactly once, at the right
    /// recipient, and nothing else arrived.
    pub fn exactly_once(&self) -> bool {
        self.missing == 0
            && self.duplicated == 0
            && self.delivered_unaccepted == 0
            && self.foreign == 0
            && self.misrouted == 0
    }
}

pub struct Ledger {
    sends: Vec<AtomicU8>,
    /// Deliveries per id, saturating at `u8::MAX` (only 0, 1 and "more" matter).
    deliveries: Vec<AtomicU8>,
    foreign: AtomicU64,
    misrouted: AtomicU64,
}

impl Ledger {
    pub fn new(capacity: usize) -> Self {
        Self {
            sends: (0..capacity).map(|_| AtomicU8::new(SEND_UNKNOWN)).collect(),
            deliveries: (0..capacity).map(|_| AtomicU8::new(0)).collect(),
            foreign: AtomicU64::new(0),
            misrouted: AtomicU64::new(0),
        }
    }

    pub fn capacity(&self) -> usize {
        self.sends.len()
    }

    /// The relay answered `201` for `id`.
    pub fn accepted(&self, id: u64) {
        self.set_send(id, SEND_ACCEPTED);
    }

    /// The relay refused `id` (or the request failed without an answer).
    pub fn refused(&self, id: u64) {
        self.set_send(id, SEND_REFUSED);
    }

    fn set_send(&self, id: u64, state: u8) {
        if let Some(slot) = self.slot(&self.sends, id) {
            slot.store(state, Ordering::Relaxed);
        }
    }

    fn slot<'a>(&self, v: &'a [AtomicU8], id: u64) -> Option<&'a AtomicU8> {
        usize::try_from(id).ok().and_then(|i| v.get(i))
    }

    /// Records one delivery of `id`.
    pub fn delivered(&self, id: u64) -> Delivery {
        let Some(slot) = self.slot(&self.deliveries, id) else {
            self.foreign.fetch_add(1, Ordering::Relaxed);
            return Delivery::Foreign;
        };
        let before = slot
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_add(1))
            })
            .unwrap_or(u8::MAX);
        if before == 0 {
            Delivery::First
        } else {
            Delivery::Duplicate
        }
    }

    /// A delivery that carried no valid probe, or came from another run.
    pub fn foreign(&self) {
        self.foreign.fetch_add(1, Ordering::Relaxed);
    }

    /// A delivery that reached the wrong user.
    pub fn misrouted(&self) {
        self.misrouted.fetch_add(1, Ordering::Relaxed);
    }

    /// Accepted messages delivered at least once so far (for drain loops).
    pub fn delivered_accepted(&self) -> u64 {
        self.sends
            .iter()
            .zip(&self.deliveries)
            .filter(|(s, d)| {
                s.load(Ordering::Relaxed) == SEND_ACCEPTED && d.load(Ordering::Relaxed) > 0
            })
            .count() as u64
    }

    pub fn verdict(&self) -> Verdict {
        let mut v = Verdict {
            foreign: self.foreign.load(Ordering::Relaxed),
            misrouted: self.misrouted.load(Ordering::Relaxed),
            ..Verdict::default()
        };
        for (send, deliveries) in self.sends.iter().zip(&self.deliveries) {
            let n = u64::from(deliveries.load(Ordering::Relaxed));
            if n > 1 {
                v.duplicated += 1;
                v.extra_deliveries += n - 1;
            }
            match send.load(Ordering::Relaxed) {
                SEND_ACCEPTED => {
                    v.accepted += 1;
                    if n == 0 {
                        v.missing += 1;
                    } else {
                        v.delivered += 1;
                    }
                }
                _ if n > 0 => v.delivered_unaccepted += 1,
                _ => {}
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_run_is_exactly_once() {
        let l = Ledger::new(3);
        for id in 0..3 {
            // Delivery may overtake the 201.
            assert_eq!(l.delivered(id), Delivery::First);
            l.accepted(id);
        }
        let v = l.verdict();
        assert_eq!(v.accepted, 3);
        assert_eq!(v.delivered, 3);
        assert!(v.exactly_once(), "{v:?}");
    }

    #[test]
    fn missing_messages_are_counted() {
        let l = Ledger::new(4);
        for id in 0..4 {
            l.accepted(id);
        }
        l.delivered(0);
        l.delivered(2);
        let v = l.verdict();
        assert_eq!(v.missing, 2);
        assert_eq!(v.delivered, 2);
        assert!(!v.exactly_once());
        assert_eq!(l.delivered_accepted(), 2);
    }

    #[test]
    fn duplicates_are_counted_once_per_message_and_per_extra_delivery() {
        let l = Ledger::new(2);
        l.accepted(0);
        l.accepted(1);
        assert_eq!(l.delivered(0), Delivery::First);
        assert_eq!(l.delivered(0), Delivery::Duplicate);
        assert_eq!(l.delivered(0), Delivery::Duplicate);
        l.delivered(1);
        let v = l.verdict();
        assert_eq!(v.duplicated, 1);
        assert_eq!(v.extra_deliveries, 2);
        assert_eq!(v.missing, 0);
        assert!(!v.exactly_once());
    }

    #[test]
    fn delivery_counts_saturate_instead_of_wrapping() {
        let l = Ledger::new(1);
        l.accepted(0);
        for _ in 0..300 {
            l.delivered(0);
        }
        let v = l.verdict();
        assert_eq!(v.duplicated, 1);
        assert_eq!(v.extra_deliveries, u64::from(u8::MAX) - 1);
        assert_eq!(v.missing, 0);
    }

    #[test]
    fn refused_or_unanswered_sends_are_not_missing_but_must_not_arrive() {
        let l = Ledger::new(3);
        l.refused(0); // 429: never delivered, fine
        l.refused(1); // timed out, but the relay had committed it
        l.delivered(1);
        l.accepted(2);
        l.delivered(2);
        let v = l.verdict();
        assert_eq!(v.accepted, 1);
        assert_eq!(v.missing, 0);
        assert_eq!(v.delivered_unaccepted, 1);
        assert!(!v.exactly_once());
    }

    #[test]
    fn foreign_and_misrouted_deliveries_fail_the_check() {
        let l = Ledger::new(1);
        l.accepted(0);
        l.delivered(0);
        assert_eq!(l.delivered(7), Delivery::Foreign);
        let v = l.verdict();
        assert_eq!(v.foreign, 1);
        assert!(!v.exactly_once());

        let l = Ledger::new(1);
        l.accepted(0);
        l.delivered(0);
        l.misrouted();
        assert!(!l.verdict().exactly_once());
    }
}
