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
use bytes::Bytes;
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

    /// Reads up to one part from `body`; `Ok(None)` at the end of the body.
    async fn next_part(
        body: &mut ByteStream,
        total: &mut u64,
        max: u64,
    ) -> Result<Option<PutPayload>, BlobError> {
        let mut chunks: Vec<Bytes> = Vec::new();
        let mut len = 0usize;
        while len < PART_BYTES {
            let Some(chunk) = body.next().await else {
                break;
            };
            let chunk = chunk.map_err(BlobError::Body)?;
            *total += chunk.len() as u64;
            if *total > max {
                return Err(BlobError::TooLarge { max });
            }
            len += chunk.len();
            chunks.push(chunk);
        }
        Ok((len > 0).then(|| chunks.into_iter().collect()))
    }

    async fn upload_parts(
        &self,
        upload: &mut Box<dyn MultipartUpload>,
        first: PutPayload,
        body: &mut ByteStream,
        total: &mut u64,
        max: u64,
    ) -> Result<(), BlobError> {
        let mut part = Some(first);
        while let Some(payload) = part {
            upload.put_part(payload).await.map_err(io_err)?;
            part = Self::next_part(body, total, max).await?;
        }
        upload.complete().await.map_err(io_err)?;
        Ok(())
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
    async fn put(&self, id: Uuid, mut body: ByteStream, max: u64) -> Result<u64, BlobError> {
        let path = self.path(id);
        let mut total = 0u64;
        let Some(first) = Self::next_part(&mut body, &mut total, max).await? else {
            self.store
                .put(&path, PutPayload::default())
                .await
                .map_err(io_err)?;
            return Ok(0);
        };
        if first.content_length() < PART_BYTES {
            // The whole body fit in one part: a plain PUT.
            self.store.put(&path, first).await.map_err(io_err)?;
            return Ok(total);
        }
        let mut upload = self.store.put_multipart(&path).await.map_err(io_err)?;
        match self
            .upload_parts(&mut upload, first, &mut body, &mut total, max)
            .await
        {
            Ok(()) => Ok(total),
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
