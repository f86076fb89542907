//! Group commit for the message hot path: every enqueue and every ACK
//! delete goes through one writer task, which drains whatever is waiting
//! and applies it as ONE transaction, then answers each caller.
//!
//! Why: a durable commit costs a disk flush (`fsync`), and a disk does a
//! few hundred to a few thousand of those per second. One transaction per
//! message capped the relay at the disk's flush rate; one per batch lets
//! throughput grow with concurrency while a `201` still means "on disk"
//! (callers are answered only after the batch's commit returned).
//!
//! No artificial delay: while one batch commits, the next one accumulates,
//! so batches are as large as the load makes them and a lone write waits
//! for nothing but its own commit.
//!
//! Invariants:
//! - a caller is answered only after the transaction holding its write
//!   committed (or failed: then nothing of it is stored);
//! - writes are applied in arrival order (an ACK delete never overtakes
//!   the enqueue it refers to);
//! - one failing write cannot fail its neighbours: a failed batch is
//!   retried write by write, so only the culprit gets the error.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{NewMessage, StoreError, StoreResult};

/// Writes taken into one transaction at most.
pub const MAX_BATCH_WRITES: usize = 512;
/// Message bytes taken into one transaction at most (bounds the memory a
/// batch pins and the time one commit takes).
pub const MAX_BATCH_BYTES: usize = 8 << 20;
/// Writes waiting for the writer task at most; senders wait beyond that
/// (back-pressure instead of unbounded memory).
const QUEUE: usize = 4096;

/// One write on the hot path.
#[derive(Debug, Clone)]
pub enum Write {
    /// Queue a message; outcome `Enqueued(false)` when the recipient does not exist.
    Enqueue(NewMessage),
    /// Delete `user`'s messages among `ids`.
    Delete { user: Uuid, ids: Vec<Uuid> },
}

impl Write {
    fn bytes(&self) -> usize {
        match self {
            Write::Enqueue(m) => m.content.len() + 128,
            Write::Delete { ids, .. } => ids.len() * 16 + 16,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Enqueued(bool),
    Deleted(u64),
}

/// A batch cut into statements: runs of consecutive enqueues (at most
/// `max_rows` each, for one multi-row `INSERT`) and single deletes, in
/// arrival order. A backend runs them in order and emits one outcome per
/// write.
#[derive(Debug)]
pub enum Step<'a> {
    Insert(Vec<&'a NewMessage>),
    Delete { user: Uuid, ids: &'a [Uuid] },
}

pub fn steps(writes: &[Write], max_rows: usize) -> Vec<Step<'_>> {
    let mut steps = Vec::new();
    for write in writes {
        match (write, steps.last_mut()) {
            (Write::Enqueue(m), Some(Step::Insert(run))) if run.len() < max_rows => run.push(m),
            (Write::Enqueue(m), _) => steps.push(Step::Insert(vec![m])),
            (Write::Delete { user, ids }, _) => steps.push(Step::Delete { user: *user, ids }),
        }
    }
    steps
}

/// A backend's way to apply writes atomically.
#[async_trait]
pub trait BatchWriter: Send + Sync + 'static {
    /// Applies `writes` in order in one transaction and returns one outcome
    /// per write; on error nothing of the batch is stored.
    async fn write_batch(&self, writes: &[Write]) -> StoreResult<Vec<Outcome>>;
}

struct Pending {
    write: Write,
    reply: oneshot::Sender<StoreResult<Outcome>>,
}

/// Handle to the writer task; the task ends when the last handle is dropped.
pub struct GroupCommit {
    queue: mpsc::Sender<Pending>,
}

impl GroupCommit {
    /// Starts the writer task on the current Tokio runtime.
    pub fn spawn(writer: Arc<dyn BatchWriter>) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(writer, rx));
        Self { queue }
    }

    pub async fn enqueue(&self, message: NewMessage) -> StoreResult<bool> {
        match self.submit(Write::Enqueue(message)).await? {
            Outcome::Enqueued(stored) => Ok(stored),
            Outcome::Deleted(_) => Err(mismatch()),
        }
    }

    pub async fn delete(&self, user: Uuid, ids: Vec<Uuid>) -> StoreResult<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        match self.submit(Write::Delete { user, ids }).await? {
            Outcome::Deleted(n) => Ok(n),
            Outcome::Enqueued(_) => Err(mismatch()),
        }
    }

    async fn submit(&self, write: Write) -> StoreResult<Outcome> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Pending { write, reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::GroupCommit("the writer task has stopped".into())
}

fn mismatch() -> StoreError {
    StoreError::GroupCommit("outcome does not match its write".into())
}

async fn run(writer: Arc<dyn BatchWriter>, mut rx: mpsc::Receiver<Pending>) {
    let mut batch: Vec<Pending> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut bytes = first.write.bytes();
        batch.push(first);
        while batch.len() < MAX_BATCH_WRITES && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(next) => {
                    bytes += next.write.bytes();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        commit(writer.as_ref(), &mut batch).await;
    }
}

/// Applies and answers `batch` (left empty).
async fn commit(writer: &dyn BatchWriter, batch: &mut Vec<Pending>) {
    let writes: Vec<Write> = batch.iter().map(|p| p.write.clone()).collect();
    crate::metrics::group_commit(writes.len());
    match writer.write_batch(&writes).await {
        Ok(outcomes) if outcomes.len() == batch.len() => {
            for (pending, outcome) in batch.drain(..).zip(outcomes) {
                let _ = pending.reply.send(Ok(outcome));
            }
        }
        Ok(_) => {
            for pending in batch.drain(..) {
                let _ = pending.reply.send(Err(mismatch()));
            }
        }
        Err(e) if batch.len() == 1 => {
            if let Some(pending) = batch.pop() {
                let _ = pending.reply.send(Err(e));
            }
        }
        Err(e) => {
            // Isolate the culprit: each write on its own (the failed
            // transaction stored nothing, so nothing is applied twice).
            tracing::warn!(error = %e, writes = batch.len(), "group commit failed; retrying write by write");
            for pending in batch.drain(..) {
                let result = writer
                    .write_batch(std::slice::from_ref(&pending.write))
                    .await
                    .and_then(|mut o| o.pop().ok_or_else(mismatch));
                let _ = pending.reply.send(result);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Records batches; fails any batch holding a message with empty content.
    #[derive(Default)]
    struct Recorder {
        batches: Mutex<Vec<usize>>,
        gate: tokio::sync::Mutex<()>,
    }

    #[async_trait]
    impl BatchWriter for Recorder {
        async fn write_batch(&self, writes: &[Write]) -> StoreResult<Vec<Outcome>> {
            let _held = self.gate.lock().await;
            self.batches.lock().unwrap().push(writes.len());
            writes
                .iter()
                .map(|w| match w {
                    Write::Enqueue(m) if m.content.is_empty() => {
                        Err(StoreError::Corrupt("empty".into()))
                    }
                    Write::Enqueue(_) => Ok(Outcome::Enqueued(true)),
                    Write::Delete { ids, .. } => Ok(Outcome::Deleted(ids.len() as u64)),
                })
                .collect()
        }
    }

    fn message(content: Vec<u8>) -> NewMessage {
        NewMessage {
            id: Uuid::new_v4(),
            recipient: Uuid::new_v4(),
            sender: Uuid::new_v4(),
            timestamp_ms: 0,
            msg_type: 1,
            content,
            expires_at: 0,
        }
    }

    #[tokio::test]
    async fn writes_waiting_during_a_commit_share_the_next_one() {
        let recorder = Arc::new(Recorder::default());
        let gc = Arc::new(GroupCommit::spawn(recorder.clone()));
        // Hold the "disk" so that writes pile up behind the first batch.
        let held = recorder.gate.lock().await;
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let gc = gc.clone();
            tasks.push(tokio::spawn(
                async move { gc.enqueue(message(vec![1])).await },
            ));
        }
        let_everyone_submit().await;
        drop(held);
        for t in tasks {
            assert!(t.await.unwrap().unwrap());
        }
        let batches = recorder.batches.lock().unwrap().clone();
        assert_eq!(batches.iter().sum::<usize>(), 50);
        assert!(
            batches.len() <= 2,
            "expected at most 2 commits, got {batches:?}"
        );
        assert_eq!(gc.delete(Uuid::new_v4(), vec![]).await.unwrap(), 0);
        assert_eq!(
            gc.delete(Uuid::new_v4(), vec![Uuid::new_v4(); 3])
                .await
                .unwrap(),
            3
        );
    }

    #[tokio::test]
    async fn a_failing_write_fails_alone() {
        let recorder = Arc::new(Recorder::default());
        let gc = Arc::new(GroupCommit::spawn(recorder.clone()));
        let held = recorder.gate.lock().await;
        let mut tasks = Vec::new();
        for i in 0..10 {
            let gc = gc.clone();
            let content = if i == 4 { vec![] } else { vec![1] };
            tasks.push(tokio::spawn(
                async move { gc.enqueue(message(content)).await },
            ));
        }
        let_everyone_submit().await;
        drop(held);
        let results: Vec<_> = futures_join(tasks).await;
        assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1);
        assert!(results[4].is_err());
    }

    #[test]
    fn steps_keep_order_and_bound_runs() {
        let m = || Write::Enqueue(message(vec![1]));
        let d = || Write::Delete {
            user: Uuid::new_v4(),
            ids: vec![Uuid::new_v4()],
        };
        let writes = vec![m(), m(), m(), d(), m(), d(), d()];
        let shape: Vec<String> = steps(&writes, 2)
            .iter()
            .map(|s| match s {
                Step::Insert(run) => format!("i{}", run.len()),
                Step::Delete { .. } => "d".into(),
            })
            .collect();
        assert_eq!(shape, ["i2", "i1", "d", "i1", "d", "d"]);
    }

    /// On the test's single-threaded runtime, a few yields let every
    /// spawned task run until it waits for its answer.
    async fn let_everyone_submit() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    async fn futures_join(
        tasks: Vec<tokio::task::JoinHandle<StoreResult<bool>>>,
    ) -> Vec<StoreResult<bool>> {
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    }
}
