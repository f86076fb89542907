//! ACK batching: deletes are grouped per session and flushed when the batch
//! is full or its oldest ACK is ~50 ms old (and always before the session ends).

use std::time::Duration;

use tokio::time::Instant;
use uuid::Uuid;

pub const MAX_BATCH: usize = 100;
pub const MAX_DELAY: Duration = Duration::from_millis(50);

#[derive(Debug, Default)]
pub struct AckBatch {
    ids: Vec<Uuid>,
    oldest: Option<Instant>,
}

impl AckBatch {
    /// Adds ids; returns true when the batch is full and must be flushed now.
    pub fn add(&mut self, ids: impl IntoIterator<Item = Uuid>, now: Instant) -> bool {
        let before = self.ids.len();
        self.ids.extend(ids);
        if self.ids.len() > before && self.oldest.is_none() {
            self.oldest = Some(now);
        }
        self.ids.len() >= MAX_BATCH
    }

    /// When the batch must be flushed at the latest (None when empty).
    pub fn deadline(&self) -> Option<Instant> {
        self.oldest.map(|t| t + MAX_DELAY)
    }

    /// When to flush: at once (its first ACK's time) when full, else the deadline.
    pub fn due_at(&self) -> Option<Instant> {
        if self.ids.len() >= MAX_BATCH {
            self.oldest
        } else {
            self.deadline()
        }
    }

    pub fn take(&mut self) -> Vec<Uuid> {
        self.oldest = None;
        std::mem::take(&mut self.ids)
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_by_size_and_age() {
        let now = Instant::now();
        let mut batch = AckBatch::default();
        assert!(batch.deadline().is_none());
        assert!(!batch.add([], now));
        assert!(batch.deadline().is_none());
        assert!(!batch.add([Uuid::new_v4()], now));
        assert_eq!(batch.deadline(), Some(now + MAX_DELAY));
        // A later ACK does not push the deadline back.
        assert!(!batch.add([Uuid::new_v4()], now + Duration::from_millis(30)));
        assert_eq!(batch.deadline(), Some(now + MAX_DELAY));
        assert_eq!(batch.due_at(), Some(now + MAX_DELAY));
        assert!(batch.add((0..98).map(|_| Uuid::new_v4()), now));
        assert_eq!(batch.due_at(), Some(now), "a full batch is due at once");
        assert_eq!(batch.take().len(), 100);
        assert!(batch.is_empty() && batch.deadline().is_none());
    }
}
