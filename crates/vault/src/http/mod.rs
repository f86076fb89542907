//! The HTTP API: router, shared state and the connection loop (HTTP/1.1
//! keep-alive, header/body read timeouts, bounded connection count).

mod auth;
mod body;
mod error;
mod info;
mod io;
mod observe;
mod ratelimit;
mod routes;
mod v1;
mod v2;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

pub use error::ApiError;
pub use ratelimit::RateLimits;

use crate::auth::Authenticator;
use crate::cluster::Cluster;
use crate::identity::Identity;
use crate::telemetry;
use crate::vault::Vault;

/// Everything the handlers share.
pub type AppState = Arc<App>;

pub struct App {
    pub vault: Vault,
    pub auth: Arc<Authenticator>,
    pub cluster: Arc<Cluster>,
    pub limits: Arc<RateLimits>,
    pub body_timeout: Duration,
    pub data_dir: PathBuf,
    pub http_addr: SocketAddr,
    pub peer_addr: SocketAddr,
}

impl App {
    /// V1's optional `Authorization: Bearer <session>`: when present it must
    /// be a valid session of the identity the request is about.
    fn check_bearer(&self, headers: &HeaderMap, id: &Identity) -> Result<(), ApiError> {
        let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
            return Ok(());
        };
        let checked = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(ApiError::InvalidSession)
            .and_then(|token| Ok(self.auth.verify_session(token)?))
            .and_then(|owner| {
                if owner == *id {
                    Ok(())
                } else {
                    Err(ApiError::InvalidSession)
                }
            });
        telemetry::auth("bearer", auth_outcome(&checked));
        checked
    }

    /// V2's mandatory `X-Session-Token`; the identity comes from it alone.
    fn session(&self, headers: &HeaderMap) -> Result<Identity, ApiError> {
        let checked = headers
            .get("x-session-token")
            .ok_or(ApiError::MissingSession)
            .and_then(|t| t.to_str().map_err(|_| ApiError::InvalidSession))
            .and_then(|token| Ok(self.auth.verify_session(token)?));
        telemetry::auth("session_token", auth_outcome(&checked));
        checked
    }
}

/// Outcome of a session check, for metrics.
fn auth_outcome<T>(checked: &Result<T, ApiError>) -> &'static str {
    match checked {
        Ok(_) => "ok",
        Err(ApiError::MissingSession) => "missing",
        Err(ApiError::InvalidSession) => "invalid",
        Err(e) => e.outcome(),
    }
}

/// The complete route table.
pub fn router(state: AppState) -> Router {
    // Every secret method on a path whose name cannot be valid.
    let invalid_name = || {
        get(v2::invalid_name)
            .put(v2::invalid_name)
            .delete(v2::invalid_name)
    };
    let limited = Router::new()
        .route(routes::PUSH, post(v1::push))
        .route(routes::PULL, post(v1::pull))
        .route(routes::V1_CHALLENGE, post(auth::challenge))
        .route(routes::V1_SESSION, post(auth::session))
        .route(routes::V2_CHALLENGE, post(auth::challenge))
        .route(routes::V2_SESSION, post(auth::session))
        .route(routes::SECRETS, get(v2::list))
        .route(routes::SECRET_EMPTY_NAME, invalid_name())
        .route(routes::SECRET_NESTED_NAME, invalid_name())
        .route(routes::SECRET_TRAILING_SLASH, invalid_name())
        .route(routes::SECRET, get(v2::get).put(v2::put).delete(v2::delete))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            ratelimit::per_ip,
        ));
    Router::new()
        .route(routes::HEALTH, get(info::health))
        .route(routes::STATUS, get(info::status))
        .route(routes::GUARDIANS, get(info::guardians))
        .merge(limited)
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::middleware::from_fn(body::close_if_unread))
        // Outermost, per route (so the matched route is known): request id,
        // span, metrics.
        .layer(axum::middleware::from_fn(observe::observe))
        .with_state(state)
}

/// Connection-level limits of the HTTP listener.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    pub header_timeout: Duration,
    /// How long a write may stay blocked on a client that does not read.
    pub write_timeout: Duration,
    pub max_connections: usize,
}

/// Serves `router` on `listener` until `shutdown`, then lets in-flight
/// requests finish (at most 10 s).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    opts: ServeOptions,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(opts.max_connections));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_timeout)
        .keep_alive(true);
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&permits).acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            () = shutdown.cancelled() => break,
        };
        let (stream, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let conn = Connection {
            builder: builder.clone(),
            router: router.clone(),
            write_timeout: opts.write_timeout,
            shutdown: shutdown.clone(),
        };
        tokio::spawn(async move {
            let _permit = permit;
            conn.run(stream, remote).await;
        });
    }
    drop(listener);
    // Every live connection holds a permit: all of them back means all done.
    let all = u32::try_from(opts.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(Duration::from_secs(10), permits.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish within 10 s");
    }
}

/// One client connection: HTTP/1.1 until either side ends it, then, when
/// its last answer left a request body unread, a lingering close.
struct Connection {
    builder: hyper::server::conn::http1::Builder,
    router: Router,
    write_timeout: Duration,
    shutdown: CancellationToken,
}

impl Connection {
    async fn run(self, stream: TcpStream, remote: SocketAddr) {
        let linger = io::LingerOnClose::default();
        let flag = linger.clone();
        let svc =
            self.router
                .map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(remote));
                    req.extensions_mut().insert(flag.clone());
                    req
                });
        let mut conn = self.builder.serve_connection(
            TokioIo::new(io::WriteTimeout::new(stream, self.write_timeout)),
            TowerToHyperService::new(svc),
        );
        // Without hyper's own shutdown of the socket: it is ours to close,
        // possibly after lingering.
        let mut stopping = false;
        let ended = loop {
            tokio::select! {
                r = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => break r,
                () = self.shutdown.cancelled(), if !stopping => {
                    stopping = true;
                    Pin::new(&mut conn).graceful_shutdown();
                }
            }
        };
        if let Err(e) = ended {
            tracing::debug!(%remote, error = %e, "http connection ended with an error");
        }
        let parts = conn.into_parts();
        if linger.requested() {
            io::linger(parts.io.into_inner(), parts.read_buf.len()).await;
        }
    }
}
