//! Taking over a reference guardian's data directory.
//!
//! The reference stores the bare share in `share.bin`, its version beside it
//! (`version` for V1, `meta.json` for V2) and an HMAC under a key of its own
//! in `checksum.bin`. On the first start on such a directory (no
//! `integrity.key` yet) every such share is rewritten as a record (see
//! `record.rs`), with the same version. A marker file makes the import
//! resume after a crash; once it is gone, a `share.bin` without a record
//! header is corrupt like any other (never served).

use std::path::Path;

use super::{FsStore, Layout, META_FILE, RECORD_FILE, VERSION_FILE, now_ns, record_dirs};
use crate::config::MAX_SHARE_SIZE;
use crate::identity::{Identity, SecretName};
use crate::storage::StoreError;
use crate::storage::atomic::{replace_durable, sync_dir};
use crate::storage::record::{self, Owner, RecordMeta};

/// Present while an import is in progress.
const IMPORT_MARKER: &str = ".reference-import";

/// Called on the first start on `root` (before `integrity.key` exists):
/// if it holds shares, they are the reference's, to be imported. The marker
/// is durable before the key is created, so a crash in between cannot leave
/// them unimported.
pub(super) fn mark_import(root: &Path) -> Result<(), StoreError> {
    if record_dirs(root)?.is_empty() {
        return Ok(());
    }
    replace_durable(root, IMPORT_MARKER, b"")
}

impl FsStore {
    /// Imports the reference's shares while an import is marked pending.
    pub(super) fn import_reference_layout(&self) -> Result<(), StoreError> {
        let marker = self.root.join(IMPORT_MARKER);
        if !marker.exists() {
            return Ok(());
        }
        let mut imported = 0usize;
        for (dir, layout) in record_dirs(&self.root)? {
            match self.import_record(&dir, layout) {
                Ok(true) => imported += 1,
                Ok(false) => {}
                Err(reason) => tracing::warn!(
                    dir = %dir.display(),
                    %reason,
                    "share of the reference layout not imported (it will not be served)"
                ),
            }
        }
        std::fs::remove_file(&marker).map_err(|e| StoreError::io(&marker, e))?;
        sync_dir(&self.root)?;
        if imported > 0 {
            tracing::info!(records = imported, "imported a reference guardian's shares");
        }
        Ok(())
    }

    /// Rewrites `dir`'s bare share as a record; false when it already is one.
    fn import_record(&self, dir: &Path, layout: Layout) -> Result<bool, String> {
        let data = match std::fs::read(dir.join(RECORD_FILE)) {
            Ok(data) => data,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e.to_string()),
        };
        if record::peek_meta(&data).is_some() {
            return Ok(false);
        }
        if data.is_empty() || data.len() > MAX_SHARE_SIZE {
            return Err(format!("share of {} bytes", data.len()));
        }
        let file_name = |p: &Path| {
            p.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string()
        };
        // Identities are stored lower-case; another spelling would be a
        // directory no request can reach.
        let identity = |name: String| match Identity::parse(&name) {
            Ok(id) if id.as_str() == name => Ok(id),
            _ => Err(format!("{name:?} is not a lower-case identity")),
        };
        let encoded = match layout {
            Layout::Share => {
                let id = identity(file_name(dir))?;
                let version = std::fs::read_to_string(dir.join(VERSION_FILE))
                    .map_err(|e| format!("version file: {e}"))?
                    .trim()
                    .parse::<u64>()
                    .map_err(|e| format!("version file: {e}"))?;
                let now = now_ns();
                let meta = RecordMeta {
                    version,
                    created_ns: now,
                    updated_ns: now,
                    size: data.len() as u64,
                };
                record::encode(&self.key, Owner::Share(&id), &meta, &data)
            }
            Layout::Secret => {
                let id = identity(dir.parent().map(file_name).unwrap_or_default())?;
                let name = SecretName::parse(&file_name(dir))
                    .map_err(|_| "not a valid secret name".to_string())?;
                let meta: RecordMeta = std::fs::read(dir.join(META_FILE))
                    .map_err(|e| e.to_string())
                    .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
                    .map_err(|e| format!("meta.json: {e}"))?;
                if meta.size != data.len() as u64 {
                    return Err(format!(
                        "meta.json says {} bytes, share.bin holds {}",
                        meta.size,
                        data.len()
                    ));
                }
                record::encode(&self.key, Owner::Secret(&id, &name), &meta, &data)
            }
        };
        replace_durable(dir, RECORD_FILE, &encoded).map_err(|e| e.to_string())?;
        Ok(true)
    }
}
