//! The binary peer protocol's framing and payloads.
//!
//! Frame: `[version u8 = 1][type u8][length u32 BE ≤ 1 MiB][payload]`.
//! The codec yields frames of any version (the caller drops version ≠ 1,
//! silently, as the protocol says) and fails on an oversized length so the
//! connection is closed before anything is buffered.

use std::net::Ipv4Addr;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

pub const PROTOCOL_VERSION: u8 = 1;
pub const HEADER_LEN: usize = 6;
pub const MAX_PAYLOAD: usize = 1024 * 1024;

/// Message types. 0x05/0x06 (repair) are reserved for Phase 2.
pub mod msg {
    pub const HEARTBEAT: u8 = 0x01;
    pub const HEARTBEAT_ACK: u8 = 0x02;
    pub const VERIFY_REQUEST: u8 = 0x03;
    pub const VERIFY_RESPONSE: u8 = 0x04;
    pub const REPAIR_OFFER: u8 = 0x05;
    pub const REPAIR_ACCEPT: u8 = 0x06;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub version: u8,
    pub msg_type: u8,
    pub payload: Bytes,
}

impl Frame {
    pub fn new(msg_type: u8, payload: impl Into<Bytes>) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            msg_type,
            payload: payload.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("frame payload of {0} bytes exceeds 1 MiB")]
    TooLarge(usize),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// tokio-util codec for [`Frame`]s.
#[derive(Debug, Default, Clone, Copy)]
pub struct FrameCodec;

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        if src.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[2], src[3], src[4], src[5]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(CodecError::TooLarge(len));
        }
        if src.len() < HEADER_LEN + len {
            src.reserve(HEADER_LEN + len - src.len());
            return Ok(None);
        }
        let version = src.get_u8();
        let msg_type = src.get_u8();
        src.advance(4);
        let payload = src.split_to(len).freeze();
        Ok(Some(Frame {
            version,
            msg_type,
            payload,
        }))
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        if frame.payload.len() > MAX_PAYLOAD {
            return Err(CodecError::TooLarge(frame.payload.len()));
        }
        dst.reserve(HEADER_LEN + frame.payload.len());
        dst.put_u8(frame.version);
        dst.put_u8(frame.msg_type);
        dst.put_u32(frame.payload.len() as u32);
        dst.extend_from_slice(&frame.payload);
        Ok(())
    }
}

/// Heartbeat payload (18 bytes): `[ip 4][port u16 BE][share_count u32 BE][timestamp u64 BE]`.
/// `port` is the sender's HTTP (client API) port, so receivers can list it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub share_count: u32,
    pub timestamp: u64,
}

impl Heartbeat {
    pub const LEN: usize = 18;

    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(Self::LEN);
        b.put_slice(&self.ip.octets());
        b.put_u16(self.port);
        b.put_u32(self.share_count);
        b.put_u64(self.timestamp);
        b.freeze()
    }

    pub fn decode(mut p: &[u8]) -> Option<Self> {
        if p.len() != Self::LEN {
            return None;
        }
        let ip = Ipv4Addr::new(p[0], p[1], p[2], p[3]);
        p.advance(4);
        Some(Self {
            ip,
            port: p.get_u16(),
            share_count: p.get_u32(),
            timestamp: p.get_u64(),
        })
    }
}

/// Verify request (65 bytes): `[identity 64][identity_len u8]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyRequest {
    pub identity: [u8; 64],
    pub identity_len: u8,
}

impl VerifyRequest {
    pub const LEN: usize = 65;

    /// The identity as its 64 hex characters.
    pub fn for_identity(hex: &str) -> Self {
        let mut identity = [0u8; 64];
        let n = hex.len().min(64);
        identity[..n].copy_from_slice(&hex.as_bytes()[..n]);
        Self {
            identity,
            identity_len: n as u8,
        }
    }

    /// The identity string (the first `identity_len` bytes), if UTF-8.
    pub fn identity_str(&self) -> Option<&str> {
        std::str::from_utf8(self.identity.get(..usize::from(self.identity_len))?).ok()
    }

    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(Self::LEN);
        b.put_slice(&self.identity);
        b.put_u8(self.identity_len);
        b.freeze()
    }

    pub fn decode(p: &[u8]) -> Option<Self> {
        if p.len() != Self::LEN {
            return None;
        }
        Some(Self {
            identity: p[..64].try_into().ok()?,
            identity_len: p[64],
        })
    }
}

/// Verify response (98 bytes): `[identity 64][identity_len u8][has_share u8][commitment 32]`;
/// commitment = SHA-256 of the stored share (zeros when there is none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyResponse {
    pub identity: [u8; 64],
    pub identity_len: u8,
    pub has_share: bool,
    pub commitment: [u8; 32],
}

impl VerifyResponse {
    pub const LEN: usize = 98;

    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(Self::LEN);
        b.put_slice(&self.identity);
        b.put_u8(self.identity_len);
        b.put_u8(u8::from(self.has_share));
        b.put_slice(&self.commitment);
        b.freeze()
    }

    pub fn decode(p: &[u8]) -> Option<Self> {
        if p.len() != Self::LEN {
            return None;
        }
        Some(Self {
            identity: p[..64].try_into().ok()?,
            identity_len: p[64],
            has_share: p[65] != 0,
            commitment: p[66..98].try_into().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_split_reads() {
        let mut codec = FrameCodec;
        let mut buf = BytesMut::new();
        let hb = Heartbeat {
            ip: Ipv4Addr::LOCALHOST,
            port: 7500,
            share_count: 3,
            timestamp: 42,
        };
        codec
            .encode(Frame::new(msg::HEARTBEAT, hb.encode()), &mut buf)
            .unwrap();
        codec
            .encode(Frame::new(msg::HEARTBEAT_ACK, Bytes::new()), &mut buf)
            .unwrap();
        assert_eq!(buf.len(), HEADER_LEN + 18 + HEADER_LEN);

        // Byte by byte: nothing until a frame is complete.
        let all = buf.split().freeze();
        let mut frames = Vec::new();
        for b in all.iter() {
            buf.put_u8(*b);
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                frames.push(f);
            }
        }
        assert_eq!(frames.len(), 2);
        assert_eq!(Heartbeat::decode(&frames[0].payload), Some(hb));
        assert_eq!(
            (frames[1].msg_type, frames[1].payload.len()),
            (msg::HEARTBEAT_ACK, 0)
        );
    }

    #[test]
    fn oversized_length_is_an_error_before_buffering() {
        let mut buf = BytesMut::from(&[1u8, 1, 0x00, 0x10, 0x00, 0x01][..]);
        assert!(matches!(
            FrameCodec.decode(&mut buf),
            Err(CodecError::TooLarge(0x0010_0001))
        ));
        let mut ok = BytesMut::from(&[1u8, 1, 0x00, 0x10, 0x00, 0x00][..]);
        assert!(FrameCodec.decode(&mut ok).unwrap().is_none());
    }

    #[test]
    fn other_versions_are_decoded_for_the_caller_to_drop() {
        let mut buf = BytesMut::from(&[2u8, 1, 0, 0, 0, 1, 9][..]);
        let f = FrameCodec.decode(&mut buf).unwrap().unwrap();
        assert_eq!((f.version, f.payload.as_ref()), (2, &[9u8][..]));
    }

    #[test]
    fn verify_payloads_have_their_documented_sizes() {
        let id = "ab".repeat(32);
        let req = VerifyRequest::for_identity(&id);
        assert_eq!(req.encode().len(), 65);
        assert_eq!(
            VerifyRequest::decode(&req.encode()).unwrap().identity_str(),
            Some(id.as_str())
        );
        let resp = VerifyResponse {
            identity: req.identity,
            identity_len: 64,
            has_share: true,
            commitment: [5; 32],
        };
        assert_eq!(resp.encode().len(), 98);
        assert_eq!(VerifyResponse::decode(&resp.encode()), Some(resp));
        assert!(VerifyRequest::decode(&[0; 64]).is_none());
    }
}
