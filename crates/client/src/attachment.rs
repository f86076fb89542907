//! Attachment encryption, streamed: large files never sit in memory.
//!
//! A fresh X25519 key pair is made per attachment; an HPKE (Base mode)
//! sender context to its public half seals the file in 64 KiB chunks. The
//! context's nonce is its sequence number, so chunks cannot be reordered or
//! dropped, and the last chunk carries a `final` flag in its associated data,
//! so truncation is detected. The private half is the attachment key the
//! sender hands to the recipient (for example inside an encrypted message);
//! the relay only ever sees ciphertext.
//!
//! ```text
//! "OBSA" 0x01 | encapsulated key (32) | frames…
//! frame = flag (1: 0x01 on the last frame) | length (u32 BE) | ciphertext (≤ 64 KiB + 16)
//! ```

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hpke::aead::{AeadCtxR, AeadCtxS};
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use rand_core::OsRng;
use zeroize::Zeroizing;

type Kem = hpke::kem::X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type Aead = hpke::aead::ChaCha20Poly1305;

/// Plaintext bytes per frame.
pub const CHUNK: usize = 64 * 1024;
const MAGIC: &[u8; 5] = b"OBSA\x01";
const ENC_LEN: usize = 32;
const TAG_LEN: usize = 16;
const FRAME_HEADER: usize = 5;
const INFO: &[u8] = b"obscura attachment v1";
const FINAL: u8 = 1;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AttachmentError {
    #[error("not an Obscura attachment")]
    Malformed,
    #[error("attachment key is invalid")]
    BadKey,
    #[error("decryption failed: wrong key or tampered data")]
    Decrypt,
    #[error("the attachment is truncated")]
    Truncated,
    #[error("data after the final chunk")]
    TrailingData,
}

/// The secret that opens one attachment (an X25519 private key).
pub struct AttachmentKey(Zeroizing<[u8; 32]>);

impl AttachmentKey {
    /// Text form (base64url, no padding).
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0.as_ref())
    }

    pub fn decode(text: &str) -> Result<Self, AttachmentError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| AttachmentError::BadKey)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| AttachmentError::BadKey)?;
        Ok(Self(Zeroizing::new(bytes)))
    }
}

/// Size of the encrypted form of `plain_len` bytes (for `Content-Length`).
pub fn encrypted_len(plain_len: u64) -> u64 {
    let chunks = plain_len.div_ceil(CHUNK as u64).max(1);
    (MAGIC.len() + ENC_LEN) as u64 + chunks * (FRAME_HEADER + TAG_LEN) as u64 + plain_len
}

/// Encrypts an attachment chunk by chunk.
pub struct Sealer {
    ctx: AeadCtxS<Aead, Kdf, Kem>,
}

impl Sealer {
    /// A sealer, its key, and the header to send before the first frame.
    pub fn new() -> (Self, AttachmentKey, Vec<u8>) {
        let (private, public) = Kem::gen_keypair(&mut OsRng);
        let (enc, ctx) =
            hpke::setup_sender::<Aead, Kdf, Kem, _>(&OpModeS::Base, &public, INFO, &mut OsRng)
                .expect("HPKE setup to a fresh key cannot fail");
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&private.to_bytes());
        let header = [MAGIC.as_slice(), enc.to_bytes().as_slice()].concat();
        (Self { ctx }, AttachmentKey(key), header)
    }

    /// Seals one chunk (at most [`CHUNK`] bytes) into a frame.
    pub fn seal(&mut self, chunk: &[u8], last: bool) -> Vec<u8> {
        debug_assert!(chunk.len() <= CHUNK);
        let flag = if last { FINAL } else { 0 };
        let ciphertext = self
            .ctx
            .seal(chunk, &[flag])
            .expect("chunk count never exhausts the HPKE sequence");
        let mut frame = Vec::with_capacity(FRAME_HEADER + ciphertext.len());
        frame.push(flag);
        frame.extend_from_slice(&(ciphertext.len() as u32).to_be_bytes());
        frame.extend_from_slice(&ciphertext);
        frame
    }
}

/// Decrypts an attachment from bytes fed in arbitrary pieces.
pub struct Opener {
    key: AttachmentKey,
    ctx: Option<AeadCtxR<Aead, Kdf, Kem>>,
    buffer: Vec<u8>,
    finished: bool,
}

impl Opener {
    pub fn new(key: AttachmentKey) -> Self {
        Self {
            key,
            ctx: None,
            buffer: Vec::new(),
            finished: false,
        }
    }

    /// Feeds ciphertext; returns the plaintext of every frame completed.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<u8>, AttachmentError> {
        self.buffer.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            if self.ctx.is_none() {
                if self.buffer.len() < MAGIC.len() + ENC_LEN {
                    return Ok(out);
                }
                if &self.buffer[..MAGIC.len()] != MAGIC {
                    return Err(AttachmentError::Malformed);
                }
                let private = <Kem as hpke::Kem>::PrivateKey::from_bytes(self.key.0.as_ref())
                    .map_err(|_| AttachmentError::BadKey)?;
                let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(
                    &self.buffer[MAGIC.len()..MAGIC.len() + ENC_LEN],
                )
                .map_err(|_| AttachmentError::Malformed)?;
                let ctx =
                    hpke::setup_receiver::<Aead, Kdf, Kem>(&OpModeR::Base, &private, &enc, INFO)
                        .map_err(|_| AttachmentError::Decrypt)?;
                self.ctx = Some(ctx);
                self.buffer.drain(..MAGIC.len() + ENC_LEN);
            }
            if self.buffer.is_empty() {
                return Ok(out);
            }
            if self.finished {
                return Err(AttachmentError::TrailingData);
            }
            if self.buffer.len() < FRAME_HEADER {
                return Ok(out);
            }
            let flag = self.buffer[0];
            let len = u32::from_be_bytes([
                self.buffer[1],
                self.buffer[2],
                self.buffer[3],
                self.buffer[4],
            ]) as usize;
            if flag & !FINAL != 0 || !(TAG_LEN..=CHUNK + TAG_LEN).contains(&len) {
                return Err(AttachmentError::Malformed);
            }
            if self.buffer.len() < FRAME_HEADER + len {
                return Ok(out);
            }
            let ctx = self.ctx.as_mut().ok_or(AttachmentError::Malformed)?;
            let plain = ctx
                .open(&self.buffer[FRAME_HEADER..FRAME_HEADER + len], &[flag])
                .map_err(|_| AttachmentError::Decrypt)?;
            out.extend_from_slice(&plain);
            self.buffer.drain(..FRAME_HEADER + len);
            self.finished = flag == FINAL;
        }
    }

    /// Call at end of input: fails unless the final frame was seen.
    pub fn finish(&self) -> Result<(), AttachmentError> {
        if self.finished && self.buffer.is_empty() {
            Ok(())
        } else {
            Err(AttachmentError::Truncated)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encrypt(data: &[u8]) -> (AttachmentKey, Vec<u8>) {
        let (mut sealer, key, mut out) = Sealer::new();
        let chunks: Vec<&[u8]> = if data.is_empty() {
            vec![&[]]
        } else {
            data.chunks(CHUNK).collect()
        };
        for (i, chunk) in chunks.iter().enumerate() {
            out.extend(sealer.seal(chunk, i + 1 == chunks.len()));
        }
        (key, out)
    }

    fn decrypt(key: &AttachmentKey, data: &[u8], piece: usize) -> Result<Vec<u8>, AttachmentError> {
        let mut opener = Opener::new(AttachmentKey::decode(&key.encode())?);
        let mut out = Vec::new();
        for p in data.chunks(piece) {
            out.extend(opener.feed(p)?);
        }
        opener.finish()?;
        Ok(out)
    }

    #[test]
    fn round_trip_sizes_and_lengths() {
        for size in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 7] {
            let data: Vec<u8> = (0..size).map(|i| (i * 31) as u8).collect();
            let (key, sealed) = encrypt(&data);
            assert_eq!(
                sealed.len() as u64,
                encrypted_len(size as u64),
                "size {size}"
            );
            assert_eq!(decrypt(&key, &sealed, 1000).unwrap(), data);
            assert_eq!(decrypt(&key, &sealed, 7).unwrap(), data);
        }
    }

    #[test]
    fn truncation_tampering_and_wrong_key_fail() {
        let data = vec![9u8; 2 * CHUNK + 5];
        let (key, sealed) = encrypt(&data);
        // Drop the final frame: truncated.
        let first_two = MAGIC.len() + ENC_LEN + 2 * (FRAME_HEADER + CHUNK + TAG_LEN);
        assert_eq!(
            decrypt(&key, &sealed[..first_two], 4096).unwrap_err(),
            AttachmentError::Truncated
        );
        let mut bad = sealed.clone();
        bad[100] ^= 1;
        assert!(decrypt(&key, &bad, 4096).is_err());
        // Claiming a middle frame is final fails authentication.
        let mut bad = sealed.clone();
        bad[MAGIC.len() + ENC_LEN] = FINAL;
        assert!(decrypt(&key, &bad, 4096).is_err());
        let (other, _) = encrypt(b"x");
        assert!(decrypt(&other, &sealed, 4096).is_err());
        let mut trailing = sealed.clone();
        trailing.push(0);
        assert!(decrypt(&key, &trailing, 4096).is_err());
    }
}
