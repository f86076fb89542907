//! Attachment bytes, streamed in and out, never held whole in memory.
//! A local directory ([`local::LocalBlobs`], the default) or any
//! S3-compatible object store ([`s3::S3Blobs`]).

pub mod local;
pub mod s3;

use std::io;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use tokio::io::AsyncRead;
use uuid::Uuid;

pub use local::LocalBlobs;
pub use s3::S3Blobs;

pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;
pub type BlobReader = Pin<Box<dyn AsyncRead + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob exceeds {max} bytes")]
    TooLarge { max: u64 },
    /// The client's body stream failed (disconnect, bad framing).
    #[error("upload interrupted: {0}")]
    Body(io::Error),
    #[error("blob storage: {0}")]
    Io(#[from] io::Error),
}

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Streams `body` into blob `id`, failing with `TooLarge` as soon as more
    /// than `max` bytes arrived. The blob is visible only once complete and durable.
    async fn put(&self, id: Uuid, body: ByteStream, max: u64) -> Result<u64, BlobError>;
    /// `(size, reader)` of blob `id`, if it exists.
    async fn open(&self, id: Uuid) -> Result<Option<(u64, BlobReader)>, BlobError>;
    /// Deletes blob `id`; a missing blob is not an error.
    async fn delete(&self, id: Uuid) -> Result<(), BlobError>;
}
