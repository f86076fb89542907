//! Readiness: every backend the node depends on answers (`GET /readyz`).
//! A load balancer takes a node out of rotation while any probe fails.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::store::Store;

/// How long one probe may take before it counts as failed.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[async_trait]
pub trait Probe: Send + Sync + 'static {
    /// `database`, `redis`, `storage`.
    fn name(&self) -> &'static str;
    async fn check(&self) -> Result<(), String>;
}

/// The probes of this node's backends.
#[derive(Default, Clone)]
pub struct Readiness {
    probes: Vec<Arc<dyn Probe>>,
}

impl Readiness {
    pub fn new(probes: Vec<Arc<dyn Probe>>) -> Self {
        Self { probes }
    }

    /// Every probe's verdict, run concurrently, each bounded by [`PROBE_TIMEOUT`].
    pub async fn check(&self) -> Vec<(&'static str, Result<(), String>)> {
        futures::future::join_all(self.probes.iter().map(|p| async move {
            let verdict = match tokio::time::timeout(PROBE_TIMEOUT, p.check()).await {
                Ok(verdict) => verdict,
                Err(_) => Err("timed out".into()),
            };
            (p.name(), verdict)
        }))
        .await
    }
}

/// The database answers a trivial query.
pub struct StoreProbe(pub Arc<dyn Store>);

#[async_trait]
impl Probe for StoreProbe {
    fn name(&self) -> &'static str {
        "database"
    }

    async fn check(&self) -> Result<(), String> {
        self.0.ping().await.map_err(|e| e.to_string())
    }
}

/// Redis answers PING.
pub struct RedisProbe(pub redis::aio::ConnectionManager);

#[async_trait]
impl Probe for RedisProbe {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn check(&self) -> Result<(), String> {
        crate::fanout::redis::ping(&self.0)
            .await
            .map_err(|e| e.to_string())
    }
}

/// The S3 bucket can be listed with our credentials.
pub struct S3Probe(pub Arc<crate::blobs::S3Blobs>);

#[async_trait]
impl Probe for S3Probe {
    fn name(&self) -> &'static str {
        "storage"
    }

    async fn check(&self) -> Result<(), String> {
        self.0.check().await.map_err(|e| e.to_string())
    }
}
