//! Attachments: opaque encrypted blobs with a TTL, addressed by random UUID.

use uuid::Uuid;

use super::{Relay, now_secs};
use crate::blobs::{BlobError, BlobReader, ByteStream};
use crate::error::{Error, Result};
use crate::store::Attachment;

impl Relay {
    /// Streams an upload to blob storage; `declared_len` (Content-Length)
    /// over the limit is refused before a byte is read.
    pub async fn upload_attachment(
        &self,
        owner: Uuid,
        declared_len: Option<u64>,
        body: ByteStream,
    ) -> Result<Attachment> {
        let max = self.config.storage_max_size_bytes;
        let too_large = || {
            Error::invalid(format!(
                "attachment exceeds the maximum size of {max} bytes"
            ))
        };
        if declared_len.is_some_and(|len| len > max) {
            return Err(too_large());
        }
        let id = Uuid::new_v4();
        let size = match self.blobs.put(id, body, max).await {
            Ok(size) => size,
            Err(BlobError::TooLarge { .. }) => return Err(too_large()),
            Err(BlobError::Body(e)) => {
                return Err(Error::invalid(format!("upload interrupted: {e}")));
            }
            Err(BlobError::Io(e)) => return Err(Error::Internal(format!("blob write: {e}"))),
        };
        let now = now_secs();
        let attachment = Attachment {
            id,
            size,
            expires_at: now + self.config.attachment_ttl.as_secs() as i64,
        };
        if let Err(e) = self.store.insert_attachment(attachment, owner, now).await {
            let _ = self.blobs.delete(id).await;
            return Err(e.into());
        }
        Ok(attachment)
    }

    /// `(size, reader)` of an unexpired attachment.
    pub async fn download_attachment(&self, id: Uuid) -> Result<(u64, BlobReader)> {
        self.store
            .attachment(id, now_secs())
            .await?
            .ok_or(Error::NotFound)?;
        match self.blobs.open(id).await {
            Ok(Some(found)) => Ok(found),
            Ok(None) => Err(Error::NotFound),
            Err(e) => Err(Error::Internal(format!("blob read: {e}"))),
        }
    }
}
