//! Grouped delivery reads: sessions woken at the same time ask for their
//! next page through one reader task, which answers all of them with ONE
//! query per batch.
//!
//! Why: with PostgreSQL and several nodes every delivered message costs a
//! read (`pending_messages`) when its recipient's session wakes up — most
//! of the statements PostgreSQL executes per message. One statement per
//! batch instead of one per session cuts that overhead (parse, plan,
//! round trip, snapshot) by the batch size.
//!
//! No artificial delay: up to `max_in_flight` batches run at once; reads
//! that arrive while all are busy form the next batch. Each read is still
//! an ordinary snapshot read of that user's queue, so nothing about
//! delivery order or cursors changes.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{Semaphore, mpsc, oneshot};
use uuid::Uuid;

use super::{StoreError, StoreResult, StoredMessage};

/// Reads answered by one query at most.
pub const MAX_BATCH_READS: usize = 256;
const QUEUE: usize = 4096;

/// "Up to `limit` of `user`'s messages with `seq > after_seq`, by `seq`."
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Read {
    pub user: Uuid,
    pub after_seq: i64,
    pub limit: u32,
}

/// A backend's way to answer many reads with one query.
#[async_trait]
pub trait BatchReader: Send + Sync + 'static {
    /// One page per read, in the order of `reads`.
    async fn read_batch(&self, reads: &[Read]) -> StoreResult<Vec<Vec<StoredMessage>>>;
}

type Reply = oneshot::Sender<StoreResult<Vec<StoredMessage>>>;

/// Handle to the reader task; the task ends when the last handle is dropped.
pub struct GroupRead {
    queue: mpsc::Sender<(Read, Reply)>,
}

impl GroupRead {
    pub fn spawn(reader: Arc<dyn BatchReader>, max_in_flight: usize) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(reader, max_in_flight.max(1), rx));
        Self { queue }
    }

    pub async fn read(&self, read: Read) -> StoreResult<Vec<StoredMessage>> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((read, reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::GroupCommit("the reader task has stopped".into())
}

async fn run(
    reader: Arc<dyn BatchReader>,
    max_in_flight: usize,
    mut rx: mpsc::Receiver<(Read, Reply)>,
) {
    let slots = Arc::new(Semaphore::new(max_in_flight));
    while let Some(first) = rx.recv().await {
        // A slot first, then drain: whatever arrived meanwhile joins the batch.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_READS {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let reader = reader.clone();
        tokio::spawn(async move {
            let (reads, replies): (Vec<Read>, Vec<Reply>) = batch.into_iter().unzip();
            match reader.read_batch(&reads).await {
                Ok(pages) if pages.len() == replies.len() => {
                    for (reply, page) in replies.into_iter().zip(pages) {
                        let _ = reply.send(Ok(page));
                    }
                }
                Ok(_) => {
                    for reply in replies {
                        let _ = reply.send(Err(StoreError::GroupCommit(
                            "one page per read expected".into(),
                        )));
                    }
                }
                Err(e) => {
                    // Reads have no side effects: each caller gets the error
                    // (its session retries on its next wake-up or poll).
                    let message = e.to_string();
                    for reply in replies {
                        let _ = reply.send(Err(StoreError::GroupCommit(message.clone())));
                    }
                }
            }
            drop(slot);
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Answers each read with `limit` fake messages numbered after the
    /// cursor; records batch sizes; held by `gate`.
    #[derive(Default)]
    struct Fake {
        batches: Mutex<Vec<usize>>,
        gate: tokio::sync::Mutex<()>,
    }

    #[async_trait]
    impl BatchReader for Fake {
        async fn read_batch(&self, reads: &[Read]) -> StoreResult<Vec<Vec<StoredMessage>>> {
            let _held = self.gate.lock().await;
            self.batches.lock().unwrap().push(reads.len());
            Ok(reads
                .iter()
                .map(|r| {
                    (1..=i64::from(r.limit))
                        .map(|i| StoredMessage {
                            seq: r.after_seq + i,
                            id: Uuid::new_v4(),
                            sender: r.user,
                            timestamp_ms: 0,
                            msg_type: 1,
                            content: vec![],
                        })
                        .collect()
                })
                .collect())
        }
    }

    #[tokio::test]
    async fn reads_waiting_for_a_slot_share_one_query_and_get_their_own_page() {
        let fake = Arc::new(Fake::default());
        let group = Arc::new(GroupRead::spawn(fake.clone(), 1));
        let held = fake.gate.lock().await;
        let mut tasks = Vec::new();
        for i in 0..20u32 {
            let group = group.clone();
            tasks.push(tokio::spawn(async move {
                let read = Read {
                    user: Uuid::new_v4(),
                    after_seq: i64::from(i) * 100,
                    limit: i % 3,
                };
                (read, group.read(read).await)
            }));
        }
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        drop(held);
        for t in tasks {
            let (read, page) = t.await.unwrap();
            let page = page.unwrap();
            assert_eq!(page.len(), read.limit as usize);
            assert!(
                page.iter()
                    .all(|m| m.sender == read.user && m.seq > read.after_seq)
            );
        }
        let batches = fake.batches.lock().unwrap().clone();
        assert_eq!(batches.iter().sum::<usize>(), 20);
        assert!(
            batches.len() <= 2,
            "expected at most 2 queries, got {batches:?}"
        );
    }
}
