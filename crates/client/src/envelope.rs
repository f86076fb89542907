//! The secret envelope: what is actually Shamir-split for a backup.
//!
//! Plain Shamir has no check value: combining shares of two different
//! backups, or one wrong share, silently yields garbage. The envelope puts a
//! MAC *inside* the shared secret, so only a correct combination verifies:
//!
//! ```text
//! offset  size  field
//! 0       4     magic "OBSV"
//! 4       1     format version (1)
//! 5       1     threshold K used for the split
//! 6       8     backup version (u64 big-endian, the version sent to guardians)
//! 14      4     payload length L (u32 big-endian)
//! 18      32    MAC key: 32 random bytes, fresh per backup
//! 50      L     payload (the user's secret)
//! 50+L    32    HMAC-SHA256(MAC key, bytes 0..50+L || name)
//! ```
//!
//! The MAC key travels inside the secret, so it is as secret as the payload:
//! a guardian (or anyone holding fewer than K shares) cannot forge a share
//! that combines into a different payload with a valid tag. `name` (the V2
//! secret name, empty for V1) is bound into the tag but not stored, so a
//! share set restored under the wrong name fails too.

use hmac::{Hmac, Mac};
use rand_core::{CryptoRng, RngCore};
use sha2::Sha256;
use zeroize::Zeroizing;

const MAGIC: &[u8; 4] = b"OBSV";
const FORMAT_VERSION: u8 = 1;
const KEY_LEN: usize = 32;
const TAG_LEN: usize = 32;
const HEADER_LEN: usize = 4 + 1 + 1 + 8 + 4 + KEY_LEN;
/// Bytes the envelope adds around the payload.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("payload of {0} bytes is too large for an envelope")]
    TooLarge(usize),
    #[error("not a secret envelope (wrong magic, format or length)")]
    Malformed,
    #[error("integrity check failed: the shares do not belong together")]
    BadChecksum,
}

/// A verified, opened envelope.
#[derive(Debug)]
pub struct Opened {
    pub version: u64,
    pub threshold: u8,
    pub payload: Zeroizing<Vec<u8>>,
}

/// Wraps `payload` for a backup with `version`, split with `threshold`.
pub fn seal<R: RngCore + CryptoRng>(
    payload: &[u8],
    version: u64,
    threshold: u8,
    name: &str,
    rng: &mut R,
) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
    let len = u32::try_from(payload.len()).map_err(|_| EnvelopeError::TooLarge(payload.len()))?;
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    rng.fill_bytes(key.as_mut());
    let mut out = Zeroizing::new(Vec::with_capacity(OVERHEAD + payload.len()));
    out.extend_from_slice(MAGIC);
    out.push(FORMAT_VERSION);
    out.push(threshold);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(key.as_ref());
    out.extend_from_slice(payload);
    let tag = mac(key.as_ref(), &out, name).finalize().into_bytes();
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Verifies and unwraps an envelope recovered from shares.
pub fn open(bytes: &[u8], name: &str) -> Result<Opened, EnvelopeError> {
    if bytes.len() < OVERHEAD || &bytes[..4] != MAGIC || bytes[4] != FORMAT_VERSION {
        return Err(EnvelopeError::Malformed);
    }
    let threshold = bytes[5];
    let version = u64::from_be_bytes(
        bytes[6..14]
            .try_into()
            .map_err(|_| EnvelopeError::Malformed)?,
    );
    let len = u32::from_be_bytes(
        bytes[14..18]
            .try_into()
            .map_err(|_| EnvelopeError::Malformed)?,
    ) as usize;
    if bytes.len() != OVERHEAD + len {
        return Err(EnvelopeError::Malformed);
    }
    let (body, tag) = bytes.split_at(HEADER_LEN + len);
    mac(&bytes[18..HEADER_LEN], body, name)
        .verify_slice(tag)
        .map_err(|_| EnvelopeError::BadChecksum)?;
    Ok(Opened {
        version,
        threshold,
        payload: Zeroizing::new(body[HEADER_LEN..].to_vec()),
    })
}

fn mac(key: &[u8], body: &[u8], name: &str) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(body);
    mac.update(name.as_bytes());
    mac
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn round_trip() {
        let sealed = seal(b"hello", 7, 2, "n", &mut OsRng).unwrap();
        assert_eq!(sealed.len(), OVERHEAD + 5);
        let opened = open(&sealed, "n").unwrap();
        assert_eq!(opened.payload.as_slice(), b"hello");
        assert_eq!(opened.version, 7);
        assert_eq!(opened.threshold, 2);
    }

    #[test]
    fn any_flipped_bit_is_detected() {
        let sealed = seal(b"payload", 1, 2, "", &mut OsRng).unwrap();
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(open(&bad, "").is_err(), "byte {i}");
        }
    }

    #[test]
    fn wrong_name_or_garbage_is_rejected() {
        let sealed = seal(b"x", 1, 2, "a", &mut OsRng).unwrap();
        assert_eq!(open(&sealed, "b").unwrap_err(), EnvelopeError::BadChecksum);
        assert_eq!(
            open(&[0u8; 100], "a").unwrap_err(),
            EnvelopeError::Malformed
        );
        assert_eq!(open(b"OBSV", "a").unwrap_err(), EnvelopeError::Malformed);
        let mut truncated = sealed.to_vec();
        truncated.pop();
        assert_eq!(open(&truncated, "a").unwrap_err(), EnvelopeError::Malformed);
    }
}
