//! One live WebSocket session: welcome `PreKeyStatus`, then a delivery
//! pump that pages the store by sequence (never by timestamp) past a
//! cursor, woken by fan-out signals — or, once caught up, takes messages
//! straight from this node's store writer (`Signal::Message`);
//! client ACKs are batched into deletes, which run beside delivery (one
//! flush in flight per session) instead of holding it up.
//!
//! Invariants: a message is sent at most once per session (the cursor only
//! moves forward) and deleted only by its recipient's ACK; whatever is not
//! acknowledged stays queued for the next connection; every ACK received
//! is flushed before the session's registration is dropped (a successor
//! waits for that, so it does not redeliver what was acknowledged).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use obscura_proto::{PreKeyStatus, WebSocketFrame, web_socket_frame::Payload};
use prost::Message as _;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::SEND_TIMEOUT;
use super::acks::AckBatch;
use crate::domain::Relay;
use crate::domain::messages::{envelope, parse_ack_ids};
use crate::fanout::{CloseReason, Signal, Subscription};
use crate::store::StoredMessage;

/// Messages fetched per store round trip.
const PAGE: u32 = 100;
/// A ping is sent this often (keeps NAT mappings alive; browsers do not
/// ping on their own); a client silent for three intervals is gone.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a new session waits for the one it replaced to flush its ACKs.
const PREDECESSOR_GRACE: Duration = Duration::from_secs(2);

/// WebSocket close codes sent by the relay.
pub mod close_code {
    /// RFC 6455 "going away": the server shuts down.
    pub const GOING_AWAY: u16 = 1001;
    /// RFC 6455 "message too big": a client frame over the size limit.
    pub const TOO_BIG: u16 = 1009;
    /// Application code: a newer connection (or a device takeover) replaced this one.
    pub const REPLACED: u16 = 4000;
}

/// Why the session loop ended.
enum End {
    Shutdown,
    Closed(Option<CloseReason>),
    /// The client closed or vanished; nothing more to send.
    ClientGone,
    /// The client sent a frame over `MAX_CLIENT_MESSAGE_BYTES`.
    TooBig,
    /// The socket or the store failed.
    Failed(String),
}

pub struct Session {
    relay: Arc<Relay>,
    user: Uuid,
    socket: WebSocket,
    /// Highest sequence number sent in this session.
    cursor: i64,
    /// The same, for the node's safety-net poll (`gateway::poll`).
    shared_cursor: Arc<AtomicI64>,
    acks: AckBatch,
    /// The ACK flush in progress, if any (at most one per session).
    flushing: Option<JoinHandle<()>>,
}

impl Session {
    pub fn new(relay: Arc<Relay>, user: Uuid, socket: WebSocket) -> Self {
        Self {
            relay,
            user,
            socket,
            cursor: 0,
            shared_cursor: Arc::default(),
            acks: AckBatch::default(),
            flushing: None,
        }
    }

    /// Runs until the end; `sub` was taken at handshake time, before the
    /// first store read, so nothing enqueued since can be missed.
    pub async fn run(mut self, mut sub: Subscription, shutdown: CancellationToken) {
        self.shared_cursor = sub.cursor.clone();
        if let Some(done) = sub.predecessor_done.clone() {
            let _ = timeout(PREDECESSOR_GRACE, done.cancelled()).await;
        }
        tracing::debug!(user = %self.user, "gateway session started");
        self.relay.push.session_started(self.user).await;
        let end = match self.serve(&mut sub, &shutdown).await {
            Ok(end) => end,
            Err(e) => End::Failed(e),
        };
        self.finish_acks().await;
        let frame = match &end {
            End::Shutdown => Some((close_code::GOING_AWAY, "server shutting down")),
            End::Closed(Some(CloseReason::Takeover)) => Some((close_code::REPLACED, "takeover")),
            End::Closed(_) => Some((close_code::REPLACED, "replaced")),
            End::ClientGone => None,
            End::TooBig => Some((close_code::TOO_BIG, "frame too large")),
            End::Failed(e) => {
                tracing::warn!(user = %self.user, error = %e, "gateway session failed");
                Some((1011, "internal error"))
            }
        };
        if let Some((code, reason)) = frame {
            let close = Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            }));
            let _ = timeout(Duration::from_secs(2), self.socket.send(close)).await;
        }
        tracing::debug!(user = %self.user, "gateway session ended");
        drop(sub);
    }

    async fn serve(
        &mut self,
        sub: &mut Subscription,
        shutdown: &CancellationToken,
    ) -> Result<End, String> {
        let remaining = self
            .relay
            .store
            .one_time_pre_key_count(self.user)
            .await
            .map_err(|e| e.to_string())?;
        if remaining < self.relay.config.prekey_min_threshold {
            self.send_pre_key_status(remaining).await?;
        }
        // Lost cross-node signals are made up for by the node's poll
        // (`gateway::poll`), which wakes this session when it is behind.
        let mut wake = true;
        let mut last_heard = Instant::now();
        let mut keepalive =
            tokio::time::interval_at(Instant::now() + KEEPALIVE_INTERVAL, KEEPALIVE_INTERVAL);
        loop {
            if wake {
                // This read covers whatever a dropped signal announced.
                sub.take_lagged();
                wake = self.deliver_page().await?;
            }
            // While a flush is in flight the batch waits for it.
            let flush_at = self
                .flushing
                .is_none()
                .then(|| self.acks.due_at())
                .flatten();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(End::Shutdown),
                _ = sub.close.cancelled() => return Ok(End::Closed(sub.close_reason())),
                signal = sub.signals.recv() => match signal {
                    Signal::Messages => wake = true,
                    // Sent straight from the writer: when this session has
                    // sent everything up to the recipient's previous message
                    // (and has no page pending, no signal lost), this is the
                    // next one — no store read. Else read, as for `Messages`.
                    Signal::Message(committed) => {
                        if wake || sub.take_lagged() || committed.prev_seq > self.cursor {
                            wake = true;
                        } else if committed.message.seq > self.cursor {
                            self.deliver(&committed.message).await?;
                        }
                    }
                    Signal::PreKeysLow { remaining } => self.send_pre_key_status(remaining).await?,
                },
                incoming = self.socket.recv() => match incoming {
                    // Any frame proves liveness; pings are answered by the WebSocket
                    // layer, text is not part of the protocol.
                    Some(Ok(message)) if !matches!(message, Message::Close(_)) => {
                        last_heard = Instant::now();
                        if let Message::Binary(bytes) = message {
                            self.on_frame(&bytes).await;
                        }
                    }
                    Some(Err(e)) if too_big(&e) => return Ok(End::TooBig),
                    // A close frame, end of stream or a broken socket.
                    Some(Ok(_)) | None | Some(Err(_)) => return Ok(End::ClientGone),
                },
                _ = flushed(&mut self.flushing), if self.flushing.is_some() => self.flushing = None,
                _ = keepalive.tick() => {
                    if last_heard.elapsed() > KEEPALIVE_INTERVAL * 3 {
                        return Ok(End::ClientGone);
                    }
                    self.send_message(Message::Ping(Default::default())).await?;
                }
                _ = sleep_until(flush_at.unwrap_or_else(Instant::now)), if flush_at.is_some() => self.start_flush(),
                _ = std::future::ready(()), if wake => {}
            }
        }
    }

    /// Sends the next page of queued messages; true if more may be waiting.
    async fn deliver_page(&mut self) -> Result<bool, String> {
        let page = self
            .relay
            .store
            .pending_messages(self.user, self.cursor, PAGE)
            .await
            .map_err(|e| e.to_string())?;
        for message in &page {
            self.deliver(message).await?;
        }
        Ok(page.len() == PAGE as usize)
    }

    async fn deliver(&mut self, message: &StoredMessage) -> Result<(), String> {
        let frame = WebSocketFrame {
            payload: Some(Payload::Envelope(envelope(message))),
        };
        self.send(frame).await?;
        self.cursor = message.seq;
        self.shared_cursor.store(message.seq, Ordering::Release);
        crate::metrics::delivered(1);
        Ok(())
    }

    async fn on_frame(&mut self, bytes: &[u8]) {
        match WebSocketFrame::decode(bytes) {
            Ok(WebSocketFrame {
                payload: Some(Payload::Ack(ack)),
            }) => {
                if self.acks.add(parse_ack_ids(ack.ids()), Instant::now()) {
                    self.start_flush();
                }
            }
            Ok(_) => tracing::debug!(user = %self.user, "ignoring non-ACK client frame"),
            Err(_) => tracing::debug!(user = %self.user, "ignoring undecodable client frame"),
        }
    }

    /// Starts deleting the acknowledged messages, unless a flush is still
    /// in flight (the batch then waits for it, and keeps growing).
    fn start_flush(&mut self) {
        if self.acks.is_empty() || self.flushing.as_ref().is_some_and(|f| !f.is_finished()) {
            return;
        }
        let ids = self.acks.take();
        crate::metrics::ack_batch(ids.len());
        self.flushing = Some(tokio::spawn(delete_acknowledged(
            self.relay.clone(),
            self.user,
            ids,
        )));
    }

    /// Waits for the flush in flight, then flushes what is left.
    async fn finish_acks(&mut self) {
        if let Some(flush) = self.flushing.take() {
            let _ = flush.await;
        }
        self.start_flush();
        if let Some(flush) = self.flushing.take() {
            let _ = flush.await;
        }
    }

    async fn send_pre_key_status(&mut self, remaining: u32) -> Result<(), String> {
        let status = PreKeyStatus {
            one_time_pre_key_count: i32::try_from(remaining).unwrap_or(i32::MAX),
            min_threshold: i32::try_from(self.relay.config.prekey_min_threshold)
                .unwrap_or(i32::MAX),
        };
        self.send(WebSocketFrame {
            payload: Some(Payload::PreKeyStatus(status)),
        })
        .await
    }

    async fn send(&mut self, frame: WebSocketFrame) -> Result<(), String> {
        self.send_message(Message::Binary(frame.encode_to_vec().into()))
            .await
    }

    async fn send_message(&mut self, message: Message) -> Result<(), String> {
        match timeout(SEND_TIMEOUT, self.socket.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("send: {e}")),
            Err(_) => Err("send timed out".into()),
        }
    }
}

/// Whether a read failed because the client's frame or message was over
/// the limit: the one socket error the client should be told about.
fn too_big(error: &axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error;
    matches!(
        std::error::Error::source(error).and_then(|e| e.downcast_ref::<Error>()),
        Some(Error::Capacity(_))
    )
}

/// Resolves when the flush in flight has finished (pending when there is none).
async fn flushed(flushing: &mut Option<JoinHandle<()>>) {
    match flushing {
        Some(flush) => {
            let _ = flush.await;
        }
        None => std::future::pending().await,
    }
}

/// Deletes acknowledged messages and cancels the user's pending wake-up.
/// Both go to the store's group commit at once, so they usually share a
/// transaction. Runs as its own task: a session that ends (or fails)
/// mid-flush cannot cut it short.
async fn delete_acknowledged(relay: Arc<Relay>, user: Uuid, ids: Vec<Uuid>) {
    let (deleted, ()) = tokio::join!(
        relay.store.delete_messages(user, &ids),
        relay.push.acknowledged(user)
    );
    if let Err(e) = deleted {
        // Not deleted means redelivered later, never lost.
        tracing::warn!(%user, error = %e, "failed to delete acknowledged messages");
    }
}
