//! The on-disk backend.
//!
//! ```text
//! <data_dir>/integrity.key                      32 random bytes, 0600, created on first run
//! <data_dir>/shares/<identity>/share.bin        V1 record (see record.rs) — the commit point
//! <data_dir>/shares/<identity>/version          decimal version (mirror, for operators)
//! <data_dir>/shares/<identity>/checksum.bin     the record's HMAC (mirror)
//! <data_dir>/vaults/<identity>/<name>/share.bin    V2 record — the commit point
//! <data_dir>/vaults/<identity>/<name>/checksum.bin the record's HMAC (mirror)
//! <data_dir>/vaults/<identity>/<name>/meta.json    {"version","created_ns","updated_ns","size"} (mirror)
//! ```
//!
//! Only `share.bin` is trusted on read: it is replaced by one atomic rename
//! and verified against its HMAC every time, and it is the only file a write
//! flushes (its fsync, then the directory's). The mirrors are derived from
//! it: overwritten in place after it, without fsync or temp file, so a
//! crash can leave them stale, torn, empty or missing — [`FsStore::open`]
//! rebuilds them from the records.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use super::atomic::{
    create_dir_durable, overwrite_lazy, remove_stale_temps, replace_durable, sync_dir,
};
use super::record::{self, HEADER_LEN, IntegrityKey, Owner, RecordMeta};
use super::{SecretSummary, ShareStore, StoreError, Stored};
use crate::config::MAX_SHARE_SIZE;
use crate::identity::{Identity, SecretName};

mod reference;

const RECORD_FILE: &str = "share.bin";
const CHECKSUM_FILE: &str = "checksum.bin";
const VERSION_FILE: &str = "version";
const META_FILE: &str = "meta.json";

/// Filesystem implementation of [`ShareStore`].
pub struct FsStore {
    root: PathBuf,
    key: IntegrityKey,
    shares: AtomicU64,
    /// Secrets per identity, counted from disk on first use and then kept up
    /// to date, so the per-identity limit costs O(1) per write and writes of
    /// different secrets of one identity need not be serialized.
    secret_counts: Mutex<HashMap<Identity, usize>>,
}

impl FsStore {
    /// Opens (creating on first run) the data directory and its integrity key.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        create_dir_durable(&root.join("shares"))?;
        create_dir_durable(&root.join("vaults"))?;
        let key_path = root.join("integrity.key");
        if !key_path.exists() {
            // First start on this directory: whatever shares it holds were
            // written by a reference guardian (see `reference`).
            reference::mark_import(root)?;
        }
        let key =
            IntegrityKey::load_or_create(&key_path).map_err(|e| StoreError::io(&key_path, e))?;
        let store = Self {
            root: root.to_path_buf(),
            key,
            shares: AtomicU64::new(0),
            secret_counts: Mutex::new(HashMap::new()),
        };
        store.import_reference_layout()?;
        store.shares.store(store.count_shares()?, Ordering::Relaxed);
        store.sweep_trash()?;
        store.rebuild_mirrors()?;
        Ok(store)
    }

    fn share_dir(&self, id: &Identity) -> PathBuf {
        self.root.join("shares").join(id.as_str())
    }

    fn identity_vault(&self, id: &Identity) -> PathBuf {
        self.root.join("vaults").join(id.as_str())
    }

    fn secret_dir(&self, id: &Identity, name: &SecretName) -> PathBuf {
        self.identity_vault(id).join(name.as_str())
    }

    fn count_shares(&self) -> Result<u64, StoreError> {
        let dir = self.root.join("shares");
        let entries = std::fs::read_dir(&dir).map_err(|e| StoreError::io(&dir, e))?;
        Ok(entries
            .filter_map(Result::ok)
            .filter(|e| e.path().join(RECORD_FILE).is_file())
            .count() as u64)
    }

    /// Removes what an interrupted delete left behind (`.trash-*` directories).
    fn sweep_trash(&self) -> Result<(), StoreError> {
        let vaults = self.root.join("vaults");
        let ids = std::fs::read_dir(&vaults).map_err(|e| StoreError::io(&vaults, e))?;
        for id_dir in ids.filter_map(Result::ok) {
            let Ok(entries) = std::fs::read_dir(id_dir.path()) else {
                continue;
            };
            for e in entries.filter_map(Result::ok) {
                if e.file_name().to_string_lossy().starts_with(".trash-") {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        Ok(())
    }

    /// Brings every record's mirror files in line with the record (a crash
    /// after a write's commit point can leave them stale or empty) and drops
    /// the temp files a crash left. Runs before anything is served: no
    /// writer is about. Reads only each record's header (not verified: the
    /// mirrors are never trusted, and a corrupt record is refused on read).
    fn rebuild_mirrors(&self) -> Result<(), StoreError> {
        let mut rebuilt = 0usize;
        for (dir, layout) in record_dirs(&self.root)? {
            remove_stale_temps(&dir);
            let path = dir.join(RECORD_FILE);
            let mut header = [0u8; HEADER_LEN];
            if File::open(&path)
                .and_then(|mut f| f.read_exact(&mut header))
                .is_err()
            {
                continue;
            }
            let Some(meta) = record::peek_meta(&header) else {
                continue;
            };
            for (name, bytes) in mirror_files(layout, &meta, record::checksum_of(&header)) {
                if std::fs::read(dir.join(name)).ok().as_deref() == Some(bytes.as_slice()) {
                    continue;
                }
                match overwrite_lazy(&dir, name, &bytes) {
                    Ok(()) => rebuilt += 1,
                    Err(e) => tracing::warn!(error = %e, "mirror file not rebuilt"),
                }
            }
        }
        if rebuilt > 0 {
            tracing::info!(files = rebuilt, "mirror files rebuilt from their records");
        }
        Ok(())
    }

    /// Reads and verifies the record in `dir`; `None` when there is none.
    fn read_record(&self, dir: &Path, owner: Owner<'_>) -> Result<Option<Stored>, StoreError> {
        let path = dir.join(RECORD_FILE);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io(&path, e)),
        };
        let limit = (HEADER_LEN + MAX_SHARE_SIZE) as u64;
        let mut bytes = Vec::new();
        file.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| StoreError::io(&path, e))?;
        if bytes.len() as u64 > limit {
            return Err(StoreError::Corrupt(path));
        }
        match record::decode(&self.key, owner, &bytes) {
            Some((meta, data)) => Ok(Some(Stored { data, meta })),
            None => Err(StoreError::Corrupt(path)),
        }
    }

    /// Anti-rollback check (against the record on disk), then the durable
    /// write of the record, then its mirrors. Returns the new metadata and
    /// whether the record is new.
    fn write_record(
        &self,
        dir: &Path,
        owner: Owner<'_>,
        data: &[u8],
        version: u64,
    ) -> Result<(RecordMeta, bool), StoreError> {
        let current = self.read_record(dir, owner)?;
        if let Some(cur) = &current
            && version <= cur.meta.version
        {
            return Err(StoreError::VersionNotGreater {
                stored: cur.meta.version,
                new: version,
            });
        }
        let now = now_ns();
        let meta = RecordMeta {
            version,
            created_ns: current.as_ref().map_or(now, |c| c.meta.created_ns),
            updated_ns: now,
            size: data.len() as u64,
        };
        let encoded = record::encode(&self.key, owner, &meta, data);
        create_dir_durable(dir)?;
        remove_stale_temps(dir);
        // The commit point: once this returns the write is durable.
        replace_durable(dir, RECORD_FILE, &encoded)?;
        // The record is stored whatever happens to its mirrors: a failure
        // here is logged, and the next start rebuilds them.
        let layout = match owner {
            Owner::Share(_) => Layout::Share,
            Owner::Secret(..) => Layout::Secret,
        };
        for (name, bytes) in mirror_files(layout, &meta, record::checksum_of(&encoded)) {
            if let Err(e) = overwrite_lazy(dir, name, &bytes) {
                tracing::warn!(error = %e, "mirror file not updated (rebuilt at next start)");
            }
        }
        Ok((meta, current.is_none()))
    }

    fn counts(&self) -> MutexGuard<'_, HashMap<Identity, usize>> {
        self.secret_counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The identity's secret count, scanned from disk the first time.
    fn secret_count<'a>(
        &self,
        counts: &'a mut HashMap<Identity, usize>,
        identity: &Identity,
    ) -> Result<&'a mut usize, StoreError> {
        Ok(match counts.entry(identity.clone()) {
            Entry::Occupied(count) => count.into_mut(),
            Entry::Vacant(slot) => slot.insert(self.secret_names(identity)?.len()),
        })
    }

    /// Secrets of an identity whose record exists (half-created directories
    /// from an interrupted first write are not secrets).
    fn secret_names(&self, id: &Identity) -> Result<Vec<SecretName>, StoreError> {
        let dir = self.identity_vault(id);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::io(&dir, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io(&dir, e))?;
            let Some(name) = entry
                .file_name()
                .to_str()
                .and_then(|n| SecretName::parse(n).ok())
            else {
                continue;
            };
            if entry.path().join(RECORD_FILE).is_file() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }
}

impl ShareStore for FsStore {
    fn put_share(
        &self,
        identity: &Identity,
        share: &[u8],
        version: u64,
    ) -> Result<RecordMeta, StoreError> {
        let (meta, created) = self.write_record(
            &self.share_dir(identity),
            Owner::Share(identity),
            share,
            version,
        )?;
        if created {
            self.shares.fetch_add(1, Ordering::Relaxed);
        }
        Ok(meta)
    }

    fn get_share(&self, identity: &Identity) -> Result<Option<Stored>, StoreError> {
        self.read_record(&self.share_dir(identity), Owner::Share(identity))
    }

    fn put_secret(
        &self,
        identity: &Identity,
        name: &SecretName,
        share: &[u8],
        version: u64,
        max_secrets: usize,
    ) -> Result<RecordMeta, StoreError> {
        let dir = self.secret_dir(identity, name);
        // A new name takes a slot first (under the counts lock, so concurrent
        // writers of other names cannot overshoot the limit) and gives it
        // back if the write fails.
        let is_new = !dir.join(RECORD_FILE).is_file();
        if is_new {
            let mut counts = self.counts();
            let count = self.secret_count(&mut counts, identity)?;
            if *count >= max_secrets {
                return Err(StoreError::TooManySecrets);
            }
            *count += 1;
        }
        let written = self.write_record(&dir, Owner::Secret(identity, name), share, version);
        if is_new
            && written.is_err()
            && let Some(count) = self.counts().get_mut(identity)
        {
            *count = count.saturating_sub(1);
        }
        Ok(written?.0)
    }

    fn get_secret(
        &self,
        identity: &Identity,
        name: &SecretName,
    ) -> Result<Option<Stored>, StoreError> {
        self.read_record(
            &self.secret_dir(identity, name),
            Owner::Secret(identity, name),
        )
    }

    fn delete_secret(&self, identity: &Identity, name: &SecretName) -> Result<bool, StoreError> {
        let dir = self.secret_dir(identity, name);
        if !dir.join(RECORD_FILE).is_file() {
            return Ok(false);
        }
        // Rename away first (atomic and durable), then remove at leisure: a
        // crash mid-delete never leaves a half-deleted secret readable.
        let parent = self.identity_vault(identity);
        let trash = parent.join(format!(".trash-{name}-{:016x}", rand::random::<u64>()));
        {
            // Rename and count change together, so a first-use count scan
            // never sees one without the other.
            let mut counts = self.counts();
            std::fs::rename(&dir, &trash).map_err(|e| StoreError::io(&dir, e))?;
            if let Some(count) = counts.get_mut(identity) {
                *count = count.saturating_sub(1);
            }
        }
        sync_dir(&parent)?;
        std::fs::remove_dir_all(&trash).map_err(|e| StoreError::io(&trash, e))?;
        Ok(true)
    }

    fn list_secrets(&self, identity: &Identity) -> Result<Vec<SecretSummary>, StoreError> {
        let mut out = Vec::new();
        for name in self.secret_names(identity)? {
            let path = self.secret_dir(identity, &name).join(RECORD_FILE);
            let mut header = [0u8; HEADER_LEN];
            let read = File::open(&path).and_then(|mut f| f.read_exact(&mut header));
            match read {
                Ok(()) => {
                    let meta = record::peek_meta(&header)
                        .ok_or_else(|| StoreError::Corrupt(path.clone()))?;
                    out.push(SecretSummary {
                        name: name.as_str().to_string(),
                        meta,
                    });
                }
                // Deleted between the directory scan and now.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io(&path, e)),
            }
        }
        Ok(out)
    }

    fn share_count(&self) -> u64 {
        self.shares.load(Ordering::Relaxed)
    }

    /// The layout's directories exist and the data directory accepts a new
    /// file (a disk remounted read-only or a lost permission fails here).
    fn check(&self) -> Result<(), StoreError> {
        for dir in ["shares", "vaults"] {
            let path = self.root.join(dir);
            let meta = std::fs::metadata(&path).map_err(|e| StoreError::io(&path, e))?;
            if !meta.is_dir() {
                return Err(StoreError::Corrupt(path));
            }
        }
        let probe = self.root.join(".ready-probe");
        std::fs::write(&probe, b"").map_err(|e| StoreError::io(&probe, e))?;
        match std::fs::remove_file(&probe) {
            // A concurrent probe removed it first.
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::io(&probe, e)),
            _ => Ok(()),
        }
    }
}

/// Which mirrors a record directory carries.
#[derive(Debug, Clone, Copy)]
enum Layout {
    Share,
    Secret,
}

/// The mirror files of a record, derived from its metadata and checksum.
fn mirror_files(
    layout: Layout,
    meta: &RecordMeta,
    checksum: &[u8],
) -> [(&'static str, Vec<u8>); 2] {
    let second = match layout {
        Layout::Share => (VERSION_FILE, meta.version.to_string().into_bytes()),
        Layout::Secret => (META_FILE, serde_json::to_vec(meta).unwrap_or_default()),
    };
    [(CHECKSUM_FILE, checksum.to_vec()), second]
}

/// Every directory that may hold a record: `shares/<identity>` and
/// `vaults/<identity>/<name>` (hidden temp and trash entries skipped).
fn record_dirs(root: &Path) -> Result<Vec<(PathBuf, Layout)>, StoreError> {
    let mut dirs = Vec::new();
    for (top, layout) in [("shares", Layout::Share), ("vaults", Layout::Secret)] {
        for entry in visible_subdirs(&root.join(top))? {
            match layout {
                Layout::Share => dirs.push((entry, layout)),
                Layout::Secret => {
                    for secret in visible_subdirs(&entry).unwrap_or_default() {
                        dirs.push((secret, layout));
                    }
                }
            }
        }
    }
    Ok(dirs)
}

/// Subdirectories of `dir` whose names do not start with `.` (temp and
/// trash entries do).
fn visible_subdirs(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let entries = std::fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))?;
    Ok(entries
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect())
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(c: char) -> Identity {
        Identity::parse(&c.to_string().repeat(64)).unwrap()
    }

    #[test]
    fn v1_versions_only_go_up_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        let a = id('a');
        assert!(store.get_share(&a).unwrap().is_none());
        store.put_share(&a, b"one", 1).unwrap();
        assert!(matches!(
            store.put_share(&a, b"dup", 1),
            Err(StoreError::VersionNotGreater { stored: 1, new: 1 })
        ));
        store.put_share(&a, b"max", u64::MAX).unwrap();
        assert_eq!(store.share_count(), 1);
        drop(store);

        let store = FsStore::open(dir.path()).unwrap();
        let got = store.get_share(&a).unwrap().unwrap();
        assert_eq!(
            (got.data.as_slice(), got.meta.version),
            (&b"max"[..], u64::MAX)
        );
        assert_eq!(store.share_count(), 1);
        let share_dir = dir.path().join("shares").join(a.as_str());
        assert_eq!(
            std::fs::read_to_string(share_dir.join("version")).unwrap(),
            u64::MAX.to_string()
        );
        assert_eq!(
            std::fs::read(share_dir.join("checksum.bin")).unwrap().len(),
            32
        );
    }

    #[test]
    fn corruption_is_detected_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        let a = id('a');
        store.put_share(&a, b"secret share", 3).unwrap();
        let path = dir.path().join("shares").join(a.as_str()).join("share.bin");
        let mut bytes = std::fs::read(&path).unwrap();
        *bytes.last_mut().unwrap() ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(store.get_share(&a), Err(StoreError::Corrupt(_))));
        // Nor is it silently overwritten: its version cannot be trusted.
        assert!(matches!(
            store.put_share(&a, b"fresh", 4),
            Err(StoreError::Corrupt(_))
        ));
        // A record copied to another identity does not verify either.
        let b = id('b');
        let b_dir = dir.path().join("shares").join(b.as_str());
        std::fs::create_dir_all(&b_dir).unwrap();
        std::fs::copy(&path, b_dir.join("share.bin")).unwrap();
        assert!(matches!(store.get_share(&b), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn secrets_crud_limit_and_listing() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        let a = id('a');
        let n = |s: &str| SecretName::parse(s).unwrap();
        assert!(store.list_secrets(&a).unwrap().is_empty());
        let m = store.put_secret(&a, &n("k1"), b"v1", 1, 2).unwrap();
        let m2 = store.put_secret(&a, &n("k1"), b"v2", 2, 2).unwrap();
        assert_eq!(m.created_ns, m2.created_ns);
        store.put_secret(&a, &n("k2"), b"x", 7, 2).unwrap();
        assert!(matches!(
            store.put_secret(&a, &n("k3"), b"x", 1, 2),
            Err(StoreError::TooManySecrets)
        ));
        // Updating an existing secret at the limit is fine.
        store.put_secret(&a, &n("k2"), b"y", 8, 2).unwrap();
        let list = store.list_secrets(&a).unwrap();
        assert_eq!(
            list.iter()
                .map(|s| (s.name.as_str(), s.meta.version))
                .collect::<Vec<_>>(),
            [("k1", 2), ("k2", 8)]
        );
        let meta: RecordMeta = serde_json::from_slice(
            &std::fs::read(
                dir.path()
                    .join("vaults")
                    .join(a.as_str())
                    .join("k1/meta.json"),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(meta, m2);
        assert_eq!(store.get_secret(&a, &n("k1")).unwrap().unwrap().data, b"v2");
        assert!(store.get_secret(&id('b'), &n("k1")).unwrap().is_none());
        assert!(store.delete_secret(&a, &n("k1")).unwrap());
        assert!(!store.delete_secret(&a, &n("k1")).unwrap());
        assert!(store.get_secret(&a, &n("k1")).unwrap().is_none());
        // After a delete, the version history restarts.
        store.put_secret(&a, &n("k1"), b"again", 1, 2).unwrap();
    }

    #[test]
    fn the_secret_limit_holds_under_concurrent_writers_and_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        let a = id('a');
        let ok = std::thread::scope(|s| {
            let handles: Vec<_> = (0..20)
                .map(|i| {
                    let (store, a) = (&store, &a);
                    s.spawn(move || {
                        let name = SecretName::parse(&format!("n{i}")).unwrap();
                        store.put_secret(a, &name, b"x", 1, 10).is_ok()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(|ok| *ok)
                .count()
        });
        assert_eq!(ok, 10);
        drop(store);
        // After a restart the count is taken from disk again.
        let store = FsStore::open(dir.path()).unwrap();
        let extra = SecretName::parse("extra").unwrap();
        assert!(matches!(
            store.put_secret(&a, &extra, b"x", 1, 10),
            Err(StoreError::TooManySecrets)
        ));
        let first = SecretName::parse(&store.list_secrets(&a).unwrap()[0].name).unwrap();
        assert!(store.delete_secret(&a, &first).unwrap());
        store.put_secret(&a, &extra, b"x", 1, 10).unwrap();
    }

    #[test]
    fn stale_or_missing_mirrors_are_not_read_and_are_rebuilt_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        let a = id('a');
        let k = SecretName::parse("k").unwrap();
        store.put_share(&a, b"share", 5).unwrap();
        let secret_meta = store.put_secret(&a, &k, b"secret", 9, 10).unwrap();
        let share_dir = dir.path().join("shares").join(a.as_str());
        let secret_dir = dir.path().join("vaults").join(a.as_str()).join("k");
        let share_sum = std::fs::read(share_dir.join("checksum.bin")).unwrap();
        let secret_sum = std::fs::read(secret_dir.join("checksum.bin")).unwrap();

        // What a power cut after the commit point can leave: mirrors missing,
        // empty, or of the previous write; plus a temp file.
        std::fs::remove_file(share_dir.join("version")).unwrap();
        std::fs::write(share_dir.join("checksum.bin"), b"").unwrap();
        std::fs::write(secret_dir.join("meta.json"), br#"{"version":8}"#).unwrap();
        std::fs::remove_file(secret_dir.join("checksum.bin")).unwrap();
        std::fs::write(secret_dir.join(".meta.json.tmp-00ff"), b"x").unwrap();

        // Reads never rely on them.
        assert_eq!(store.get_share(&a).unwrap().unwrap().meta.version, 5);
        assert_eq!(store.get_secret(&a, &k).unwrap().unwrap().meta.version, 9);
        assert_eq!(store.list_secrets(&a).unwrap()[0].meta.version, 9);
        assert!(matches!(
            store.put_share(&a, b"old", 5),
            Err(StoreError::VersionNotGreater { stored: 5, new: 5 })
        ));
        drop(store);

        FsStore::open(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(share_dir.join("version")).unwrap(),
            "5"
        );
        assert_eq!(
            std::fs::read(share_dir.join("checksum.bin")).unwrap(),
            share_sum
        );
        assert_eq!(
            std::fs::read(secret_dir.join("checksum.bin")).unwrap(),
            secret_sum
        );
        let meta: RecordMeta =
            serde_json::from_slice(&std::fs::read(secret_dir.join("meta.json")).unwrap()).unwrap();
        assert_eq!(meta, secret_meta);
        let mut names: Vec<_> = std::fs::read_dir(&secret_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["checksum.bin", "meta.json", "share.bin"]);
    }

    #[test]
    fn a_write_replaces_the_mirrors_of_a_previous_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        let a = id('a');
        store.put_share(&a, b"one", 1).unwrap();
        let share_dir = dir.path().join("shares").join(a.as_str());
        std::fs::remove_file(share_dir.join("version")).unwrap();
        store.put_share(&a, b"two", 2).unwrap();
        assert_eq!(
            std::fs::read_to_string(share_dir.join("version")).unwrap(),
            "2"
        );
        let record = std::fs::read(share_dir.join("share.bin")).unwrap();
        assert_eq!(
            std::fs::read(share_dir.join("checksum.bin")).unwrap(),
            record::checksum_of(&record)
        );
    }
}
