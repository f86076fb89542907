//! The `obscura.v1` protobuf schema, declared with `prost` derives so the
//! build needs no `protoc`. Field numbers are a contract with existing
//! clients: never renumber, never reuse.
//!
//! The equivalent `.proto` text is served by [`PROTO_SOURCE`].

/// `obscura/v1/obscura.proto`, equivalent to the derives below.
pub const PROTO_SOURCE: &str = include_str!("../obscura.proto");

/// One binary WebSocket message on `/v1/gateway`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WebSocketFrame {
    #[prost(oneof = "web_socket_frame::Payload", tags = "10, 11, 12")]
    pub payload: Option<web_socket_frame::Payload>,
}

pub mod web_socket_frame {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Payload {
        /// server → client: a queued message.
        #[prost(message, tag = "10")]
        Envelope(super::Envelope),
        /// client → server: processed, delete it.
        #[prost(message, tag = "11")]
        Ack(super::AckMessage),
        /// server → client: one-time pre-keys running low.
        #[prost(message, tag = "12")]
        PreKeyStatus(super::PreKeyStatus),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PreKeyStatus {
    #[prost(int32, tag = "1")]
    pub one_time_pre_key_count: i32,
    #[prost(int32, tag = "2")]
    pub min_threshold: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Envelope {
    /// UUID of the message in the server queue (the ACK key).
    #[prost(string, tag = "1")]
    pub id: String,
    /// UUID of the sender.
    #[prost(string, tag = "2")]
    pub source_user_id: String,
    /// Server receipt time, milliseconds since the UNIX epoch.
    #[prost(uint64, tag = "3")]
    pub timestamp: u64,
    #[prost(message, optional, tag = "4")]
    pub message: Option<EncryptedMessage>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct EncryptedMessage {
    #[prost(enumeration = "encrypted_message::Type", tag = "1")]
    pub r#type: i32,
    /// The ciphertext, opaque to the server.
    #[prost(bytes = "vec", tag = "2")]
    pub content: Vec<u8>,
}

pub mod encrypted_message {
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum Type {
        Unspecified = 0,
        /// Initial X3DH handshake message.
        PrekeyMessage = 1,
        /// Double Ratchet message.
        EncryptedMessage = 2,
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AckMessage {
    /// A single acknowledged `Envelope.id`.
    #[prost(string, tag = "1")]
    pub message_id: String,
    /// Several acknowledged ids at once; a frame may use either field or both.
    #[prost(string, repeated, tag = "2")]
    pub message_ids: Vec<String>,
}

impl AckMessage {
    /// Every id this ACK names, the single field first, empties skipped.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.message_id.as_str())
            .chain(self.message_ids.iter().map(String::as_str))
            .filter(|id| !id.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn field_numbers_match_the_contract() {
        // Hand-encoded bytes: tag = (field << 3) | wire_type.
        let frame = WebSocketFrame {
            payload: Some(web_socket_frame::Payload::PreKeyStatus(PreKeyStatus {
                one_time_pre_key_count: 3,
                min_threshold: 10,
            })),
        };
        assert_eq!(frame.encode_to_vec(), vec![0x62, 4, 0x08, 3, 0x10, 10]);

        let msg = EncryptedMessage {
            r#type: 2,
            content: vec![0xAA],
        };
        assert_eq!(msg.encode_to_vec(), vec![0x08, 2, 0x12, 1, 0xAA]);

        let ack = WebSocketFrame {
            payload: Some(web_socket_frame::Payload::Ack(AckMessage {
                message_id: "a".into(),
                message_ids: vec!["b".into()],
            })),
        };
        assert_eq!(
            ack.encode_to_vec(),
            vec![0x5a, 6, 0x0a, 1, b'a', 0x12, 1, b'b']
        );

        let env = Envelope {
            id: "i".into(),
            source_user_id: "s".into(),
            timestamp: 1,
            message: Some(msg),
        };
        let framed = WebSocketFrame {
            payload: Some(web_socket_frame::Payload::Envelope(env.clone())),
        };
        let bytes = framed.encode_to_vec();
        assert_eq!(bytes[0], 0x52); // field 10, length-delimited
        assert_eq!(WebSocketFrame::decode(bytes.as_slice()).unwrap(), framed);
    }

    #[test]
    fn ack_ids_merges_both_fields() {
        let ack = AckMessage {
            message_id: "x".into(),
            message_ids: vec!["y".into(), "".into()],
        };
        assert_eq!(ack.ids().collect::<Vec<_>>(), vec!["x", "y"]);
        let none = AckMessage::default();
        assert_eq!(none.ids().count(), 0);
    }
}
