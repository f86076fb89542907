//! Crash-safe file replacement: temp file → fsync → rename → fsync of the
//! directory. After [`replace_durable`] returns, the new contents survive a
//! kill -9 or a power cut; before it returns, readers see the old file.
//! Files are created 0600 and directories 0700: shares are nobody else's business.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use super::StoreError;

/// Creates `dir` and any missing parents, fsyncing each parent whose entries
/// changed so the new directories themselves are durable.
pub fn create_dir_durable(dir: &Path) -> Result<(), StoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = dir
        .parent()
        .ok_or_else(|| StoreError::io(dir, std::io::ErrorKind::NotFound.into()))?;
    create_dir_durable(parent)?;
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(StoreError::io(dir, e)),
    }
    sync_dir(parent)
}

pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, e))
}

/// Durably replaces `dir/name` with `contents`: temp file → fsync → rename
/// → fsync of `dir`. Two flushes; readers see the old or the new file, whole.
pub fn replace_durable(dir: &Path, name: &str, contents: &[u8]) -> Result<(), StoreError> {
    let tmp = dir.join(format!(".{name}.tmp-{:016x}", rand::random::<u64>()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| StoreError::io(&tmp, e))?;
        f.write_all(contents)
            .and_then(|()| f.sync_all())
            .map_err(|e| StoreError::io(&tmp, e))?;
        let target = dir.join(name);
        std::fs::rename(&tmp, &target).map_err(|e| StoreError::io(&target, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    sync_dir(dir)
}

/// Overwrites `dir/name` in place, **without fsync and without a temp
/// file**: after a power cut it may be old, new, torn, empty or missing, and
/// a concurrent reader may see it half-written. Only for files derived from
/// a durable one and rebuilt from it (the mirrors, see `fs.rs`). No temp file
/// means no inode allocated and freed: in a profile of pushes on ext4, inode
/// allocation (`find_inode_bit`, `recently_deleted`) was the top kernel cost.
pub fn overwrite_lazy(dir: &Path, name: &str, contents: &[u8]) -> Result<(), StoreError> {
    let path = dir.join(name);
    // Not O_TRUNC: ext4 flushes a file truncated to zero and rewritten
    // (auto_da_alloc); shrinking to the new length afterwards does not.
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| {
            f.write_all(contents)?;
            f.set_len(contents.len() as u64)
        })
        .map_err(|e| StoreError::io(&path, e))
}

/// Removes temp files a crash left in `dir`. Only call it while holding the
/// lock of `dir`'s writer: then no temp file there belongs to a live write.
pub fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.contains(".tmp-") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        create_dir_durable(&sub).unwrap();
        replace_durable(&sub, "x", b"1").unwrap();
        overwrite_lazy(&sub, "y", b"22").unwrap();
        overwrite_lazy(&sub, "y", b"2").unwrap();
        replace_durable(&sub, "x", b"3").unwrap();
        assert_eq!(std::fs::read(sub.join("x")).unwrap(), b"3");
        assert_eq!(std::fs::read(sub.join("y")).unwrap(), b"2");
        assert_eq!(std::fs::read_dir(&sub).unwrap().count(), 2);
        std::fs::write(sub.join(".x.tmp-0123"), b"left by a crash").unwrap();
        remove_stale_temps(&sub);
        assert_eq!(std::fs::read_dir(&sub).unwrap().count(), 2);
    }
}
