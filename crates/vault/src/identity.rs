//! Validated names: the identity a share belongs to and the name of a V2
//! secret. Both end up as path components on disk, so only these types (never
//! a raw client string) reach the storage layer.

use std::fmt;

use crate::config::MAX_SECRET_NAME;

/// Why a client-supplied identity was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("identity must be exactly 64 hex characters")]
    Length,
    #[error("identity must be hex")]
    NotHex,
}

/// A 32-byte identity (SHA-256 of the user identity), always held as 64
/// lower-case hex characters so one identity never maps to two directories.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity(String);

impl Identity {
    pub const HEX_LEN: usize = 64;

    /// Accepts 64 hex characters in either case and normalises to lower case.
    pub fn parse(s: &str) -> Result<Self, IdentityError> {
        if s.len() != Self::HEX_LEN {
            return Err(IdentityError::Length);
        }
        if !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(IdentityError::NotHex);
        }
        Ok(Self(s.to_ascii_lowercase()))
    }

    /// From the 32 raw bytes (as carried inside session tokens).
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self(hex::encode(bytes))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 32 raw bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        // Infallible: the constructor guarantees 64 hex characters.
        hex::decode_to_slice(&self.0, &mut out).unwrap_or_default();
        out
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.0)
    }
}

/// A V2 secret name: `[A-Za-z0-9_-]{1,128}`. Never `.`/`..`, never a slash.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct SecretName(String);

/// The name does not match `[A-Za-z0-9_-]{1,128}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid secret name")]
pub struct InvalidSecretName;

impl SecretName {
    pub fn parse(s: &str) -> Result<Self, InvalidSecretName> {
        let ok = !s.is_empty()
            && s.len() <= MAX_SECRET_NAME
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(InvalidSecretName)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_normalised_to_lower_case() {
        let upper = "AB".repeat(32);
        let id = Identity::parse(&upper).unwrap();
        assert_eq!(id.as_str(), "ab".repeat(32));
        assert_eq!(Identity::from_bytes(&id.to_bytes()), id);
        assert_eq!(Identity::parse("ab"), Err(IdentityError::Length));
        assert_eq!(
            Identity::parse(&"zz".repeat(32)),
            Err(IdentityError::NotHex)
        );
    }

    #[test]
    fn secret_names_reject_traversal_and_length() {
        for bad in ["", ".", "..", "a/b", "a\\b", "a.b", "%2e", &"a".repeat(129)] {
            assert!(SecretName::parse(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["a", "my-api_key-1", &"Z".repeat(128)] {
            assert!(SecretName::parse(good).is_ok(), "{good:?} refused");
        }
    }
}
