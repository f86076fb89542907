//! Blobs as files: `<dir>/<uuid>`, written to `<dir>/tmp/<uuid>.part`,
//! fsynced, renamed into place and the directory fsynced, so a crash never
//! leaves a partial blob under a real name.

use std::io;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use futures::StreamExt;
use tokio::fs;
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use super::{BlobError, BlobReader, BlobStore, ByteStream};

pub struct LocalBlobs {
    dir: PathBuf,
    tmp: PathBuf,
}

impl LocalBlobs {
    /// Creates the directories and removes partial uploads left by a crash.
    pub async fn open(dir: &Path) -> io::Result<Self> {
        let tmp = dir.join("tmp");
        fs::create_dir_all(&tmp).await?;
        let mut entries = fs::read_dir(&tmp).await?;
        while let Some(entry) = entries.next_entry().await? {
            let _ = fs::remove_file(entry.path()).await;
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            tmp,
        })
    }

    fn path(&self, id: Uuid) -> PathBuf {
        self.dir.join(id.to_string())
    }

    async fn write(&self, part: &Path, mut body: ByteStream, max: u64) -> Result<u64, BlobError> {
        let mut file = fs::File::create(part).await?;
        let mut written: u64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(BlobError::Body)?;
            written += chunk.len() as u64;
            if written > max {
                return Err(BlobError::TooLarge { max });
            }
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        file.sync_all().await?;
        Ok(written)
    }
}

#[async_trait]
impl BlobStore for LocalBlobs {
    async fn put(&self, id: Uuid, body: ByteStream, max: u64) -> Result<u64, BlobError> {
        let part = self.tmp.join(format!("{id}.part"));
        match self.write(&part, body, max).await {
            Ok(size) => {
                fs::rename(&part, self.path(id)).await?;
                fs::File::open(&self.dir).await?.sync_all().await?;
                Ok(size)
            }
            Err(e) => {
                let _ = fs::remove_file(&part).await;
                Err(e)
            }
        }
    }

    async fn open(&self, id: Uuid) -> Result<Option<(u64, BlobReader)>, BlobError> {
        match fs::File::open(self.path(id)).await {
            Ok(file) => {
                let size = file.metadata().await?.len();
                Ok(Some((size, Box::pin(file))))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(&self, id: Uuid) -> Result<(), BlobError> {
        match fs::remove_file(self.path(id)).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tokio::io::AsyncReadExt;

    fn stream(chunks: Vec<&'static [u8]>) -> ByteStream {
        Box::pin(futures::stream::iter(
            chunks.into_iter().map(|c| Ok(Bytes::from_static(c))),
        ))
    }

    #[tokio::test]
    async fn round_trip_and_limit() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = LocalBlobs::open(dir.path()).await.unwrap();
        let id = Uuid::new_v4();
        assert_eq!(
            blobs
                .put(id, stream(vec![b"hello ", b"world"]), 11)
                .await
                .unwrap(),
            11
        );
        let (size, mut reader) = blobs.open(id).await.unwrap().unwrap();
        let mut out = Vec::new();
        reader.read_to_end(&mut out).await.unwrap();
        assert_eq!((size, out.as_slice()), (11, &b"hello world"[..]));

        let big = Uuid::new_v4();
        let err = blobs
            .put(big, stream(vec![b"0123456789", b"x"]), 10)
            .await
            .unwrap_err();
        assert!(matches!(err, BlobError::TooLarge { max: 10 }));
        assert!(blobs.open(big).await.unwrap().is_none());
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );

        blobs.delete(id).await.unwrap();
        blobs.delete(id).await.unwrap();
        assert!(blobs.open(id).await.unwrap().is_none());
    }
}
