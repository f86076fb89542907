//! Start-up wiring: turns [`BackendConfig`] into the trait objects the relay
//! runs on. The embedded default is SQLite + local files + in-process
//! fan-out and limits; a cluster node uses PostgreSQL, Redis and S3.

use std::sync::Arc;

use anyhow::Context;

use crate::blobs::{BlobStore, LocalBlobs, S3Blobs};
use crate::config::{Config, Database, Storage};
use crate::fanout::{Fanout, LocalFanout};
use crate::ratelimit::{GovernorLimiter, RateLimiter};
use crate::store::{PgStore, SqliteStore, Store};

/// The database, kept concretely so shutdown can close it properly.
pub enum StoreHandle {
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<PgStore>),
}

impl StoreHandle {
    pub fn store(&self) -> Arc<dyn Store> {
        match self {
            StoreHandle::Sqlite(s) => s.clone(),
            StoreHandle::Postgres(s) => s.clone(),
        }
    }

    pub async fn close(&self) {
        match self {
            StoreHandle::Sqlite(s) => s.close().await,
            StoreHandle::Postgres(s) => s.close().await,
        }
    }
}

pub struct Backends {
    pub store: StoreHandle,
    pub blobs: Arc<dyn BlobStore>,
    pub fanout: Arc<dyn Fanout>,
    pub limiter: Arc<dyn RateLimiter>,
}

/// Connects every configured backend; a clear error names the one that failed.
pub async fn connect(config: &Config) -> anyhow::Result<Backends> {
    let store = match &config.backends.database {
        Database::Sqlite => StoreHandle::Sqlite(Arc::new(
            SqliteStore::open(&config.data_dir)
                .await
                .context("opening the SQLite database")?,
        )),
        Database::Postgres(settings) => StoreHandle::Postgres(Arc::new(
            PgStore::open(settings)
                .await
                .context("connecting to PostgreSQL (--database-url)")?,
        )),
    };
    let blobs: Arc<dyn BlobStore> = match &config.backends.storage {
        Storage::Local => Arc::new(
            LocalBlobs::open(&config.data_dir.join("attachments"))
                .await
                .context("attachment directory")?,
        ),
        Storage::S3(settings) => Arc::new(
            S3Blobs::open(settings, config.backends.connect_timeout)
                .await
                .context("attachment storage (--storage s3://…)")?,
        ),
    };
    let fanout: Arc<dyn Fanout> = Arc::new(LocalFanout::new());
    let limiter: Arc<dyn RateLimiter> = Arc::new(GovernorLimiter::new(config.rate_limits));
    Ok(Backends {
        store,
        blobs,
        fanout,
        limiter,
    })
}
