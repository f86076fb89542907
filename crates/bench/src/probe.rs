//! The bytes the generator puts in `EncryptedMessage.content`: who it is
//! for, which message it is and when it was meant to be sent. The relay
//! treats content as opaque, so any relay carries it unchanged.
//!
//! Layout (little endian), zero-padded to the requested size:
//! `"OBPR"` | run u64 | id u64 | recipient u32 | intended send time u64
//! (nanoseconds since the run's epoch, an `Instant` of this process).

pub const MAGIC: &[u8; 4] = b"OBPR";
/// Smallest content that holds a probe.
pub const MIN_SIZE: usize = 4 + 8 + 8 + 4 + 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Random per run: messages left queued by an earlier run are foreign.
    pub run: u64,
    pub id: u64,
    /// Index of the addressed user.
    pub recipient: u32,
    pub intended_ns: u64,
}

impl Probe {
    /// Encodes into `size` bytes (at least [`MIN_SIZE`]).
    pub fn encode(&self, size: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(size.max(MIN_SIZE));
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.run.to_le_bytes());
        out.extend_from_slice(&self.id.to_le_bytes());
        out.extend_from_slice(&self.recipient.to_le_bytes());
        out.extend_from_slice(&self.intended_ns.to_le_bytes());
        out.resize(size.max(MIN_SIZE), 0);
        out
    }

    /// `None` for anything that is not a probe.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let rest = bytes.strip_prefix(MAGIC)?;
        let u64_at = |at: usize| -> Option<u64> {
            Some(u64::from_le_bytes(rest.get(at..at + 8)?.try_into().ok()?))
        };
        Some(Self {
            run: u64_at(0)?,
            id: u64_at(8)?,
            recipient: u32::from_le_bytes(rest.get(16..20)?.try_into().ok()?),
            intended_ns: u64_at(20)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_at_any_size() {
        let p = Probe {
            run: 0xdead_beef,
            id: 42,
            recipient: 7,
            intended_ns: 123_456_789,
        };
        for size in [0, MIN_SIZE, 100, 4096] {
            let bytes = p.encode(size);
            assert_eq!(bytes.len(), size.max(MIN_SIZE));
            assert_eq!(Probe::decode(&bytes), Some(p));
        }
    }

    #[test]
    fn rejects_other_content() {
        assert_eq!(Probe::decode(b""), None);
        assert_eq!(Probe::decode(b"OBPR short"), None);
        let mut bytes = Probe {
            run: 1,
            id: 2,
            recipient: 3,
            intended_ns: 4,
        }
        .encode(MIN_SIZE);
        bytes[0] = b'X';
        assert_eq!(Probe::decode(&bytes), None);
    }
}
