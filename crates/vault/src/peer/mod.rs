//! The guardian-to-guardian binary protocol: the listener that answers
//! heartbeats and verify requests, and the client side used by the cluster's
//! heartbeat loop and by the operator's `verify` command.

pub mod codec;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::identity::Identity;
use crate::vault::Vault;
use codec::{Frame, FrameCodec, Heartbeat, PROTOCOL_VERSION, VerifyRequest, VerifyResponse, msg};

/// Simultaneous peer connections accepted; more wait in the accept queue.
const MAX_PEER_CONNECTIONS: usize = 256;

/// What a peer connection needs to answer.
#[derive(Clone)]
pub struct PeerContext {
    pub vault: Vault,
    pub cluster: Arc<Cluster>,
    pub idle_timeout: Duration,
}

/// Accepts peer connections until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, ctx: PeerContext, shutdown: CancellationToken) {
    let permits = Arc::new(Semaphore::new(MAX_PEER_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&permits).acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            () = shutdown.cancelled() => return,
        };
        let (stream, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "peer accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        let ctx = ctx.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            tokio::select! {
                r = handle_connection(stream, remote, &ctx) => {
                    if let Err(e) = r {
                        tracing::debug!(%remote, error = %e, "peer connection closed");
                    }
                }
                () = shutdown.cancelled() => {}
            }
        });
    }
}

async fn handle_connection(
    stream: TcpStream,
    remote: SocketAddr,
    ctx: &PeerContext,
) -> anyhow::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut framed = Framed::new(stream, FrameCodec);
    loop {
        let frame = match tokio::time::timeout(ctx.idle_timeout, framed.next()).await {
            Err(_) => bail!("idle timeout"),
            Ok(None) => return Ok(()),
            Ok(Some(frame)) => frame?,
        };
        if frame.version != PROTOCOL_VERSION {
            tracing::debug!(%remote, version = frame.version, "dropped frame of unknown protocol version");
            continue;
        }
        match frame.msg_type {
            msg::HEARTBEAT => {
                let Some(hb) = Heartbeat::decode(&frame.payload) else {
                    tracing::debug!(%remote, "dropped malformed heartbeat");
                    continue;
                };
                ctx.cluster.heard(remote, &hb);
                framed
                    .send(Frame::new(msg::HEARTBEAT_ACK, bytes::Bytes::new()))
                    .await?;
            }
            msg::VERIFY_REQUEST => {
                let Some(req) = VerifyRequest::decode(&frame.payload) else {
                    tracing::debug!(%remote, "dropped malformed verify request");
                    continue;
                };
                let resp = answer_verify(&ctx.vault, &req).await;
                framed
                    .send(Frame::new(msg::VERIFY_RESPONSE, resp.encode()))
                    .await?;
            }
            msg::REPAIR_OFFER | msg::REPAIR_ACCEPT => {
                tracing::debug!(%remote, "repair messages are not implemented (Phase 2); dropped");
            }
            other => tracing::debug!(%remote, msg_type = other, "dropped frame of unknown type"),
        }
    }
}

/// has_share + SHA-256 of the stored share. A share that fails its checksum
/// is reported as absent (and logged), never committed to.
async fn answer_verify(vault: &Vault, req: &VerifyRequest) -> VerifyResponse {
    let mut resp = VerifyResponse {
        identity: req.identity,
        identity_len: req.identity_len,
        has_share: false,
        commitment: [0; 32],
    };
    let Some(id) = req.identity_str().and_then(|s| Identity::parse(s).ok()) else {
        return resp;
    };
    match vault.pull(id.clone()).await {
        Ok(Some(stored)) => {
            resp.has_share = true;
            resp.commitment = Sha256::digest(&stored.data).into();
        }
        Ok(None) => {}
        Err(e) => tracing::error!(identity = %id, error = %e, "verify: stored share unreadable"),
    }
    resp
}

/// Connects to a peer within `timeout`.
/// A framed connection to another guardian's peer port.
pub type Connection = Framed<TcpStream, FrameCodec>;

pub async fn connect(addr: &str, timeout: Duration) -> anyhow::Result<Connection> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .context("connect timed out")?
        .with_context(|| format!("connecting to {addr}"))?;
    let _ = stream.set_nodelay(true);
    Ok(Framed::new(stream, FrameCodec))
}

/// Sends one frame and waits for the first reply of type `reply_type`.
pub async fn request(
    conn: &mut Connection,
    frame: Frame,
    reply_type: u8,
    timeout: Duration,
) -> anyhow::Result<Frame> {
    tokio::time::timeout(timeout, async {
        conn.send(frame).await?;
        while let Some(reply) = conn.next().await {
            let reply = reply?;
            if reply.version == PROTOCOL_VERSION && reply.msg_type == reply_type {
                return Ok(reply);
            }
        }
        bail!("peer closed the connection")
    })
    .await
    .context("peer did not answer in time")?
}

/// Asks the guardian at `addr` (peer port) about `identity`.
pub async fn verify(
    addr: &str,
    identity: &Identity,
    timeout: Duration,
) -> anyhow::Result<VerifyResponse> {
    let mut conn = connect(addr, timeout).await?;
    let req = VerifyRequest::for_identity(identity.as_str());
    let reply = request(
        &mut conn,
        Frame::new(msg::VERIFY_REQUEST, req.encode()),
        msg::VERIFY_RESPONSE,
        timeout,
    )
    .await?;
    VerifyResponse::decode(&reply.payload).context("malformed verify response")
}
