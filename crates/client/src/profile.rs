//! The profile directory: everything the client keeps on disk.
//!
//! ```text
//! <profile>/            0700
//!   keys.json           0600  identity, signed and one-time pre-key private keys
//!   session.json        0600  relay URL, user id, access + refresh token
//!   vault.key           0600  32 random bytes; the vault identity is SHA-256 of it
//!   vault-state.json    0600  last backup version per secret name
//!   contacts.json       0600  pinned identity keys of peers (trust on first use)
//!   inbox/              received messages, one JSON file each
//! ```
//!
//! Every file is replaced atomically (temporary file, fsync, rename, fsync of
//! the directory), so a crash leaves either the old or the new state.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: corrupt JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ProfileError + '_ {
    move |source| ProfileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A profile directory.
#[derive(Debug, Clone)]
pub struct Profile {
    dir: PathBuf,
}

impl Profile {
    /// Opens (creating with mode 0700 if needed) the profile at `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, ProfileError> {
        let dir = dir.into();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_err(&dir))?;
        Ok(Self { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A subdirectory (created 0700).
    pub fn subdir(&self, name: &str) -> Result<PathBuf, ProfileError> {
        let dir = self.dir.join(name);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_err(&dir))?;
        Ok(dir)
    }

    /// Reads `name` as JSON; `None` when the file does not exist.
    pub fn read_json<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, ProfileError> {
        let path = self.path(name);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| ProfileError::Json { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ProfileError::Io { path, source: e }),
        }
    }

    /// Atomically replaces `name` with `value` as JSON, mode 0600.
    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), ProfileError> {
        let path = self.path(name);
        let bytes = serde_json::to_vec_pretty(value).map_err(|source| ProfileError::Json {
            path: path.clone(),
            source,
        })?;
        write_private(&path, &bytes)
    }

    /// Removes `name` if present.
    pub fn remove(&self, name: &str) -> Result<(), ProfileError> {
        let path = self.path(name);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ProfileError::Io { path, source: e }),
        }
    }

    /// The 32-byte vault secret, created on first use.
    pub fn vault_secret(&self) -> Result<[u8; 32], ProfileError> {
        let path = self.path("vault.key");
        match fs::read(&path) {
            Ok(bytes) => bytes.try_into().map_err(|_| ProfileError::Io {
                path: path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "vault.key must be 32 bytes",
                ),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut secret = [0u8; 32];
                rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut secret);
                write_private(&path, &secret)?;
                Ok(secret)
            }
            Err(e) => Err(ProfileError::Io { path, source: e }),
        }
    }
}

/// Writes `bytes` to `path` atomically and durably with mode 0600.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ProfileError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    // The mode above only applies to new files; enforce it on reuse too.
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(io_err(&tmp))?;
    file.write_all(bytes).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))?;
    sync_dir(dir)
}

/// fsyncs a directory so a rename or create in it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<(), ProfileError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_0600_and_atomic() {
        let tmp = tempfile::tempdir().unwrap();
        let profile = Profile::open(tmp.path().join("p")).unwrap();
        assert_eq!(
            fs::metadata(profile.dir()).unwrap().permissions().mode() & 0o777,
            0o700
        );
        profile.write_json("a.json", &vec![1, 2]).unwrap();
        profile.write_json("a.json", &vec![3]).unwrap();
        assert_eq!(
            profile.read_json::<Vec<u8>>("a.json").unwrap(),
            Some(vec![3])
        );
        assert_eq!(
            fs::metadata(profile.path("a.json"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        assert_eq!(profile.read_json::<Vec<u8>>("missing.json").unwrap(), None);
        let secret = profile.vault_secret().unwrap();
        assert_eq!(profile.vault_secret().unwrap(), secret);
        assert_eq!(
            fs::metadata(profile.path("vault.key"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        // No temporary files left behind.
        let names: Vec<_> = fs::read_dir(profile.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }
}
