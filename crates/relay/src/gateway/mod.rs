//! `GET /v1/gateway?token=<jwt>`: the WebSocket delivery channel.
//!
//! The handshake is checked before upgrading (JWT, identity key, per-IP
//! rate limit), so failures are ordinary JSON errors. After the upgrade a
//! [`session`] runs until the client leaves, the user's sessions exceed the
//! per-user limit (the oldest goes), a device takeover, or shutdown. A user
//! may hold several sessions; each gets every message.

pub mod acks;
pub mod poll;
pub mod session;

use std::time::Duration;

use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tracing::Instrument;

use crate::error::Error;
use crate::http::AppState;
use crate::http::extract::{IpLimited, bearer};

/// Socket buffers, sized for many idle connections: client frames are
/// ACKs (tiny), server frames are single envelopes (≤ max message size).
/// tungstenite allocates the read buffer up front for every socket and grows
/// it for a larger frame (a 100-id bulk ACK is ~3.9 KB), bounded by
/// `MAX_CLIENT_MESSAGE_BYTES`; 1 KiB instead of 4 KiB took an idle socket
/// from 9.3 KB to 6.3 KB (docs/performance.md).
pub const READ_BUFFER_BYTES: usize = 1024;
/// A bulk ACK of a whole backlog must fit: 1 MiB is ~27,000 ids (39 bytes
/// each). A larger frame closes the socket with 1009; its ACKs are not
/// applied, so those messages come again.
pub const MAX_CLIENT_MESSAGE_BYTES: usize = 1024 * 1024;
/// Give up on a client that does not take a frame within this time.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
pub struct GatewayParams {
    token: Option<String>,
}

pub async fn upgrade(
    _: IpLimited,
    State(state): State<AppState>,
    params: Result<Query<GatewayParams>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, Error> {
    // The contract passes the JWT in the query (browsers cannot set headers
    // on WebSockets); a bearer header is accepted as well for other clients.
    let token = params
        .ok()
        .and_then(|Query(p)| p.token)
        .or_else(|| bearer(&headers).map(str::to_owned))
        .ok_or(Error::Unauthorized)?;
    let user = state.relay.tokens.verify(&token)?;
    // A user without an identity key cannot receive (e.g. deleted account).
    state
        .relay
        .store
        .identity(user)
        .await?
        .ok_or(Error::Unauthorized)?;
    let ws = ws.map_err(|_| Error::invalid("expected a WebSocket upgrade request"))?;
    let permit = state.sessions.clone().try_acquire_owned().map_err(|_| {
        tracing::warn!("gateway session limit reached");
        Error::RateLimited {
            retry_after_secs: 5,
        }
    })?;
    // Register before answering 101, so sessions replace each other in
    // handshake order (a later handshake always wins).
    let subscription = state.relay.fanout.subscribe(user);
    let max_frame = usize::try_from(state.relay.config.max_message_bytes).unwrap_or(usize::MAX);
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    // A root span: as a child it would keep the handshake's request span
    // (and its formatted fields) open for the whole session, ~0.3 KB per
    // idle socket (docs/performance.md, seventh round).
    let session_span = tracing::info_span!(parent: None, "gateway_session", request_id, %user);
    Ok(ws
        .read_buffer_size(READ_BUFFER_BYTES)
        // Write each frame through at once instead of accumulating 128 KiB.
        .write_buffer_size(0)
        .max_write_buffer_size(max_frame.saturating_mul(2).max(MAX_CLIENT_MESSAGE_BYTES))
        .max_message_size(MAX_CLIENT_MESSAGE_BYTES)
        .max_frame_size(MAX_CLIENT_MESSAGE_BYTES)
        .on_upgrade(move |socket| {
            async move {
                session::Session::new(state.relay.clone(), user, socket)
                    .run(subscription, state.shutdown.clone())
                    .await;
                drop(permit);
            }
            // The session's log lines keep the handshake's request id.
            .instrument(session_span)
        })
        .into_response())
}
