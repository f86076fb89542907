//! The guardian's domain operations, independent of HTTP: each write takes
//! the lock of its V1 share or V2 secret so "check version, then write" is
//! atomic, while different identities (and secrets) proceed in parallel;
//! blocking file I/O runs on the blocking thread pool. Verified records are
//! kept in a [`RecordCache`]: a pull that hits it is answered on the calling
//! task, without the blocking pool or the disk (see `cache.rs` for how the
//! writers below keep it coherent).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

use crate::cache::{RecordCache, RecordKey};
use crate::identity::{Identity, SecretName};
use crate::storage::{RecordMeta, SecretSummary, ShareStore, StoreError, Stored};

/// Shares and secrets, serialized per identity.
#[derive(Clone)]
pub struct Vault {
    store: Arc<dyn ShareStore>,
    locks: Arc<KeyedLocks>,
    cache: Arc<RecordCache>,
    max_secrets: usize,
}

impl Vault {
    /// `cache_bytes`: bound of the verified-record cache (0 disables it).
    pub fn new(store: Arc<dyn ShareStore>, max_secrets: usize, cache_bytes: usize) -> Self {
        Self {
            store,
            locks: Arc::new(KeyedLocks::default()),
            cache: Arc::new(RecordCache::new(cache_bytes)),
            max_secrets,
        }
    }

    pub async fn push(
        &self,
        id: Identity,
        share: Vec<u8>,
        version: u64,
    ) -> Result<RecordMeta, StoreError> {
        let key = RecordKey::Share(id.clone());
        self.write(key, move |s| {
            let meta = s.put_share(&id, &share, version)?;
            tracing::debug!(identity = %id, version, size = share.len(), "share stored");
            Ok(meta)
        })
        .await
    }

    pub async fn pull(&self, id: Identity) -> Result<Option<Arc<Stored>>, StoreError> {
        let key = RecordKey::Share(id.clone());
        self.read(key, move |s| s.get_share(&id)).await
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
        let key = RecordKey::Secret(id.clone(), name.clone());
        let max = self.max_secrets;
        self.write(key, move |s| {
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
    ) -> Result<Option<Arc<Stored>>, StoreError> {
        let key = RecordKey::Secret(id.clone(), name.clone());
        self.read(key, move |s| s.get_secret(&id, &name)).await
    }

    pub async fn delete_secret(&self, id: Identity, name: SecretName) -> Result<bool, StoreError> {
        let key = RecordKey::Secret(id.clone(), name.clone());
        self.write(key, move |s| {
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

    /// A record from the cache, or read (and verified) by `op` on the
    /// blocking pool and then cached.
    async fn read(
        &self,
        key: RecordKey,
        op: impl FnOnce(&dyn ShareStore) -> Result<Option<Stored>, StoreError> + Send + 'static,
    ) -> Result<Option<Arc<Stored>>, StoreError> {
        let ticket = match self.cache.get(&key) {
            Ok(hit) => return Ok(Some(hit)),
            Err(ticket) => ticket,
        };
        let Some(stored) = self.blocking(op).await? else {
            return Ok(None);
        };
        let stored = Arc::new(stored);
        self.cache.insert(key, Arc::clone(&stored), ticket);
        Ok(Some(stored))
    }

    /// Runs the write `op` under the lock of `key`, with the key kept out of
    /// the cache from before it touches the disk until after it is done,
    /// whatever its outcome (a failed write may still have replaced the
    /// file). All on the blocking thread, so a cancelled request cannot end
    /// it early.
    async fn write<T: Send + 'static>(
        &self,
        key: RecordKey,
        op: impl FnOnce(&dyn ShareStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let guard = self.locks.lock(key.clone()).await;
        let cache = Arc::clone(&self.cache);
        self.blocking(move |s| {
            let _guard = guard;
            let _writing = cache.begin_write(&key);
            op(s)
        })
        .await
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
    map: Mutex<HashMap<RecordKey, Arc<tokio::sync::Mutex<()>>>>,
}

impl KeyedLocks {
    async fn lock(&self, key: RecordKey) -> OwnedMutexGuard<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::FsStore;

    fn id(c: char) -> Identity {
        Identity::parse(&c.to_string().repeat(64)).unwrap()
    }

    fn vault(dir: &std::path::Path, cache_bytes: usize) -> Vault {
        Vault::new(Arc::new(FsStore::open(dir).unwrap()), 10, cache_bytes)
    }

    #[tokio::test]
    async fn pulls_see_every_acknowledged_write() {
        let dir = tempfile::tempdir().unwrap();
        let v = vault(dir.path(), 1 << 20);
        let a = id('a');
        let n = SecretName::parse("k").unwrap();
        assert!(v.pull(a.clone()).await.unwrap().is_none());
        v.push(a.clone(), b"one".to_vec(), 1).await.unwrap();
        assert_eq!(v.pull(a.clone()).await.unwrap().unwrap().data, b"one");
        // Now cached: a refused push changes nothing...
        assert!(v.push(a.clone(), b"old".to_vec(), 1).await.is_err());
        assert_eq!(v.pull(a.clone()).await.unwrap().unwrap().data, b"one");
        // ...an accepted one is seen at once.
        v.push(a.clone(), b"two".to_vec(), 2).await.unwrap();
        let got = v.pull(a.clone()).await.unwrap().unwrap();
        assert_eq!((got.data.as_slice(), got.meta.version), (&b"two"[..], 2));

        v.put_secret(a.clone(), n.clone(), b"s1".to_vec(), 1)
            .await
            .unwrap();
        assert_eq!(
            v.get_secret(a.clone(), n.clone())
                .await
                .unwrap()
                .unwrap()
                .data,
            b"s1"
        );
        v.put_secret(a.clone(), n.clone(), b"s2".to_vec(), 2)
            .await
            .unwrap();
        assert_eq!(
            v.get_secret(a.clone(), n.clone())
                .await
                .unwrap()
                .unwrap()
                .data,
            b"s2"
        );
        assert!(v.delete_secret(a.clone(), n.clone()).await.unwrap());
        assert!(v.get_secret(a.clone(), n.clone()).await.unwrap().is_none());
        // Recreated after the delete with a lower version: the new one is served.
        v.put_secret(a.clone(), n.clone(), b"s0".to_vec(), 1)
            .await
            .unwrap();
        let got = v.get_secret(a.clone(), n.clone()).await.unwrap().unwrap();
        assert_eq!((got.data.as_slice(), got.meta.version), (&b"s0"[..], 1));
    }

    #[tokio::test]
    async fn a_hit_does_not_touch_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let v = vault(dir.path(), 1 << 20);
        let a = id('a');
        v.push(a.clone(), b"one".to_vec(), 1).await.unwrap();
        // Filled by a read (never by the write).
        assert_eq!(v.cache.entries(), 0);
        v.pull(a.clone()).await.unwrap().unwrap();
        assert_eq!(v.cache.entries(), 1);
        // With the file gone, the cached record is still served: the read did
        // not go to the disk. (Only a writer may change what the disk holds.)
        let share = dir.path().join("shares").join(a.as_str()).join("share.bin");
        std::fs::remove_file(share).unwrap();
        assert_eq!(v.pull(a.clone()).await.unwrap().unwrap().data, b"one");
    }

    /// Readers racing a writer never see a version older than the last
    /// acknowledged push (nor a non-monotonic sequence).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_pulls_never_go_back_in_time() {
        let dir = tempfile::tempdir().unwrap();
        // Without a cache too: the baseline the cache must not weaken.
        for cache_bytes in [1 << 20, 0] {
            let v = vault(dir.path(), cache_bytes);
            let a = id(if cache_bytes == 0 { 'b' } else { 'a' });
            let acked = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let writer = {
                let (v, a, acked) = (v.clone(), a.clone(), Arc::clone(&acked));
                tokio::spawn(async move {
                    for version in 1..=200u64 {
                        v.push(a.clone(), version.to_be_bytes().to_vec(), version)
                            .await
                            .unwrap();
                        acked.store(version, std::sync::atomic::Ordering::SeqCst);
                    }
                })
            };
            let readers: Vec<_> = (0..4)
                .map(|_| {
                    let (v, a, acked) = (v.clone(), a.clone(), Arc::clone(&acked));
                    tokio::spawn(async move {
                        let mut last_seen = 0;
                        loop {
                            let floor = acked.load(std::sync::atomic::Ordering::SeqCst);
                            let seen = match v.pull(a.clone()).await.unwrap() {
                                Some(s) => {
                                    let d = u64::from_be_bytes(s.data[..8].try_into().unwrap());
                                    assert_eq!(d, s.meta.version);
                                    d
                                }
                                None => 0,
                            };
                            assert!(seen >= floor, "saw {seen} after {floor} was acknowledged");
                            assert!(seen >= last_seen, "saw {seen} after {last_seen}");
                            last_seen = seen;
                            if floor == 200 {
                                return;
                            }
                            // A hit never awaits anything: let the writer run.
                            tokio::task::yield_now().await;
                        }
                    })
                })
                .collect();
            writer.await.unwrap();
            for r in readers {
                r.await.unwrap();
            }
        }
    }
}
