//! The accept loop: the axum router on hyper, with the client deadlines and
//! the lingering close of [`super::connection`] (which `axum::serve` cannot
//! have), and graceful shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::{Service, ServiceExt};

use super::connection::{self, ConnIo, ConnState, Timeouts};

/// How long shutdown waits for in-flight HTTP requests.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown` is cancelled, then stops
/// accepting and lets in-flight requests finish (bounded by [`DRAIN_TIMEOUT`]).
/// Upgraded WebSocket connections are not tracked here; their sessions watch
/// `shutdown` themselves.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    timeouts: Timeouts,
    shutdown: CancellationToken,
) {
    let mut make_service = router
        .layer(axum::middleware::from_fn(connection::guard_request))
        .into_make_service_with_connect_info::<SocketAddr>();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // `ConnIo` times request heads: hyper's timer would also run while
        // a kept-alive connection waits for its next request.
        .header_read_timeout(None);
    // RFC 8441 WebSockets over HTTP/2, as axum::serve does.
    builder
        .http2()
        .timer(TokioTimer::new())
        .enable_connect_protocol();
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // E.g. EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = match ServiceExt::<SocketAddr>::ready(&mut make_service).await {
            Ok(ready) => ready.call(peer).await,
            Err(never) => match never {},
        };
        let Ok::<_, Infallible>(service) = service;
        let state = ConnState::new(timeouts);
        let per_request = state.clone();
        let service =
            TowerToHyperService::new(service.map_request(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(per_request.clone());
                req.map(Body::new)
            }));
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(ConnIo::new(stream, state)), service);
            if let Err(e) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some HTTP connections did not finish in time");
    }
}
