//! The self-describing record stored in `share.bin`: one file carries the
//! share, its version and timestamps, and the HMAC binding all of them to the
//! identity and secret name. Because the whole record is replaced by one
//! atomic rename, a reader can never combine a share and a version from two
//! different writes.
//!
//! ```text
//! 0..4    magic "OVR1"
//! 4..12   version     u64 BE
//! 12..20  created_ns  u64 BE
//! 20..28  updated_ns  u64 BE
//! 28..32  size        u32 BE (length of data)
//! 32..64  checksum    HMAC-SHA256(integrity key, DOMAIN || kind || identity
//!                     || name_len || name || bytes 4..32 || data)
//! 64..    data
//! ```

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::identity::{Identity, SecretName};

const MAGIC: &[u8; 4] = b"OVR1";
const DOMAIN: &[u8] = b"obscura-vault/record/v1";
pub const HEADER_LEN: usize = 64;
const MAC_RANGE: std::ops::Range<usize> = 32..64;

/// Version and timestamps of a stored record (V2's `meta.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecordMeta {
    pub version: u64,
    pub created_ns: u64,
    pub updated_ns: u64,
    pub size: u64,
}

/// What a record belongs to; part of the checksum so a record copied to
/// another identity's or secret's directory fails verification.
#[derive(Debug, Clone, Copy)]
pub enum Owner<'a> {
    Share(&'a Identity),
    Secret(&'a Identity, &'a SecretName),
}

/// The persistent key of the at-rest checksums (`integrity.key`, 0600).
#[derive(Clone)]
pub struct IntegrityKey([u8; 32]);

impl IntegrityKey {
    /// Loads `path`, or creates it (atomically, mode 0600) on first run.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        match File::open(path) {
            Ok(mut f) => {
                let mut key = [0u8; 32];
                let mut rest = Vec::new();
                f.read_exact(&mut key)?;
                f.read_to_end(&mut rest)?;
                if !rest.is_empty() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "integrity.key is not 32 bytes",
                    ));
                }
                Ok(Self(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut key);
                let dir = path.parent().unwrap_or(Path::new("."));
                let tmp = dir.join(format!(".integrity.key.tmp-{:016x}", rand::random::<u64>()));
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&tmp)?;
                f.write_all(&key)?;
                f.sync_all()?;
                drop(f);
                std::fs::rename(&tmp, path)?;
                File::open(dir)?.sync_all()?;
                Ok(Self(key))
            }
            Err(e) => Err(e),
        }
    }

    #[cfg(test)]
    pub fn from_bytes(key: [u8; 32]) -> Self {
        Self(key)
    }

    fn mac(&self, owner: Owner<'_>, header_fields: &[u8], data: &[u8]) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts any key length");
        mac.update(DOMAIN);
        let (kind, identity, name) = match owner {
            Owner::Share(id) => (1u8, id, ""),
            Owner::Secret(id, name) => (2u8, id, name.as_str()),
        };
        mac.update(&[kind]);
        mac.update(identity.as_str().as_bytes());
        // Names are at most 128 bytes, so the length fits one byte.
        mac.update(&[name.len() as u8]);
        mac.update(name.as_bytes());
        mac.update(header_fields);
        mac.update(data);
        mac.finalize().into_bytes().into()
    }
}

/// Serializes a record with its checksum.
pub fn encode(key: &IntegrityKey, owner: Owner<'_>, meta: &RecordMeta, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&meta.version.to_be_bytes());
    out.extend_from_slice(&meta.created_ns.to_be_bytes());
    out.extend_from_slice(&meta.updated_ns.to_be_bytes());
    // Shares are at most 512 KiB: the size fits u32.
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let tag = key.mac(owner, &out[4..32], data);
    out.extend_from_slice(&tag);
    out.extend_from_slice(data);
    out
}

/// The header fields, unverified (used only where the data is not read, i.e.
/// listings).
pub fn peek_meta(bytes: &[u8]) -> Option<RecordMeta> {
    if bytes.len() < HEADER_LEN || &bytes[..4] != MAGIC {
        return None;
    }
    let u64_at = |i: usize| u64::from_be_bytes(bytes[i..i + 8].try_into().unwrap_or_default());
    let size = u32::from_be_bytes(bytes[28..32].try_into().unwrap_or_default());
    Some(RecordMeta {
        version: u64_at(4),
        created_ns: u64_at(12),
        updated_ns: u64_at(20),
        size: u64::from(size),
    })
}

/// Parses and verifies a record; `None` when malformed or the checksum
/// (compared in constant time) does not match.
pub fn decode(key: &IntegrityKey, owner: Owner<'_>, bytes: &[u8]) -> Option<(RecordMeta, Vec<u8>)> {
    let meta = peek_meta(bytes)?;
    let data = &bytes[HEADER_LEN..];
    if data.len() as u64 != meta.size {
        return None;
    }
    let expected = key.mac(owner, &bytes[4..32], data);
    if bool::from(expected.ct_eq(&bytes[MAC_RANGE])) {
        Some((meta, data.to_vec()))
    } else {
        None
    }
}

/// The checksum field of an encoded record (mirrored to `checksum.bin`).
pub fn checksum_of(encoded: &[u8]) -> &[u8] {
    &encoded[MAC_RANGE]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(c: char) -> Identity {
        Identity::parse(&c.to_string().repeat(64)).unwrap()
    }

    #[test]
    fn round_trip_and_tamper_detection() {
        let key = IntegrityKey::from_bytes([7; 32]);
        let a = id('a');
        let meta = RecordMeta {
            version: u64::MAX,
            created_ns: 1,
            updated_ns: 2,
            size: 3,
        };
        let rec = encode(&key, Owner::Share(&a), &meta, b"abc");
        assert_eq!(
            decode(&key, Owner::Share(&a), &rec),
            Some((meta, b"abc".to_vec()))
        );

        // Bound to the owner.
        let b = id('b');
        assert!(decode(&key, Owner::Share(&b), &rec).is_none());
        let name = SecretName::parse("x").unwrap();
        assert!(decode(&key, Owner::Secret(&a, &name), &rec).is_none());
        // Bound to the key.
        assert!(decode(&IntegrityKey::from_bytes([8; 32]), Owner::Share(&a), &rec).is_none());
        // Every byte matters: version, data, checksum; truncation too.
        for i in [5, 20, 40, rec.len() - 1] {
            let mut bad = rec.clone();
            bad[i] ^= 1;
            assert!(
                decode(&key, Owner::Share(&a), &bad).is_none(),
                "flip at {i} accepted"
            );
        }
        assert!(decode(&key, Owner::Share(&a), &rec[..rec.len() - 1]).is_none());
        assert!(decode(&key, Owner::Share(&a), &rec[..10]).is_none());
    }
}
