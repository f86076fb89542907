//! Start-up wiring: turns [`BackendConfig`](crate::config::BackendConfig)
//! into the trait objects the relay runs on. The embedded default is
//! SQLite, local files, in-process fan-out and limits; a cluster node uses
//! PostgreSQL, Redis and S3.

use std::sync::Arc;

use anyhow::Context;

use crate::blobs::{BlobStore, LocalBlobs, S3Blobs};
use crate::config::{Config, Database, Storage};
use crate::fanout::{Fanout, LocalFanout, RedisFanout, Signal};
use crate::health::{Probe, Readiness, RedisProbe, S3Probe, StoreProbe};
use crate::ratelimit::redis::RedisLimiter;
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
    /// What `/readyz` checks.
    pub readiness: Readiness,
    /// Committed messages reach live sessions straight from the store's
    /// writer (see `Signal::Message`); senders need not notify.
    pub commits_published: bool,
}

/// Connects every configured backend; a clear error names the one that failed.
pub async fn connect(config: &Config) -> anyhow::Result<Backends> {
    let b = &config.backends;
    let store = match &b.database {
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
    let mut probes: Vec<Arc<dyn Probe>> = vec![Arc::new(StoreProbe(store.store()))];
    let blobs: Arc<dyn BlobStore> = match &b.storage {
        Storage::Local => Arc::new(
            LocalBlobs::open(&config.data_dir.join("attachments"))
                .await
                .context("attachment directory")?,
        ),
        Storage::S3(settings) => {
            let s3 = Arc::new(
                S3Blobs::open(settings, b.backoff)
                    .await
                    .context("attachment storage (--storage s3://…)")?,
            );
            probes.push(Arc::new(S3Probe(s3.clone())));
            s3
        }
    };
    let (fanout, limiter): (Arc<dyn Fanout>, Arc<dyn RateLimiter>) = match &b.redis {
        None => (
            Arc::new(LocalFanout::new()),
            Arc::new(GovernorLimiter::new(config.rate_limits)),
        ),
        Some(redis) => {
            let fanout = RedisFanout::connect(redis, b.delivery_poll).await?;
            let conn = crate::redis_client::connect(redis).await?;
            probes.push(Arc::new(RedisProbe(conn.clone())));
            let limiter = RedisLimiter::new(
                conn,
                &redis.key_prefix,
                config.rate_limits,
                redis.on_failure,
            );
            (Arc::new(fanout), Arc::new(limiter))
        }
    };
    // Sessions take this node's new messages from its writer instead of
    // re-reading the store (each carries its recipient's previous `seq`, so
    // a session knows whether it missed one, e.g. from another node); the
    // fan-out tells other nodes "look" as usual.
    let commits_published = {
        let fanout = fanout.clone();
        store
            .store()
            .on_commit(Arc::new(move |recipient, committed| {
                fanout.notify(recipient, Signal::Message(Arc::new(committed)));
            }))
    };
    Ok(Backends {
        store,
        blobs,
        fanout,
        limiter,
        readiness: Readiness::new(probes),
        commits_published,
    })
}
