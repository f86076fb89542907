//! The Obscura relay: accounts, pre-keys, store-and-forward messaging,
//! WebSocket delivery, attachments and push tokens.
//!
//! Layout: [`cli`]/[`config`] (options) → [`http`] (thin handlers, one error
//! mapping) and [`gateway`] (WebSocket sessions) → [`domain`] (use cases and
//! pure rules) → the backends behind traits, embedded or clustered:
//! [`store`] (SQLite | PostgreSQL), [`blobs`] (local directory | S3),
//! [`fanout`] (in-process presence | Redis pub/sub), [`ratelimit`]
//! (governor | Redis GCRA), chosen once by [`backends`]; [`health`] backs
//! `/readyz`; [`jobs`] does TTL clean-up under a cluster-wide lease.
//! [`push`] sends wake-ups to offline users' devices; [`metrics`] names
//! every exported series.

pub mod backends;
pub mod backoff;
pub mod blobs;
pub mod cli;
pub mod config;
pub mod domain;
pub mod error;
pub mod fanout;
pub mod gateway;
pub mod health;
pub mod http;
pub mod jobs;
pub mod metrics;
pub mod push;
pub mod ratelimit;
pub mod redis_client;
pub mod store;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::domain::{PasswordHasher, Relay, Tokens};
use crate::http::AppState;

/// Upper bound on concurrent WebSocket sessions (one permit each).
const MAX_SESSIONS: u32 = 1 << 20;
/// How long shutdown waits for sessions to flush and close.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Runs the relay until SIGTERM/SIGINT.
pub async fn run(args: cli::RelayArgs) -> anyhow::Result<()> {
    let config = Config::load(args)?;
    if config.argon2.below_owasp() {
        tracing::warn!(
            memory_kib = config.argon2.memory_kib,
            iterations = config.argon2.iterations,
            "argon2 parameters are below the OWASP minimum (19456 KiB, 2 iterations): acceptable for tests only"
        );
    }
    create_data_dir(&config.data_dir)?;

    let secret = match &config.jwt_secret {
        Some(secret) => {
            if secret.len() < 32 {
                tracing::warn!("--jwt-secret is shorter than 32 bytes; use a long random secret");
            }
            secret.as_bytes().to_vec()
        }
        None => {
            domain::sessions::load_or_create_jwt_secret(&config.data_dir).context("JWT secret")?
        }
    };
    let backends = backends::connect(&config).await?;
    let providers = push::Providers::from_config(&config.push).context("push providers")?;
    let wakeups = Arc::new(push::Wakeups::new(
        backends.store.store(),
        backends.fanout.clone(),
        config.push.clone(),
    ));
    let relay = Arc::new(Relay {
        tokens: Tokens::new(&secret, config.access_token_ttl, config.refresh_token_ttl),
        passwords: PasswordHasher::new(config.argon2)?,
        limiter: backends.limiter.clone(),
        store: backends.store.store(),
        blobs: backends.blobs.clone(),
        fanout: backends.fanout.clone(),
        push: wakeups.clone(),
        commits_published: backends.commits_published,
        config,
    });

    let shutdown = CancellationToken::new();
    let sessions = Arc::new(Semaphore::new(MAX_SESSIONS as usize));
    let state = AppState {
        relay: relay.clone(),
        shutdown: shutdown.clone(),
        sessions: sessions.clone(),
        readiness: Arc::new(backends.readiness.clone()),
    };

    // Handlers before the `listening` lines: a SIGTERM right after them is graceful.
    let stop = shutdown_signal()?;
    let api = TcpListener::bind(relay.config.listen)
        .await
        .with_context(|| format!("binding {}", relay.config.listen))?;
    let mgmt = TcpListener::bind(relay.config.mgmt_listen)
        .await
        .with_context(|| format!("binding {}", relay.config.mgmt_listen))?;
    announce("http", api.local_addr()?)?;
    announce("mgmt", mgmt.local_addr()?)?;

    let cleanup = jobs::spawn_cleanup(relay.clone(), shutdown.clone());
    let _delivery_poll = gateway::poll::spawn(relay.clone(), shutdown.clone());
    let timeouts = http::connection::Timeouts::from_config(&relay.config);
    let push_worker = push::queue::spawn_worker(wakeups, providers, shutdown.clone());
    let metrics_upkeep = metrics::spawn_upkeep(shutdown.clone());
    let api_server = tokio::spawn(http::server::serve(
        api,
        http::router(state.clone()),
        timeouts,
        shutdown.clone(),
    ));
    let mgmt_server = tokio::spawn(http::server::serve(
        mgmt,
        http::mgmt_router(state),
        timeouts,
        shutdown.clone(),
    ));

    stop.await;
    tracing::info!("shutting down: closing sessions and flushing acknowledgements");
    shutdown.cancel();
    // Every session holds a permit until it has flushed and closed.
    match tokio::time::timeout(SHUTDOWN_GRACE, sessions.acquire_many(MAX_SESSIONS)).await {
        Ok(_) => {}
        Err(_) => tracing::warn!("some gateway sessions did not close in time"),
    }
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
        let _ = api_server.await;
        let _ = mgmt_server.await;
        let _ = cleanup.await;
        let _ = push_worker.await;
        let _ = metrics_upkeep.await;
    })
    .await;
    backends.store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Creates the data directory (mode 0700: it holds password hashes and the
/// JWT secret); an existing directory keeps the permissions its operator chose.
fn create_data_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    if dir.exists() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))
}

/// The `listening <name> <addr>` line tests and operators wait for.
fn announce(name: &str, addr: SocketAddr) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening {name} {addr}")?;
    out.flush()?;
    tracing::info!("listening {name} {addr}");
    Ok(())
}

/// Resolves on the first SIGTERM or SIGINT; handlers are installed at once.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    #[cfg(unix)]
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    })
}
