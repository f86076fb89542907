//! Store-and-forward: accept a message durably, hand queued messages to the
//! gateway as `Envelope`s, delete them on ACK.

use obscura_proto::{EncryptedMessage, Envelope};
use prost::Message;
use uuid::Uuid;

use super::{Relay, now_millis};
use crate::error::{Error, Result};
use crate::fanout::Signal;
use crate::store::{NewMessage, StoredMessage};

/// Decodes a `POST /v1/messages` body (one serialized `EncryptedMessage`).
pub fn decode_message(body: &[u8]) -> Result<EncryptedMessage> {
    EncryptedMessage::decode(body)
        .map_err(|_| Error::invalid("body is not a serialized EncryptedMessage"))
}

/// The wire form of a queued message.
pub fn envelope(m: &StoredMessage) -> Envelope {
    Envelope {
        id: m.id.to_string(),
        source_user_id: m.sender.to_string(),
        timestamp: u64::try_from(m.timestamp_ms).unwrap_or(0),
        message: Some(EncryptedMessage {
            r#type: m.msg_type,
            content: m.content.clone(),
        }),
    }
}

/// ACK ids that are UUIDs; anything else cannot name a message and is dropped.
pub fn parse_ack_ids<'a>(ids: impl Iterator<Item = &'a str>) -> Vec<Uuid> {
    ids.filter_map(|id| Uuid::parse_str(id).ok()).collect()
}

impl Relay {
    /// Queues `body` for `recipient`; returns once it is durably stored.
    pub async fn send_message(&self, sender: Uuid, recipient: Uuid, body: &[u8]) -> Result<Uuid> {
        let message = decode_message(body)?;
        let id = Uuid::new_v4();
        let now = now_millis();
        let stored = self
            .store
            .enqueue_message(NewMessage {
                id,
                recipient,
                sender,
                timestamp_ms: now,
                msg_type: message.r#type,
                content: message.content,
                expires_at: now / 1000 + self.config.message_ttl.as_secs() as i64,
            })
            .await?;
        if !stored {
            return Err(Error::NotFound);
        }
        if !self.commits_published {
            self.fanout.notify(recipient, Signal::Messages);
        }
        crate::metrics::message_enqueued();
        self.push.message_queued(recipient).await;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_accepts_protobuf_and_rejects_garbage() {
        let m = EncryptedMessage {
            r#type: 2,
            content: vec![1, 2, 3],
        };
        assert_eq!(decode_message(&m.encode_to_vec()).unwrap(), m);
        assert!(decode_message(b"not a protobuf").is_err());
        assert!(decode_message(&[0x12, 0x05, 0x01]).is_err()); // truncated bytes field
    }

    #[test]
    fn envelopes_carry_the_message_unchanged() {
        let m = StoredMessage {
            seq: 1,
            id: Uuid::new_v4(),
            sender: Uuid::new_v4(),
            timestamp_ms: 1_700_000_000_123,
            msg_type: 1,
            content: vec![9, 9],
        };
        let e = envelope(&m);
        assert_eq!(e.id, m.id.to_string());
        assert_eq!(e.source_user_id, m.sender.to_string());
        assert_eq!(e.timestamp, 1_700_000_000_123);
        assert_eq!(
            e.message,
            Some(EncryptedMessage {
                r#type: 1,
                content: vec![9, 9]
            })
        );
    }

    #[test]
    fn ack_ids_skip_non_uuids() {
        let a = Uuid::new_v4();
        let s = a.to_string();
        assert_eq!(parse_ack_ids([s.as_str(), "nope", ""].into_iter()), vec![a]);
    }
}
