//! The Orama Vault guardian: stores one Shamir share per identity (V1) and
//! named secrets (V2), and speaks the binary peer protocol with other guardians.
//!
//! Module map: [`cli`] (options) → [`config`] (validated settings) →
//! [`http`] (API, thin handlers) → [`vault`] (per-identity serialization,
//! blocking pool, [`cache`] of verified records) → [`storage`] (durable,
//! checksummed records); [`auth`]
//! (challenges and sessions); [`peer`] (binary protocol) and [`cluster`]
//! (heartbeats, liveness); [`telemetry`] (metrics and logs) served by
//! [`mgmt`] (`/metrics`, `/livez`, `/readyz`).

pub mod auth;
pub mod cache;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod http;
pub mod identity;
pub mod mgmt;
pub mod peer;
pub mod storage;
pub mod telemetry;
pub mod vault;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cli::{GuardianAction, GuardianArgs, VerifyArgs};
use crate::config::Settings;

/// Runs the guardian until SIGTERM/SIGINT (or the operator action given).
pub async fn run(args: GuardianArgs) -> anyhow::Result<()> {
    if let Some(GuardianAction::Verify(v)) = &args.action {
        return verify_command(v).await;
    }
    let settings = Settings::from_args(&args.serve)?;
    // Before anything that records (heartbeats start at once), or the first
    // samples would go to the no-op recorder.
    let metrics = match settings.mgmt_listen {
        Some(_) => Some(telemetry::install_recorder()?),
        None => None,
    };

    let data_dir = settings.data_dir.clone();
    let store = tokio::task::spawn_blocking(move || storage::FsStore::open(&data_dir))
        .await?
        .with_context(|| format!("opening data directory {}", settings.data_dir.display()))?;
    let vault = vault::Vault::new(
        Arc::new(store),
        settings.max_secrets,
        settings.record_cache_bytes,
    );

    let http_listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    let peer_listener = TcpListener::bind(settings.peer_listen)
        .await
        .with_context(|| format!("binding {}", settings.peer_listen))?;
    let mgmt_listener = match settings.mgmt_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding {addr}"))?,
        ),
        None => None,
    };
    let http_addr = http_listener.local_addr()?;
    let peer_addr = peer_listener.local_addr()?;
    let mgmt_addr = mgmt_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;

    let cluster = Arc::new(cluster::Cluster::new(
        http_addr,
        settings.peers.clone(),
        settings.threshold,
        settings.heartbeat_interval,
        settings.dead_after_misses,
    ));
    let app = Arc::new(http::App {
        vault: vault.clone(),
        auth: Arc::new(auth::Authenticator::new(
            settings.challenge_ttl,
            settings.session_ttl,
        )),
        cluster: Arc::clone(&cluster),
        limits: Arc::new(http::RateLimits::new(
            settings.ip_limit,
            settings.identity_limit,
        )),
        body_timeout: settings.body_timeout,
        data_dir: settings.data_dir.clone(),
        http_addr,
        peer_addr,
    });

    let shutdown = CancellationToken::new();
    tokio::spawn(wait_for_signal(shutdown.clone()));
    tokio::spawn(peer::serve(
        peer_listener,
        peer::PeerContext {
            vault: vault.clone(),
            cluster: Arc::clone(&cluster),
            idle_timeout: settings.peer_idle_timeout,
        },
        shutdown.clone(),
    ));
    let counter = vault.clone();
    cluster.spawn_heartbeats(move || counter.share_count(), shutdown.clone());
    tokio::spawn(maintenance(Arc::clone(&app), shutdown.clone()));
    // The management API outlives the client API's drain, reporting not
    // ready meanwhile.
    let mgmt_stop = CancellationToken::new();
    if let (Some(listener), Some(metrics)) = (mgmt_listener, metrics) {
        let state = Arc::new(mgmt::Mgmt {
            metrics,
            cluster: Arc::clone(&cluster),
            vault: vault.clone(),
            draining: shutdown.clone(),
        });
        tokio::spawn(mgmt::serve(listener, state, mgmt_stop.clone()));
    }

    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening http {http_addr}")?;
        writeln!(out, "listening peer {peer_addr}")?;
        if let Some(addr) = mgmt_addr {
            writeln!(out, "listening mgmt {addr}")?;
        }
        out.flush()?;
    }
    tracing::info!(%http_addr, %peer_addr, mgmt_addr = ?mgmt_addr, peers = settings.peers.len(), "guardian started");

    let opts = http::ServeOptions {
        header_timeout: settings.header_timeout,
        write_timeout: settings.write_timeout,
        max_connections: settings.max_connections,
    };
    http::serve(http_listener, http::router(app), opts, shutdown).await;
    mgmt_stop.cancel();
    tracing::info!("guardian stopped");
    Ok(())
}

/// Periodic housekeeping: forget idle rate-limit keys.
async fn maintenance(app: http::AppState, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                app.limits.retain_recent();
            }
            () = stop.cancelled() => return,
        }
    }
}

async fn wait_for_signal(shutdown: CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot install SIGTERM handler");
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutdown requested");
    shutdown.cancel();
}

/// `obscura guardian verify`: one verify_request over the peer protocol,
/// the answer printed as JSON on stdout.
async fn verify_command(args: &VerifyArgs) -> anyhow::Result<()> {
    let id = identity::Identity::parse(&args.identity)
        .map_err(|e| anyhow::anyhow!("--identity: {e}"))?;
    let resp = peer::verify(
        &args.peer,
        &id,
        Duration::from_secs(args.timeout_secs.max(1)),
    )
    .await?;
    let answer = serde_json::json!({
        "peer": args.peer,
        "identity": id.as_str(),
        "has_share": resp.has_share,
        "commitment": hex::encode(resp.commitment),
    });
    println!("{answer}");
    Ok(())
}
