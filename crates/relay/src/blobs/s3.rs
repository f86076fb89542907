//! Blobs in any S3-compatible object store (`--storage s3://bucket[/prefix]`),
//! through `object_store`.
//!
//! Uploads stream: the body is cut into parts of [`PART_BYTES`] (the S3
//! minimum) and each part is sent before the next one is read, so one
//! upload holds at most one part in memory whatever its size; a body
//! smaller than one part is a single PUT. An upload that fails or grows
//! past the limit is aborted, so no partial object ever appears under a
//! real key. Downloads stream the object's body straight through.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, AwsAuthorizer, AwsCredential};
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload,
    RetryConfig,
};
use tokio_util::io::StreamReader;
use uuid::Uuid;

use super::{BlobError, BlobReader, BlobStore, ByteStream};
use crate::backoff::Backoff;
use crate::config::S3Settings;

/// Size of one multipart part: S3's minimum for every part but the last.
pub const PART_BYTES: usize = 5 * 1024 * 1024;
/// Granularity in which a part is handed to the HTTP client.
const SLICE_BYTES: usize = 64 * 1024;

pub struct S3Blobs {
    store: Arc<AmazonS3>,
    prefix: String,
}

fn io_err(e: object_store::Error) -> BlobError {
    BlobError::Io(io::Error::other(e))
}

impl S3Blobs {
    /// Builds the client and makes sure the bucket exists (creating it when
    /// missing), retrying an unreachable endpoint as `backoff` says.
    pub async fn open(settings: &S3Settings, backoff: Backoff) -> anyhow::Result<Self> {
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&settings.bucket)
            .with_region(&settings.region)
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(Duration::from_secs(60))
                    .with_connect_timeout(Duration::from_secs(5)),
            )
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: backoff.initial,
                    max_backoff: backoff.max,
                    base: 2.,
                },
                max_retries: 3,
                retry_timeout: Duration::from_secs(30),
            });
        if let Some(endpoint) = &settings.endpoint {
            // S3-compatible servers: path-style URLs, plain HTTP if asked for.
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        if let (Some(id), Some(secret)) = (&settings.access_key_id, &settings.secret_access_key) {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        }
        let store = Arc::new(builder.build()?);
        let blobs = Self {
            store,
            prefix: settings.prefix.clone(),
        };
        blobs.ensure_bucket(settings, backoff).await?;
        Ok(blobs)
    }

    fn path(&self, id: Uuid) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(id.to_string())
        } else {
            ObjectPath::from(format!("{}/{id}", self.prefix))
        }
    }

    /// A cheap authenticated request: lists at most a page under the prefix.
    pub async fn check(&self) -> Result<(), object_store::Error> {
        let prefix = (!self.prefix.is_empty()).then(|| ObjectPath::from(self.prefix.as_str()));
        self.store
            .list_with_delimiter(prefix.as_ref())
            .await
            .map(|_| ())
    }

    async fn ensure_bucket(&self, s: &S3Settings, backoff: Backoff) -> anyhow::Result<()> {
        let missing = |e: &object_store::Error| e.to_string().contains("NoSuchBucket");
        match backoff.retry("S3", |e| !missing(e), || self.check()).await {
            Ok(()) => Ok(()),
            Err(e) if missing(&e) => {
                create_bucket(s).await?;
                tracing::info!(bucket = %s.bucket, "created the S3 bucket");
                self.check().await.map_err(|e| {
                    anyhow::anyhow!(
                        "bucket {} still not usable after creating it: {e}",
                        s.bucket
                    )
                })
            }
            Err(e) => anyhow::bail!(
                "S3 bucket {} at {} is not usable (check --s3-endpoint, --s3-region and the credentials): {e}",
                s.bucket,
                s.endpoint.as_deref().unwrap_or("AWS")
            ),
        }
    }

    async fn upload_parts(
        &self,
        upload: &mut Box<dyn MultipartUpload>,
        first: PutPayload,
        parts: &mut Parts,
    ) -> Result<(), BlobError> {
        let mut part = Some(first);
        while let Some(payload) = part {
            upload.put_part(payload).await.map_err(io_err)?;
            part = parts.next().await?;
        }
        upload.complete().await.map_err(io_err)?;
        Ok(())
    }
}

/// Cuts a body into parts of exactly [`PART_BYTES`] (the last one shorter),
/// copied into one buffer that is reused for every part once the previous
/// part's request has released it: one allocation per upload, instead of a
/// fresh 5 MiB per part that the allocator may keep in several arenas.
struct Parts {
    body: ByteStream,
    buf: BytesMut,
    /// The rest of a chunk that straddled the previous part's end.
    carry: Option<Bytes>,
    total: u64,
    max: u64,
}

impl Parts {
    /// The next part; `Ok(None)` at the end of the body.
    async fn next(&mut self) -> Result<Option<PutPayload>, BlobError> {
        // Reclaims the previous part's memory when nothing holds it anymore.
        self.buf.reserve(PART_BYTES);
        let part = &mut self.buf;
        loop {
            let chunk = match self.carry.take() {
                Some(chunk) => chunk,
                None => match self.body.next().await {
                    Some(chunk) => {
                        let chunk = chunk.map_err(BlobError::Body)?;
                        self.total += chunk.len() as u64;
                        if self.total > self.max {
                            return Err(BlobError::TooLarge { max: self.max });
                        }
                        chunk
                    }
                    None => break,
                },
            };
            let room = PART_BYTES - part.len();
            if chunk.len() > room {
                part.extend_from_slice(&chunk[..room]);
                self.carry = Some(chunk.slice(room..));
            } else {
                part.extend_from_slice(&chunk);
            }
            if part.len() == PART_BYTES {
                break;
            }
        }
        // Handed to the HTTP client as 64 KiB slices of the one buffer: a
        // client that flattens body chunks into its write buffer then
        // copies 64 KiB at a time, not the whole part.
        let part = self.buf.split().freeze();
        Ok((!part.is_empty()).then(|| {
            (0..part.len())
                .step_by(SLICE_BYTES)
                .map(|at| part.slice(at..(at + SLICE_BYTES).min(part.len())))
                .collect()
        }))
    }
}

/// `PUT /<bucket>` signed with SigV4 (object_store has no bucket API).
async fn create_bucket(s: &S3Settings) -> anyhow::Result<()> {
    let endpoint = s
        .endpoint
        .clone()
        .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", s.region));
    let url = format!("{}/{}", endpoint.trim_end_matches('/'), s.bucket);
    let (Some(key_id), Some(secret_key)) = (&s.access_key_id, &s.secret_access_key) else {
        anyhow::bail!(
            "bucket {} does not exist and no credentials were given to create it",
            s.bucket
        );
    };
    let credential = AwsCredential {
        key_id: key_id.clone(),
        secret_key: secret_key.clone(),
        token: None,
    };
    let body = if s.region == "us-east-1" {
        String::new()
    } else {
        format!(
            "<CreateBucketConfiguration><LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
            s.region
        )
    };
    let mut request = object_store::client::HttpRequest::new(body.clone().into());
    *request.method_mut() = axum::http::Method::PUT;
    *request.uri_mut() = url.parse()?;
    AwsAuthorizer::new(&credential, "s3", &s.region).authorize(&mut request, None);
    let response = reqwest::Client::new()
        .put(&url)
        .headers(request.headers().clone())
        .body(body)
        .send()
        .await?;
    let status = response.status();
    // 409: someone (another node) created it first.
    if status.is_success() || status.as_u16() == 409 {
        return Ok(());
    }
    let text = response.text().await.unwrap_or_default();
    anyhow::bail!("creating bucket {} failed: {status} {text}", s.bucket)
}

#[async_trait]
impl BlobStore for S3Blobs {
    async fn put(&self, id: Uuid, body: ByteStream, max: u64) -> Result<u64, BlobError> {
        let path = self.path(id);
        let mut parts = Parts {
            body,
            buf: BytesMut::new(),
            carry: None,
            total: 0,
            max,
        };
        let Some(first) = parts.next().await? else {
            self.store
                .put(&path, PutPayload::default())
                .await
                .map_err(io_err)?;
            return Ok(0);
        };
        if first.content_length() < PART_BYTES {
            // The whole body fit in one part: a plain PUT.
            self.store.put(&path, first).await.map_err(io_err)?;
            return Ok(parts.total);
        }
        let mut upload = self.store.put_multipart(&path).await.map_err(io_err)?;
        match self.upload_parts(&mut upload, first, &mut parts).await {
            Ok(()) => Ok(parts.total),
            Err(e) => {
                if let Err(abort) = upload.abort().await {
                    tracing::warn!(%id, error = %abort, "could not abort a multipart upload");
                }
                Err(e)
            }
        }
    }

    async fn open(&self, id: Uuid) -> Result<Option<(u64, BlobReader)>, BlobError> {
        match self.store.get(&self.path(id)).await {
            Ok(result) => {
                let size = result.meta.size;
                let stream = result.into_stream().map_err(io::Error::other);
                Ok(Some((size, Box::pin(StreamReader::new(stream)))))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(io_err(e)),
        }
    }

    async fn delete(&self, id: Uuid) -> Result<(), BlobError> {
        match self.store.delete(&self.path(id)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(io_err(e)),
        }
    }
}
