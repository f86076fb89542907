//! The guardian's domain operations, independent of HTTP: each write takes
//! the lock of its V1 share or V2 secret so "check version, then write" is
//! atomic, while different identities (and secrets) proceed in parallel;
//! blocking file I/O runs on the blocking thread pool.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

use crate::identity::{Identity, SecretName};
use crate::storage::{RecordMeta, SecretSummary, ShareStore, StoreError, Stored};

/// Shares and secrets, serialized per identity.
#[derive(Clone)]
pub struct Vault {
    store: Arc<dyn ShareStore>,
    locks: Arc<KeyedLocks>,
    max_secrets: usize,
}

impl Vault {
    pub fn new(store: Arc<dyn ShareStore>, max_secrets: usize) -> Self {
        Self {
            store,
            locks: Arc::new(KeyedLocks::default()),
            max_secrets,
        }
    }

    pub async fn push(
        &self,
        id: Identity,
        share: Vec<u8>,
        version: u64,
    ) -> Result<RecordMeta, StoreError> {
        let guard = self.locks.lock(format!("share/{id}")).await;
        self.blocking(move |s| {
            let _guard = guard;
            let meta = s.put_share(&id, &share, version)?;
            tracing::debug!(identity = %id, version, size = share.len(), "share stored");
            Ok(meta)
        })
        .await
    }

    pub async fn pull(&self, id: Identity) -> Result<Option<Stored>, StoreError> {
        self.blocking(move |s| s.get_share(&id)).await
    }

    pub async fn put_secret(
        &self,
        id: Identity,
        name: SecretName,
        share: Vec<u8>,
        version: u64,
    ) -> Result<RecordMeta, StoreError> {
        // One lock per secret; the per-identity secret limit is enforced by
        // the store's slot reservation.
        let guard = self.locks.lock(format!("vault/{id}/{name}")).await;
        let max = self.max_secrets;
        self.blocking(move |s| {
            let _guard = guard;
            let meta = s.put_secret(&id, &name, &share, version, max)?;
            tracing::debug!(identity = %id, %name, version, size = share.len(), "secret stored");
            Ok(meta)
        })
        .await
    }

    pub async fn get_secret(
        &self,
        id: Identity,
        name: SecretName,
    ) -> Result<Option<Stored>, StoreError> {
        self.blocking(move |s| s.get_secret(&id, &name)).await
    }

    pub async fn delete_secret(&self, id: Identity, name: SecretName) -> Result<bool, StoreError> {
        let guard = self.locks.lock(format!("vault/{id}/{name}")).await;
        self.blocking(move |s| {
            let _guard = guard;
            let deleted = s.delete_secret(&id, &name)?;
            tracing::debug!(identity = %id, %name, deleted, "secret delete");
            Ok(deleted)
        })
        .await
    }

    pub async fn list_secrets(&self, id: Identity) -> Result<Vec<SecretSummary>, StoreError> {
        self.blocking(move |s| s.list_secrets(&id)).await
    }

    pub fn share_count(&self) -> u64 {
        self.store.share_count()
    }

    /// Readiness of the storage backend.
    pub async fn check(&self) -> Result<(), StoreError> {
        self.blocking(|s| s.check()).await
    }

    /// Runs `op` on the blocking pool, inside the caller's span (its logs
    /// keep the request id). Writers move their lock guard into `op`: if the
    /// request is cancelled (client gone), the write still runs to its end,
    /// and the lock is held until it has.
    async fn blocking<T: Send + 'static>(
        &self,
        op: impl FnOnce(&dyn ShareStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = Arc::clone(&self.store);
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || span.in_scope(|| op(store.as_ref())))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

/// Async mutexes by key, created on demand and dropped when unused.
#[derive(Default)]
struct KeyedLocks {
    map: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl KeyedLocks {
    async fn lock(&self, key: String) -> OwnedMutexGuard<()> {
        let lock = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            if map.len() >= 1024 {
                // Only the map holds unused locks: drop them.
                map.retain(|_, l| Arc::strong_count(l) > 1);
            }
            Arc::clone(map.entry(key).or_default())
        };
        lock.lock_owned().await
    }
}
