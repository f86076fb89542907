//! Durable storage of shares (V1) and named secrets (V2).
//!
//! [`ShareStore`] is the small interface the rest of the guardian sees; the
//! only backend is [`FsStore`], the documented on-disk layout. Store methods
//! are blocking and do NOT serialize concurrent writers of the same share or
//! secret themselves: the [`crate::vault::Vault`] service holds a lock per
//! share / secret around each version check + write and runs them on the
//! blocking pool. (The per-identity secret limit is the store's own business.)

mod atomic;
mod fs;
mod record;

use std::path::PathBuf;

pub use fs::FsStore;
pub use record::{IntegrityKey, RecordMeta};

use crate::identity::{Identity, SecretName};

/// A stored share or secret, verified against its checksum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub data: Vec<u8>,
    pub meta: RecordMeta,
}

/// One entry of a secrets listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSummary {
    pub name: String,
    pub meta: RecordMeta,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Anti-rollback: the new version must be strictly greater.
    #[error("version {new} is not greater than stored version {stored}")]
    VersionNotGreater { stored: u64, new: u64 },
    /// The identity already holds the maximum number of secrets.
    #[error("too many secrets")]
    TooManySecrets,
    /// A stored record failed its checksum or is malformed; never served.
    #[error("integrity check failed for {0}")]
    Corrupt(PathBuf),
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The blocking task running the operation died.
    #[error("storage task failed: {0}")]
    Task(String),
}

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// What the guardian needs from a storage backend. Writers of one share or
/// one secret must be serialized by the caller.
pub trait ShareStore: Send + Sync + 'static {
    /// Stores the V1 share of `identity` if `version` is greater than the stored one.
    fn put_share(
        &self,
        identity: &Identity,
        share: &[u8],
        version: u64,
    ) -> Result<RecordMeta, StoreError>;
    /// The V1 share of `identity`, if any.
    fn get_share(&self, identity: &Identity) -> Result<Option<Stored>, StoreError>;
    /// Stores a named secret if `version` is greater than the stored one and,
    /// for a new name, the identity holds fewer than `max_secrets` secrets.
    fn put_secret(
        &self,
        identity: &Identity,
        name: &SecretName,
        share: &[u8],
        version: u64,
        max_secrets: usize,
    ) -> Result<RecordMeta, StoreError>;
    fn get_secret(
        &self,
        identity: &Identity,
        name: &SecretName,
    ) -> Result<Option<Stored>, StoreError>;
    /// Deletes a named secret; `false` when there was none.
    fn delete_secret(&self, identity: &Identity, name: &SecretName) -> Result<bool, StoreError>;
    /// Names and metadata of the identity's secrets, sorted by name.
    fn list_secrets(&self, identity: &Identity) -> Result<Vec<SecretSummary>, StoreError>;
    /// Number of identities holding a V1 share (advertised in heartbeats).
    fn share_count(&self) -> u64;
    /// Whether the backend can currently serve reads and writes (readiness).
    fn check(&self) -> Result<(), StoreError>;
}
