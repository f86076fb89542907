//! A session's bounded signal queue: a mutex-guarded deque and a
//! [`Notify`]. A tokio `mpsc` channel would allocate a 32-slot block and a
//! cache-padded channel up front, ~1 KB per idle session; this is ~0.1 KB
//! until signals actually queue (docs/performance.md, seventh round).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::Signal;

struct Queue {
    signals: Mutex<VecDeque<Signal>>,
    ready: Notify,
    capacity: usize,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, VecDeque<Signal>> {
        self.signals.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A bounded queue of at most `capacity` signals.
pub fn queue(capacity: usize) -> (SignalSender, SignalReceiver) {
    let q = Arc::new(Queue {
        signals: Mutex::new(VecDeque::new()),
        ready: Notify::new(),
        capacity,
    });
    (SignalSender(q.clone()), SignalReceiver(q))
}

/// The registry's side.
pub struct SignalSender(Arc<Queue>);

impl SignalSender {
    /// Queues `signal` unless the queue is full (then it is handed back).
    pub fn try_send(&self, signal: Signal) -> Result<(), Signal> {
        {
            let mut q = self.0.lock();
            if q.len() >= self.0.capacity {
                return Err(signal);
            }
            q.push_back(signal);
        }
        // Wakes the receiver, or leaves a permit for its next wait.
        self.0.ready.notify_one();
        Ok(())
    }
}

/// The session's side.
pub struct SignalReceiver(Arc<Queue>);

impl SignalReceiver {
    /// The next signal, waiting for one. Cancel-safe: a signal is only
    /// taken out of the queue by the call that returns it.
    pub async fn recv(&mut self) -> Signal {
        loop {
            if let Some(signal) = self.try_recv() {
                return signal;
            }
            self.0.ready.notified().await;
        }
    }

    /// The next signal if one is queued.
    pub fn try_recv(&mut self) -> Option<Signal> {
        self.0.lock().pop_front()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn bounded_in_order_and_wakes_a_waiting_receiver() {
        let (tx, mut rx) = queue(2);
        assert_eq!(tx.try_send(Signal::Messages), Ok(()));
        let low = Signal::PreKeysLow { remaining: 1 };
        assert_eq!(tx.try_send(low.clone()), Ok(()));
        assert_eq!(tx.try_send(Signal::Messages), Err(Signal::Messages));
        assert_eq!(rx.recv().await, Signal::Messages);
        assert_eq!(rx.try_recv(), Some(low));
        assert_eq!(rx.try_recv(), None);

        let waiting = tokio::spawn(async move { rx.recv().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        tx.try_send(Signal::Messages).unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the waiting receiver is woken")
            .unwrap();
        assert_eq!(got, Signal::Messages);
    }

    #[tokio::test]
    async fn a_cancelled_recv_loses_nothing() {
        let (tx, mut rx) = queue(4);
        // A recv abandoned while waiting (as a losing select! branch is)...
        assert!(
            tokio::time::timeout(Duration::from_millis(10), rx.recv())
                .await
                .is_err()
        );
        tx.try_send(Signal::Messages).unwrap();
        // ...does not take the signal sent afterwards.
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        assert_eq!(got.ok(), Some(Signal::Messages));
    }
}
