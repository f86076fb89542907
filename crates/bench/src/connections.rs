//! `obscura bench connections`: holds N idle gateway WebSockets and reports
//! what they cost the server (its RSS from `/proc/<pid>/status`).
//!
//! Each socket needs its own user (a new connection replaces the user's
//! previous one). One loopback source address offers ~28k ephemeral ports
//! towards one server port, so sockets are spread over `127.0.0.2…` when
//! the relay is on loopback.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use reqwest::Url;
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::relay::api;
use crate::report::{Table, emit, rate};

#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionsArgs {
    /// Base URL of the relay's public API.
    #[arg(long, value_parser = crate::base_url)]
    pub url: Url,
    /// Sockets to open (one registered user each).
    #[arg(short = 'n', long = "connections", default_value_t = 1000)]
    pub n: u32,
    /// The relay's process id, to read its RSS before and after.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 128)]
    pub connect_concurrency: usize,
    /// Registrations in flight at once.
    #[arg(long, default_value_t = 16)]
    pub register_concurrency: usize,
    /// Sockets per loopback source address (spread only for loopback relays).
    #[arg(long, default_value_t = 20_000)]
    pub per_source_addr: u32,
    /// How long to hold the sockets open before measuring.
    #[arg(long, default_value_t = 5)]
    pub hold_secs: u64,
    /// Open the sockets in this many equal steps, sampling the server's RSS
    /// after each: the slope over the second half is the marginal cost of
    /// a socket, free of the allocator slack left by registration.
    #[arg(long, default_value_t = 4)]
    pub steps: u32,
    /// One-time pre-keys per user (0: the relay sends a PreKeyStatus on connect).
    #[arg(long, default_value_t = 0)]
    pub prekeys: u32,
    /// Reuse the users saved in this file (JSON) if it exists, else
    /// register them and save them there. Lets a measurement start from a
    /// freshly restarted server whose heap holds no registration slack.
    #[arg(long, value_name = "FILE")]
    pub users_file: Option<PathBuf>,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnectionsReport {
    pub connections: u32,
    pub source_addrs: u32,
    pub register_per_sec: f64,
    pub connect_per_sec: f64,
    pub server_rss_before: Option<u64>,
    pub server_rss_after: Option<u64>,
    /// (RSS after the whole run − RSS before) / N.
    pub server_bytes_per_connection: Option<f64>,
    /// Slope of RSS over the second half of the steps.
    pub server_marginal_bytes_per_connection: Option<f64>,
    /// `(sockets open, server RSS)` after each step (the last after the hold).
    pub server_rss_samples: Vec<(u32, u64)>,
    pub generator_bytes_per_connection: Option<f64>,
    /// Sockets still open after the hold (the server closed none).
    pub still_open: u32,
}

/// `VmRSS` of a process, in bytes.
pub fn rss_bytes(pid: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .context("no VmRSS in /proc status")?
        .parse()?;
    Ok(kib * 1024)
}

/// The source address of socket `i`: none for a non-loopback relay.
/// `offset` (random per run) moves the range, so that back-to-back runs do
/// not run into the previous run's ports still in TIME_WAIT.
fn source_addr(base: &Url, i: u32, per_addr: u32, offset: u32) -> Option<IpAddr> {
    let loopback = base
        .host_str()
        .and_then(|h| h.parse::<Ipv4Addr>().ok())
        .is_some_and(|ip| ip.is_loopback());
    if !loopback {
        return None;
    }
    let k = i / per_addr.max(1) + offset;
    // 127.0.0.2 onwards; 127.0.0.1 stays free for everything else.
    let n = 2 + k % 0x00ff_0000;
    let [_, b, c, d] = n.to_be_bytes();
    Some(IpAddr::V4(Ipv4Addr::new(127, b, c, d)))
}

pub async fn run(args: ConnectionsArgs) -> anyhow::Result<()> {
    if args.n == 0 {
        bail!("-n must be at least 1");
    }
    let t = Instant::now();
    let users = match &args.users_file {
        Some(path) if path.exists() => {
            let users: Vec<api::User> = serde_json::from_slice(&std::fs::read(path)?)
                .with_context(|| format!("reading users from {}", path.display()))?;
            if users.len() < args.n as usize {
                bail!("{} holds only {} users", path.display(), users.len());
            }
            users
        }
        _ => {
            let users = register(&args).await?;
            if let Some(path) = &args.users_file {
                std::fs::write(path, serde_json::to_vec(&users)?)?;
            }
            users
        }
    };
    let register_per_sec = rate(u64::from(args.n), t.elapsed());

    let pid = args.server_pid.map(|p| p.to_string());
    let server_before = pid.as_deref().map(rss_bytes).transpose()?;
    let self_before = rss_bytes("self").ok();

    eprintln!("opening {} sockets…", args.n);
    let t = Instant::now();
    let base = &args.url;
    let steps = args.steps.clamp(1, args.n);
    let offset = rand::random::<u32>() % 0x0001_0000;
    // Each socket is held by a task that reads it as a client would, so
    // the server's keep-alive pings are answered: a socket that is never
    // read goes silent, and the relay rightly drops it after 90 s.
    let stop = CancellationToken::new();
    let mut sockets: Vec<tokio::task::JoinHandle<bool>> = Vec::with_capacity(args.n as usize);
    let mut samples: Vec<(u32, u64)> = server_before.map(|r| (0, r)).into_iter().collect();
    for step in 1..=steps {
        let upto = u32::try_from(u64::from(args.n) * u64::from(step) / u64::from(steps))?;
        let from = u32::try_from(sockets.len())?;
        let opened: Vec<api::Gateway> = futures::stream::iter(from..upto)
            .map(|i| {
                let user = &users[i as usize];
                async move {
                    api::connect_gateway(
                        base,
                        &user.token,
                        source_addr(base, i, args.per_source_addr, offset),
                    )
                    .await
                    .with_context(|| format!("socket {i}"))
                }
            })
            .buffer_unordered(args.connect_concurrency.max(1))
            .try_collect()
            .await?;
        sockets.extend(
            opened
                .into_iter()
                .map(|ws| tokio::spawn(hold(ws, stop.clone()))),
        );
        if step == steps {
            break;
        }
        // Let the server finish the handshakes' work before sampling.
        tokio::time::sleep(Duration::from_secs(2)).await;
        if let Some(pid) = pid.as_deref() {
            samples.push((upto, rss_bytes(pid)?));
        }
    }
    let connect_per_sec = rate(u64::from(args.n), t.elapsed());

    eprintln!("holding for {} s…", args.hold_secs);
    tokio::time::sleep(Duration::from_secs(args.hold_secs)).await;
    let server_after = pid.as_deref().map(rss_bytes).transpose()?;
    let self_after = rss_bytes("self").ok();
    if let Some(rss) = server_after {
        samples.push((args.n, rss));
    }

    stop.cancel();
    let mut still_open = 0;
    for held in sockets {
        if held.await? {
            still_open += 1;
        }
    }
    let per_conn = |before: Option<u64>, after: Option<u64>| {
        Some((after? as f64 - before? as f64) / f64::from(args.n))
    };
    let source_addrs =
        source_addr(base, 0, 1, 0).map_or(1, |_| args.n.div_ceil(args.per_source_addr));
    let report = ConnectionsReport {
        connections: args.n,
        source_addrs,
        register_per_sec,
        connect_per_sec,
        server_rss_before: server_before,
        server_rss_after: server_after,
        server_bytes_per_connection: per_conn(server_before, server_after),
        server_marginal_bytes_per_connection: marginal(&samples),
        server_rss_samples: samples,
        generator_bytes_per_connection: per_conn(self_before, self_after),
        still_open,
    };
    let mib = |b: Option<u64>| b.map_or("-".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0));
    let bytes = |b: Option<f64>| b.map_or("-".into(), |b| format!("{b:.0} B"));
    let mut table = Table::new(format!("{} idle gateway sockets", args.n));
    table
        .row("source addresses", source_addrs.to_string())
        .row("registered", format!("{register_per_sec:.0} users/s"))
        .row("connected", format!("{connect_per_sec:.0} sockets/s"))
        .row("still open after hold", still_open.to_string())
        .row(
            "server RSS",
            format!("{} → {}", mib(server_before), mib(server_after)),
        )
        .row(
            "server per connection",
            bytes(report.server_bytes_per_connection),
        )
        .row(
            "server marginal per connection",
            bytes(report.server_marginal_bytes_per_connection),
        )
        .row(
            "generator per connection",
            bytes(report.generator_bytes_per_connection),
        );
    emit(&table, &report, args.json.as_deref())?;
    Ok(())
}

/// Reads a held socket until `stop` (pings are answered on the next read),
/// then closes it; true if the server had not closed it first.
async fn hold(mut ws: api::Gateway, stop: CancellationToken) -> bool {
    loop {
        tokio::select! {
            () = stop.cancelled() => {
                let _ = futures::SinkExt::close(&mut ws).await;
                return true;
            }
            frame = ws.next() => match frame {
                // PreKeyStatus, pings and the like.
                Some(Ok(m)) if !m.is_close() => {}
                // A close frame, end of stream or a broken socket.
                _ => return false,
            },
        }
    }
}

async fn register(args: &ConnectionsArgs) -> anyhow::Result<Vec<api::User>> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.register_concurrency)
        .timeout(Duration::from_secs(60))
        .build()?;
    let prekeys = api::PreKeys::generate(args.prekeys);
    eprintln!("registering {} users…", args.n);
    api::register_many(
        &http,
        &args.url,
        &api::run_prefix(),
        args.n,
        args.register_concurrency,
        &prekeys,
    )
    .await
}

/// RSS slope between the middle sample and the last one.
fn marginal(samples: &[(u32, u64)]) -> Option<f64> {
    let (n1, r1) = *samples.get((samples.len().checked_sub(1)?) / 2)?;
    let (n2, r2) = *samples.last()?;
    (n2 > n1).then(|| (r2 as f64 - r1 as f64) / f64::from(n2 - n1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marginal_cost_is_the_slope_of_the_second_half() {
        let samples = [
            (100, 5_000_000),
            (200, 5_500_000),
            (300, 6_000_000),
            (400, 6_400_000),
        ];
        // middle = index 1 (200 sockets), last = 400.
        assert_eq!(marginal(&samples), Some(4500.0));
        assert_eq!(marginal(&samples[..1]), None);
        assert_eq!(marginal(&[]), None);
    }

    #[test]
    fn loopback_sockets_spread_over_source_addresses() {
        let local = Url::parse("http://127.0.0.1:3000/").unwrap();
        let ip = |i| source_addr(&local, i, 20_000, 0).unwrap().to_string();
        assert_eq!(ip(0), "127.0.0.2");
        assert_eq!(ip(19_999), "127.0.0.2");
        assert_eq!(ip(20_000), "127.0.0.3");
        assert_eq!(ip(300 * 20_000), "127.0.1.46");
        let remote = Url::parse("http://relay.example:3000/").unwrap();
        assert_eq!(source_addr(&remote, 0, 20_000, 0), None);
        // A run offset shifts the whole range.
        assert_eq!(
            source_addr(&local, 20_000, 20_000, 254)
                .unwrap()
                .to_string(),
            "127.0.1.1"
        );
    }
}
