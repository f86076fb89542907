//! Membership and liveness.
//!
//! Two views, both driven by heartbeats:
//! * outbound: every configured peer gets a heartbeat each interval; a missed
//!   ack makes it `suspect`, `dead_after_misses` consecutive misses `dead`
//!   (reported by `/v1/vault/status` and logged on every transition);
//! * inbound: a heartbeat received from a configured peer's host announces
//!   that guardian's client API address; guardians heard from within the dead
//!   window are the live guardians `/v1/vault/guardians` lists (with self).
//!
//! The heartbeat's `sender_port` is the sender's HTTP port, which is what the
//! guardians listing reports; liveness of the link itself is the ack.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::peer::codec::{Frame, Heartbeat, msg};
use crate::peer::{self};

/// Liveness of an outbound peer link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerState {
    /// Never answered yet, not yet given up on.
    Unknown,
    Alive,
    Suspect,
    Dead,
}

impl PeerState {
    /// The lower-case name used in JSON and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Alive => "alive",
            Self::Suspect => "suspect",
            Self::Dead => "dead",
        }
    }
}

/// A guardian as listed by `/v1/vault/guardians`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuardianEntry {
    pub address: String,
    pub port: u16,
}

/// An outbound link's state for `/v1/vault/status`.
#[derive(Debug, Clone, Serialize)]
pub struct PeerStatus {
    pub peer: String,
    pub state: PeerState,
}

#[derive(Debug, Default)]
struct Link {
    misses: u32,
    acked_once: bool,
    ips: Vec<IpAddr>,
}

struct Heard {
    last: Instant,
}

/// This guardian's view of the cluster.
pub struct Cluster {
    http_addr: SocketAddr,
    threshold: u32,
    interval: Duration,
    dead_after: u32,
    peers: Vec<(String, Mutex<Link>)>,
    heard: Mutex<HashMap<(IpAddr, u16), Heard>>,
}

impl Cluster {
    pub fn new(
        http_addr: SocketAddr,
        peers: Vec<String>,
        threshold: u32,
        interval: Duration,
        dead_after: u32,
    ) -> Self {
        Self {
            http_addr,
            threshold,
            interval,
            dead_after,
            peers: peers
                .into_iter()
                .map(|p| (p, Mutex::new(Link::default())))
                .collect(),
            heard: Mutex::new(HashMap::new()),
        }
    }

    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    /// Window after which a silent guardian is no longer listed.
    fn dead_window(&self) -> Duration {
        self.interval * self.dead_after + self.interval / 2
    }

    /// Records a heartbeat received on the peer port. Only hosts of
    /// configured peers are believed: the listing is not open to anyone who
    /// can reach the port.
    pub fn heard(&self, remote: SocketAddr, hb: &Heartbeat) {
        let trusted = self
            .peers
            .iter()
            .any(|(_, l)| lock(l).ips.contains(&remote.ip()));
        if !trusted {
            tracing::debug!(%remote, "heartbeat from a host that is not a configured peer; ignored");
            return;
        }
        let ip = if hb.ip.is_unspecified() {
            remote.ip()
        } else {
            IpAddr::V4(hb.ip)
        };
        lock(&self.heard).insert(
            (ip, hb.port),
            Heard {
                last: Instant::now(),
            },
        );
    }

    /// Self plus every guardian heard from within the dead window.
    pub fn live_guardians(&self) -> Vec<GuardianEntry> {
        let window = self.dead_window();
        let mut heard = lock(&self.heard);
        heard.retain(|_, h| h.last.elapsed() <= window);
        let mut seen: HashSet<(IpAddr, u16)> = heard.keys().copied().collect();
        seen.remove(&(self.http_addr.ip(), self.http_addr.port()));
        let mut out = vec![GuardianEntry {
            address: self.http_addr.ip().to_string(),
            port: self.http_addr.port(),
        }];
        let mut others: Vec<_> = seen.into_iter().collect();
        others.sort();
        out.extend(others.into_iter().map(|(ip, port)| GuardianEntry {
            address: ip.to_string(),
            port,
        }));
        out
    }

    pub fn peer_status(&self) -> Vec<PeerStatus> {
        self.peers
            .iter()
            .map(|(addr, l)| PeerStatus {
                peer: addr.clone(),
                state: self.state_of(&lock(l)),
            })
            .collect()
    }

    fn state_of(&self, link: &Link) -> PeerState {
        match (link.acked_once, link.misses) {
            (_, m) if m >= self.dead_after => PeerState::Dead,
            (false, _) => PeerState::Unknown,
            (true, 0) => PeerState::Alive,
            (true, _) => PeerState::Suspect,
        }
    }

    /// Starts one heartbeat loop per configured peer.
    pub fn spawn_heartbeats(
        self: &Arc<Self>,
        share_count: impl Fn() -> u64 + Send + Sync + 'static,
        stop: CancellationToken,
    ) {
        let share_count = Arc::new(share_count);
        for idx in 0..self.peers.len() {
            let cluster = Arc::clone(self);
            let share_count = Arc::clone(&share_count);
            let stop = stop.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = cluster.heartbeat_loop(idx, move || share_count()) => {}
                    () = stop.cancelled() => {}
                }
            });
        }
    }

    async fn heartbeat_loop(&self, idx: usize, share_count: impl Fn() -> u64) {
        let (addr, link) = &self.peers[idx];
        let mut conn = None;
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Ok(resolved) = tokio::net::lookup_host(addr.as_str()).await {
                lock(link).ips = resolved.map(|a| a.ip()).collect();
            }
            let hb = Heartbeat {
                ip: match self.http_addr.ip() {
                    IpAddr::V4(ip) => ip,
                    IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
                },
                port: self.http_addr.port(),
                share_count: u32::try_from(share_count()).unwrap_or(u32::MAX),
                // Unix seconds, as the reference guardian sends them.
                timestamp: u64::try_from(crate::auth::now_ns() / 1_000_000_000).unwrap_or(0),
            };
            let ok = self.send_heartbeat(addr, &mut conn, hb).await.is_ok();
            crate::telemetry::heartbeat(ok);
            let mut l = lock(link);
            let before = self.state_of(&l);
            if ok {
                l.misses = 0;
                l.acked_once = true;
            } else {
                l.misses = l.misses.saturating_add(1);
            }
            let after = self.state_of(&l);
            if before != after {
                tracing::info!(peer = %addr, from = ?before, to = ?after, "peer state changed");
            }
        }
    }

    /// One heartbeat, acked within one interval. The connection is kept for
    /// the next one; if a kept connection fails (a peer that answers one
    /// message per connection, as the reference guardian does, or one that
    /// restarted), a fresh one is tried at once in the time left, so that
    /// is not counted as a miss. Any failure drops the connection.
    async fn send_heartbeat(
        &self,
        addr: &str,
        conn: &mut Option<peer::Connection>,
        hb: Heartbeat,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + self.interval;
        let frame = || Frame::new(msg::HEARTBEAT, hb.encode());
        let left = || deadline.saturating_duration_since(tokio::time::Instant::now());
        if let Some(c) = conn.as_mut() {
            if peer::request(c, frame(), msg::HEARTBEAT_ACK, left())
                .await
                .is_ok()
            {
                return Ok(());
            }
            *conn = None;
        }
        let c = conn.insert(peer::connect(addr, left()).await?);
        let acked = peer::request(c, frame(), msg::HEARTBEAT_ACK, left()).await;
        if acked.is_err() {
            *conn = None;
        }
        acked.map(drop)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(port: u16) -> Heartbeat {
        Heartbeat {
            ip: Ipv4Addr::LOCALHOST,
            port,
            share_count: 0,
            timestamp: 0,
        }
    }

    #[test]
    fn only_configured_hosts_are_listed_and_self_comes_first() {
        let me: SocketAddr = "127.0.0.1:7500".parse().unwrap();
        let c = Cluster::new(
            me,
            vec!["127.0.0.1:7601".into()],
            2,
            Duration::from_secs(5),
            3,
        );
        let stranger: SocketAddr = "10.9.9.9:4000".parse().unwrap();
        c.heard(stranger, &hb(7700));
        assert_eq!(c.live_guardians().len(), 1);

        lock(&c.peers[0].1).ips = vec!["127.0.0.1".parse().unwrap()];
        let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        c.heard(peer, &hb(7600));
        c.heard(peer, &hb(7500)); // our own address announced back: not listed twice
        let listed = c.live_guardians();
        assert_eq!(
            listed,
            [
                GuardianEntry {
                    address: "127.0.0.1".into(),
                    port: 7500
                },
                GuardianEntry {
                    address: "127.0.0.1".into(),
                    port: 7600
                },
            ]
        );
    }

    #[test]
    fn link_states_follow_missed_acks() {
        let c = Cluster::new(
            "127.0.0.1:1".parse().unwrap(),
            vec![],
            1,
            Duration::from_secs(1),
            3,
        );
        let state = |acked_once, misses| {
            c.state_of(&Link {
                misses,
                acked_once,
                ips: vec![],
            })
        };
        assert_eq!(state(false, 0), PeerState::Unknown);
        assert_eq!(state(false, 3), PeerState::Dead);
        assert_eq!(state(true, 0), PeerState::Alive);
        assert_eq!(state(true, 1), PeerState::Suspect);
        assert_eq!(state(true, 2), PeerState::Suspect);
        assert_eq!(state(true, 3), PeerState::Dead);
    }
}
