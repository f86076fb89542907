//! One user's gateway socket during a relay run: records every envelope in
//! the ledger and ACKs everything it received, batched (all the frames
//! that are already readable are answered with one bulk `AckMessage`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::{FutureExt, SinkExt, StreamExt};
use obscura_proto::web_socket_frame::Payload;
use obscura_proto::{AckMessage, WebSocketFrame};
use prost::Message as _;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::api::Gateway;
use crate::ledger::{Delivery, Ledger};
use crate::probe::Probe;
use crate::report::{Errors, Latency};

/// Upper bound of one bulk ACK.
const MAX_ACK_BATCH: usize = 256;

pub struct Receiver {
    /// This user's index (what probes addressed to it carry).
    pub index: u32,
    pub run: u64,
    pub epoch: Instant,
    pub ledger: Arc<Ledger>,
    pub first_deliveries: Arc<AtomicU64>,
    /// Nanoseconds since `epoch` of the latest first delivery (any receiver).
    pub last_delivery_ns: Arc<AtomicU64>,
}

pub struct Received {
    pub latency: Latency,
    pub errors: Errors,
}

enum Next {
    Continue,
    Stop,
}

impl Receiver {
    pub async fn run(self, mut ws: Gateway, stop: CancellationToken) -> Received {
        let mut done = Received {
            latency: Latency::new(),
            errors: Errors::default(),
        };
        let mut acks: Vec<String> = Vec::new();
        loop {
            let incoming = tokio::select! {
                biased;
                m = ws.next() => m,
                () = stop.cancelled() => break,
            };
            let mut next = self.on_message(incoming, &mut acks, &mut done);
            // Everything already buffered is answered by the same ACK frame.
            while matches!(next, Next::Continue) && acks.len() < MAX_ACK_BATCH {
                match ws.next().now_or_never() {
                    Some(m) => next = self.on_message(m, &mut acks, &mut done),
                    None => break,
                }
            }
            if !acks.is_empty() {
                let frame = WebSocketFrame {
                    payload: Some(Payload::Ack(AckMessage {
                        message_id: String::new(),
                        message_ids: std::mem::take(&mut acks),
                    })),
                };
                if ws
                    .send(Message::Binary(frame.encode_to_vec().into()))
                    .await
                    .is_err()
                {
                    done.errors.add("ack send");
                    break;
                }
            }
            if matches!(next, Next::Stop) {
                break;
            }
        }
        let _ = ws.close(None).await;
        done
    }

    fn on_message(
        &self,
        incoming: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
        acks: &mut Vec<String>,
        done: &mut Received,
    ) -> Next {
        let bytes = match incoming {
            Some(Ok(Message::Binary(bytes))) => bytes,
            Some(Ok(Message::Close(frame))) => {
                let code = frame.map(|f| u16::from(f.code)).unwrap_or(1005);
                done.errors.add(format!("closed by server {code}"));
                return Next::Stop;
            }
            Some(Ok(_)) => return Next::Continue,
            Some(Err(e)) => {
                done.errors.add(format!("socket: {e}"));
                return Next::Stop;
            }
            None => {
                done.errors.add("socket ended");
                return Next::Stop;
            }
        };
        let Ok(WebSocketFrame {
            payload: Some(Payload::Envelope(envelope)),
        }) = WebSocketFrame::decode(bytes.as_ref())
        else {
            // PreKeyStatus and the like: not ours to count.
            return Next::Continue;
        };
        acks.push(envelope.id);
        let probe = envelope
            .message
            .as_ref()
            .and_then(|m| Probe::decode(&m.content))
            .filter(|p| p.run == self.run);
        let Some(probe) = probe else {
            self.ledger.foreign();
            return Next::Continue;
        };
        if probe.recipient != self.index {
            self.ledger.misrouted();
        }
        if self.ledger.delivered(probe.id) == Delivery::First {
            let now_ns = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
            done.latency.record(std::time::Duration::from_nanos(
                now_ns.saturating_sub(probe.intended_ns),
            ));
            self.first_deliveries.fetch_add(1, Ordering::Relaxed);
            self.last_delivery_ns.fetch_max(now_ns, Ordering::Relaxed);
        }
        Next::Continue
    }
}
