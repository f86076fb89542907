//! The guardian's settings in one place: the fixed limits of the API contract
//! and the runtime options derived from the command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::cli::ServeArgs;

/// Largest V1 push / V2 PUT request body.
pub const MAX_WRITE_BODY: usize = 1024 * 1024;
/// Largest V1 pull request body.
pub const MAX_PULL_BODY: usize = 4 * 1024;
/// Largest body of every other request.
pub const MAX_OTHER_BODY: usize = 64 * 1024;
/// Largest decoded share or secret.
pub const MAX_SHARE_SIZE: usize = 512 * 1024;
/// Largest secret name.
pub const MAX_SECRET_NAME: usize = 128;

/// Rate limit: sustained requests per minute and burst; `None` = unlimited.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub per_min: u32,
    pub burst: u32,
}

impl RateLimit {
    fn new(per_min: u32, burst: u32) -> Option<Self> {
        (per_min > 0).then(|| Self {
            per_min,
            burst: burst.max(1),
        })
    }
}

/// Validated runtime settings of a guardian.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub peer_listen: SocketAddr,
    pub mgmt_listen: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub peers: Vec<String>,
    pub threshold: u32,
    pub heartbeat_interval: Duration,
    pub dead_after_misses: u32,
    pub ip_limit: Option<RateLimit>,
    pub identity_limit: Option<RateLimit>,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub write_timeout: Duration,
    pub peer_idle_timeout: Duration,
    pub max_connections: usize,
    pub challenge_ttl: Duration,
    pub session_ttl: Duration,
    pub max_secrets: usize,
    /// Bound of the in-memory cache of verified records, in bytes.
    pub record_cache_bytes: usize,
}

impl Settings {
    pub fn from_args(args: &ServeArgs) -> anyhow::Result<Self> {
        let peers: Vec<String> = args
            .peers
            .iter()
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect();
        for p in &peers {
            if p.rsplit_once(':')
                .and_then(|(_, port)| port.parse::<u16>().ok())
                .is_none()
            {
                bail!("invalid peer address {p:?}: expected HOST:PORT");
            }
        }
        if args.heartbeat_interval_ms == 0 {
            bail!("--heartbeat-interval-ms must be > 0");
        }
        if args.max_connections == 0 {
            bail!("--max-connections must be > 0");
        }
        let total = u32::try_from(peers.len() + 1).context("too many peers")?;
        let threshold = args.threshold.unwrap_or_else(|| default_threshold(total));
        if threshold == 0 {
            bail!("--threshold must be > 0");
        }
        Ok(Self {
            listen: args.listen,
            peer_listen: args.peer_listen,
            mgmt_listen: args.mgmt_listen,
            data_dir: args.data_dir.clone(),
            peers,
            threshold,
            heartbeat_interval: Duration::from_millis(args.heartbeat_interval_ms),
            dead_after_misses: args.dead_after_misses.max(1),
            ip_limit: RateLimit::new(args.rate_limit_ip_per_min, args.rate_limit_ip_burst),
            identity_limit: RateLimit::new(
                args.rate_limit_identity_per_min,
                args.rate_limit_identity_burst,
            ),
            header_timeout: Duration::from_secs(args.header_timeout_secs.max(1)),
            body_timeout: Duration::from_secs(args.body_timeout_secs.max(1)),
            write_timeout: Duration::from_secs(args.write_timeout_secs.max(1)),
            peer_idle_timeout: Duration::from_secs(args.peer_idle_timeout_secs.max(1)),
            max_connections: args.max_connections,
            challenge_ttl: Duration::from_secs(args.challenge_ttl_secs.max(1)),
            session_ttl: Duration::from_secs(args.session_ttl_secs.max(1)),
            max_secrets: args.max_secrets,
            record_cache_bytes: usize::try_from(args.record_cache_mib)
                .ok()
                .and_then(|mib| mib.checked_mul(1024 * 1024))
                .context("--record-cache-mib is too large")?,
        })
    }
}

/// The ecosystem's read quorum (see `shamir-shares.md`): K = max(2, N/3), and
/// K = 1 for a lone guardian.
pub fn default_threshold(total: u32) -> u32 {
    if total <= 1 { 1 } else { (total / 3).max(2) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_follows_the_quorum_rule() {
        assert_eq!(default_threshold(1), 1);
        assert_eq!(default_threshold(3), 2);
        assert_eq!(default_threshold(9), 3);
    }
}
