//! Cluster-wide jobs run once: a job runs on the node holding its lease, a
//! row in the shared database with an expiry (`Store::try_lease`). The
//! holder renews it on every run; if the holder dies, another node takes it
//! over once it expires. On SQLite (one process) the lease is always held.

use std::time::Duration;

use uuid::Uuid;

use crate::domain::now_millis;
use crate::store::Store;

pub struct Lease {
    name: &'static str,
    /// This process; a restarted node is a new holder.
    holder: Uuid,
    ttl: Duration,
}

impl Lease {
    /// `ttl` should cover a few job intervals, so a slow run keeps the lease.
    pub fn new(name: &'static str, ttl: Duration) -> Self {
        Self {
            name,
            holder: Uuid::new_v4(),
            ttl,
        }
    }

    /// Takes or renews the lease; false if another node holds it or the
    /// database cannot say (then nobody runs the job this time).
    pub async fn acquire(&self, store: &dyn Store) -> bool {
        match store
            .try_lease(self.name, self.holder, self.ttl, now_millis())
            .await
        {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(job = self.name, error = %e, "could not take the job lease");
                false
            }
        }
    }
}
