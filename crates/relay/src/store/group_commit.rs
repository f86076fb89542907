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
//! - a batch's enqueues are stored in arrival order; batches commit one at
//!   a time (SQLite) or may overlap (PostgreSQL, which orders each
//!   recipient's messages with row locks); an ACK delete can never
//!   overtake its enqueue, which committed before it was delivered;
//! - every committed message carries `prev_seq`, its recipient's previous
//!   `seq`, read inside the same transaction after the recipient was
//!   locked: a session that has sent everything up to `prev_seq` may send
//!   it without reading the store, whatever the order in which commits
//!   from this and other nodes reach it;
//! - one failing write cannot fail its neighbours: a failed batch is
//!   retried write by write, so only the culprit gets the error.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use tokio::sync::{Semaphore, mpsc, oneshot};
use uuid::Uuid;

use super::{NewMessage, StoreError, StoreResult, StoredMessage};

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
    /// Cancel `user`'s pending wake-up unless it is being sent (leased
    /// past `now_ms`). Every ACK flush does this, so all of a batch's
    /// cancels become one statement.
    CancelPush { user: Uuid, now_ms: i64 },
}

impl Write {
    fn bytes(&self) -> usize {
        match self {
            Write::Enqueue(m) => m.content.len() + 128,
            Write::Delete { ids, .. } => ids.len() * 16 + 16,
            Write::CancelPush { .. } => 32,
        }
    }
}

/// Where a stored message sits in its recipient's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queued {
    pub seq: i64,
    /// The recipient's highest `seq` before this message (0: none). No
    /// message of the recipient lies between `prev_seq` and `seq`.
    pub prev_seq: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Where the message was queued, or `None` when the recipient does not exist.
    Enqueued(Option<Queued>),
    Deleted(u64),
    Cancelled,
}

/// A message as its writer committed it: enough for a session that is
/// caught up to `prev_seq` to send it without reading the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub message: StoredMessage,
    pub prev_seq: i64,
}

/// Called by the writer task with each committed message (a batch's in
/// `seq` order), after its transaction committed and before its sender is
/// answered. Must not block.
pub type CommitHook = Arc<dyn Fn(Uuid, Committed) + Send + Sync>;

/// The batch's enqueues, in arrival order.
pub fn enqueues(writes: &[Write]) -> Vec<&NewMessage> {
    writes
        .iter()
        .filter_map(|w| match w {
            Write::Enqueue(m) => Some(m),
            _ => None,
        })
        .collect()
}

/// Every `(recipient, message id)` the batch's ACKs name. A backend deletes
/// them all in one statement after its inserts: an ACK names a message that
/// was delivered, so committed by an earlier batch — never one of this one.
pub fn acknowledged(writes: &[Write]) -> Vec<(Uuid, Uuid)> {
    writes
        .iter()
        .flat_map(|w| match w {
            Write::Delete { user, ids } => ids.iter().map(|id| (*user, *id)).collect(),
            _ => Vec::new(),
        })
        .collect()
}

/// The users whose wake-ups a batch cancels, and the earliest `now_ms`
/// among the requests (a job leased past it is being sent: left alone).
pub fn cancels(writes: &[Write]) -> Option<(Vec<Uuid>, i64)> {
    let mut users = Vec::new();
    let mut now = i64::MAX;
    for write in writes {
        if let Write::CancelPush { user, now_ms } = write {
            users.push(*user);
            now = now.min(*now_ms);
        }
    }
    (!users.is_empty()).then_some((users, now))
}

/// The distinct recipients of a batch's enqueues, in id order (the order
/// PostgreSQL locks them in).
pub fn recipients(writes: &[Write]) -> Vec<Uuid> {
    let mut recipients: Vec<Uuid> = writes
        .iter()
        .filter_map(|w| match w {
            Write::Enqueue(m) => Some(m.recipient),
            _ => None,
        })
        .collect();
    recipients.sort_unstable();
    recipients.dedup();
    recipients
}

/// Fills in the `prev_seq` of each message a batch stored. `before` holds
/// each recipient's highest `seq` before the batch, read in the batch's
/// transaction once the recipients were locked (absent: no message);
/// within the batch a recipient's messages chain in `seq` order.
pub fn link_prev_seqs(writes: &[Write], outcomes: &mut [Outcome], before: HashMap<Uuid, i64>) {
    let mut stored: Vec<(i64, Uuid, &mut i64)> = writes
        .iter()
        .zip(outcomes.iter_mut())
        .filter_map(|(write, outcome)| match (write, outcome) {
            (Write::Enqueue(m), Outcome::Enqueued(Some(q))) => {
                Some((q.seq, m.recipient, &mut q.prev_seq))
            }
            _ => None,
        })
        .collect();
    stored.sort_unstable_by_key(|(seq, _, _)| *seq);
    let mut last = before;
    for (seq, recipient, prev) in stored {
        *prev = last.insert(recipient, seq).unwrap_or(0);
    }
}

/// One outcome per write, from what the batch's statements reported:
/// `stored` maps each inserted message id to its `seq` (absent: recipient
/// unknown), `deleted` holds the `(recipient, id)` pairs that were deleted.
/// `prev_seq` is 0 until [`link_prev_seqs`] fills it in.
pub fn outcomes(
    writes: &[Write],
    stored: &HashMap<Uuid, i64>,
    deleted: &HashSet<(Uuid, Uuid)>,
) -> Vec<Outcome> {
    writes
        .iter()
        .map(|w| match w {
            Write::Enqueue(m) => {
                Outcome::Enqueued(stored.get(&m.id).map(|&seq| Queued { seq, prev_seq: 0 }))
            }
            Write::Delete { user, ids } => Outcome::Deleted(
                ids.iter()
                    .filter(|id| deleted.contains(&(*user, **id)))
                    .count() as u64,
            ),
            Write::CancelPush { .. } => Outcome::Cancelled,
        })
        .collect()
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
    hook: Arc<OnceLock<CommitHook>>,
}

impl GroupCommit {
    /// Starts the writer task on the current Tokio runtime; up to
    /// `max_in_flight` batches commit at once (1 for a single-writer
    /// database).
    pub fn spawn(writer: Arc<dyn BatchWriter>, max_in_flight: usize) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        let hook = Arc::new(OnceLock::new());
        tokio::spawn(run(writer, hook.clone(), max_in_flight.max(1), rx));
        Self { queue, hook }
    }

    /// Installs the commit hook (once; false if one was installed already).
    pub fn set_hook(&self, hook: CommitHook) -> bool {
        self.hook.set(hook).is_ok()
    }

    pub async fn enqueue(&self, message: NewMessage) -> StoreResult<bool> {
        match self.submit(Write::Enqueue(message)).await? {
            Outcome::Enqueued(queued) => Ok(queued.is_some()),
            _ => Err(mismatch()),
        }
    }

    pub async fn delete(&self, user: Uuid, ids: Vec<Uuid>) -> StoreResult<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        match self.submit(Write::Delete { user, ids }).await? {
            Outcome::Deleted(n) => Ok(n),
            _ => Err(mismatch()),
        }
    }

    pub async fn cancel_push(&self, user: Uuid, now_ms: i64) -> StoreResult<()> {
        match self.submit(Write::CancelPush { user, now_ms }).await? {
            Outcome::Cancelled => Ok(()),
            _ => Err(mismatch()),
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

async fn run(
    writer: Arc<dyn BatchWriter>,
    hook: Arc<OnceLock<CommitHook>>,
    max_in_flight: usize,
    mut rx: mpsc::Receiver<Pending>,
) {
    let slots = Arc::new(Semaphore::new(max_in_flight));
    while let Some(first) = rx.recv().await {
        // A slot first, then drain: whatever arrived meanwhile joins the batch.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut writes = Vec::new();
        let mut replies = Vec::new();
        let mut bytes = 0;
        let mut next = Some(first);
        while let Some(p) = next.take() {
            bytes += p.write.bytes();
            writes.push(p.write);
            replies.push(p.reply);
            if writes.len() < MAX_BATCH_WRITES && bytes < MAX_BATCH_BYTES {
                next = rx.try_recv().ok();
            }
        }
        let (writer, hook) = (writer.clone(), hook.clone());
        tokio::spawn(async move {
            commit(writer.as_ref(), hook.get(), &mut writes, &mut replies).await;
            drop(slot);
        });
    }
}

/// Applies `writes`, tells the hook what committed, answers `replies`
/// (both left empty).
async fn commit(
    writer: &dyn BatchWriter,
    hook: Option<&CommitHook>,
    writes: &mut Vec<Write>,
    replies: &mut Vec<oneshot::Sender<StoreResult<Outcome>>>,
) {
    crate::metrics::group_commit(writes.len());
    match writer.write_batch(writes).await {
        Ok(outcomes) if outcomes.len() == writes.len() => {
            published(hook, writes.drain(..).zip(outcomes.iter().copied()));
            for (reply, outcome) in replies.drain(..).zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
        }
        Ok(_) => {
            writes.clear();
            for reply in replies.drain(..) {
                let _ = reply.send(Err(mismatch()));
            }
        }
        Err(e) if writes.len() == 1 => {
            writes.clear();
            if let Some(reply) = replies.pop() {
                let _ = reply.send(Err(e));
            }
        }
        Err(e) => {
            // Isolate the culprit: each write on its own (the failed
            // transaction stored nothing, so nothing is applied twice).
            tracing::warn!(error = %e, writes = writes.len(), "group commit failed; retrying write by write");
            for (write, reply) in writes.drain(..).zip(replies.drain(..)) {
                let result = writer
                    .write_batch(std::slice::from_ref(&write))
                    .await
                    .and_then(|mut o| o.pop().ok_or_else(mismatch));
                if let Ok(outcome) = &result {
                    published(hook, std::iter::once((write, *outcome)));
                }
                let _ = reply.send(result);
            }
        }
    }
}

/// Hands the committed messages to the hook in `seq` order: the order a
/// store read would return them in.
fn published(hook: Option<&CommitHook>, committed: impl Iterator<Item = (Write, Outcome)>) {
    let Some(hook) = hook else {
        return;
    };
    let mut messages: Vec<(Uuid, Committed)> = committed
        .filter_map(|(write, outcome)| match (write, outcome) {
            (Write::Enqueue(m), Outcome::Enqueued(Some(q))) => Some((
                m.recipient,
                Committed {
                    message: StoredMessage {
                        seq: q.seq,
                        id: m.id,
                        sender: m.sender,
                        timestamp_ms: m.timestamp_ms,
                        msg_type: m.msg_type,
                        content: m.content,
                    },
                    prev_seq: q.prev_seq,
                },
            )),
            _ => None,
        })
        .collect();
    messages.sort_by_key(|(_, c)| c.message.seq);
    for (recipient, message) in messages {
        hook(recipient, message);
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
                    Write::Enqueue(_) => Ok(Outcome::Enqueued(Some(queued(1)))),
                    Write::Delete { ids, .. } => Ok(Outcome::Deleted(ids.len() as u64)),
                    Write::CancelPush { .. } => Ok(Outcome::Cancelled),
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
        let gc = Arc::new(GroupCommit::spawn(recorder.clone(), 1));
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
        let gc = Arc::new(GroupCommit::spawn(recorder.clone(), 1));
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
    fn outcomes_follow_the_writes_and_what_the_statements_reported() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let (kept, lost) = (message(vec![1]), message(vec![2]));
        let (acked, gone) = (Uuid::new_v4(), Uuid::new_v4());
        let writes = vec![
            Write::CancelPush { user: a, now_ms: 7 },
            Write::Enqueue(kept.clone()),
            Write::CancelPush { user: b, now_ms: 5 },
            Write::Delete {
                user: a,
                ids: vec![acked, gone],
            },
            Write::Enqueue(lost.clone()),
            // Same id, other recipient: not this user's message.
            Write::Delete {
                user: b,
                ids: vec![acked],
            },
        ];
        assert_eq!(cancels(&writes), Some((vec![a, b], 5)));
        assert_eq!(cancels(&writes[1..2]), None);
        let ids: Vec<Uuid> = enqueues(&writes).iter().map(|m| m.id).collect();
        assert_eq!(ids, [kept.id, lost.id]);
        assert_eq!(acknowledged(&writes), [(a, acked), (a, gone), (b, acked)]);
        let stored = HashMap::from([(kept.id, 3)]);
        let deleted = HashSet::from([(a, acked)]);
        assert_eq!(
            outcomes(&writes, &stored, &deleted),
            [
                Outcome::Cancelled,
                Outcome::Enqueued(Some(queued(3))),
                Outcome::Cancelled,
                Outcome::Deleted(1),
                Outcome::Enqueued(None),
                Outcome::Deleted(0),
            ]
        );
    }

    /// Holds every batch until released; counts batches in progress.
    #[derive(Default)]
    struct Gate {
        active: std::sync::atomic::AtomicUsize,
        release: tokio::sync::Notify,
    }

    #[async_trait]
    impl BatchWriter for Gate {
        async fn write_batch(&self, writes: &[Write]) -> StoreResult<Vec<Outcome>> {
            self.active
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.release.notified().await;
            self.active
                .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            Ok(writes
                .iter()
                .map(|_| Outcome::Enqueued(Some(queued(1))))
                .collect())
        }
    }

    async fn active_after_second_write(hooked: bool) -> usize {
        let gate = Arc::new(Gate::default());
        let gc = Arc::new(GroupCommit::spawn(gate.clone(), 4));
        if hooked {
            assert!(gc.set_hook(Arc::new(|_, _| {})));
        }
        let submit = || {
            let gc = gc.clone();
            tokio::spawn(async move { gc.enqueue(message(vec![1])).await })
        };
        let first = submit();
        let_everyone_submit().await;
        assert_eq!(gate.active.load(std::sync::atomic::Ordering::SeqCst), 1);
        let second = submit();
        let_everyone_submit().await;
        let active = gate.active.load(std::sync::atomic::Ordering::SeqCst);
        while !(first.is_finished() && second.is_finished()) {
            gate.release.notify_waiters();
            tokio::task::yield_now().await;
        }
        assert!(first.await.unwrap().unwrap() && second.await.unwrap().unwrap());
        active
    }

    #[tokio::test]
    async fn batches_overlap_up_to_the_limit_hook_or_not() {
        // `prev_seq` makes the order in which commits reach the hook moot.
        assert_eq!(active_after_second_write(false).await, 2);
        assert_eq!(active_after_second_write(true).await, 2);
    }

    fn queued(seq: i64) -> Queued {
        Queued { seq, prev_seq: 0 }
    }

    #[test]
    fn prev_seqs_chain_per_recipient_from_the_stored_maximum() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let to = |recipient| {
            let mut m = message(vec![1]);
            m.recipient = recipient;
            Write::Enqueue(m)
        };
        let writes = vec![
            to(a),
            to(b),
            Write::Delete {
                user: a,
                ids: vec![],
            },
            to(a),
            to(b),
            to(a),
        ];
        // Seqs as a backend may assign them (not necessarily in arrival
        // order); the 5th write's recipient vanished (not stored).
        let mut outcomes = vec![
            Outcome::Enqueued(Some(queued(12))),
            Outcome::Enqueued(Some(queued(11))),
            Outcome::Deleted(0),
            Outcome::Enqueued(Some(queued(10))),
            Outcome::Enqueued(None),
            Outcome::Enqueued(Some(queued(14))),
        ];
        let before = HashMap::from([(a, 7)]);
        link_prev_seqs(&writes, &mut outcomes, before);
        let prev: Vec<Option<i64>> = outcomes
            .iter()
            .map(|o| match o {
                Outcome::Enqueued(q) => q.map(|q| q.prev_seq),
                _ => None,
            })
            .collect();
        assert_eq!(prev, [Some(10), Some(0), None, Some(7), None, Some(12)]);
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
