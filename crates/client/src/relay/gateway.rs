//! The WebSocket gateway: binary `WebSocketFrame`s in, `AckMessage`s out.

use futures::{SinkExt, StreamExt};
use obscura_proto::{
    AckMessage, Envelope, PreKeyStatus, WebSocketFrame, web_socket_frame::Payload,
};
use prost::Message as _;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::RelayError;

/// Largest frame accepted: a message body (1 MiB by default) plus framing.
const MAX_FRAME_BYTES: usize = 2 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("the relay refused the token")]
    Unauthorized,
    #[error("{0}")]
    Other(String),
}

impl From<ConnectError> for RelayError {
    fn from(e: ConnectError) -> Self {
        match e {
            ConnectError::Unauthorized => RelayError::SessionExpired,
            ConnectError::Other(m) => RelayError::WebSocket(m),
        }
    }
}

/// Something the relay pushed.
#[derive(Debug, Clone)]
pub enum GatewayEvent {
    Envelope(Envelope),
    PreKeyStatus(PreKeyStatus),
}

/// An open gateway connection.
pub struct Gateway {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Gateway {
    pub(super) async fn connect(url: &str) -> Result<Self, ConnectError> {
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_FRAME_BYTES))
            .max_frame_size(Some(MAX_FRAME_BYTES));
        match tokio_tungstenite::connect_async_with_config(url, Some(config), false).await {
            Ok((ws, _)) => Ok(Self { ws }),
            Err(tungstenite::Error::Http(response)) if response.status() == 401 => {
                Err(ConnectError::Unauthorized)
            }
            Err(e) => Err(ConnectError::Other(e.to_string())),
        }
    }

    /// The next event; `None` when the relay closed the connection.
    pub async fn next(&mut self) -> Result<Option<GatewayEvent>, RelayError> {
        while let Some(message) = self.ws.next().await {
            let message = message.map_err(|e| RelayError::WebSocket(e.to_string()))?;
            match message {
                Message::Binary(bytes) => {
                    let frame = WebSocketFrame::decode(bytes.as_ref())
                        .map_err(|e| RelayError::Protocol(format!("undecodable frame: {e}")))?;
                    match frame.payload {
                        Some(Payload::Envelope(envelope)) => {
                            return Ok(Some(GatewayEvent::Envelope(envelope)));
                        }
                        Some(Payload::PreKeyStatus(status)) => {
                            return Ok(Some(GatewayEvent::PreKeyStatus(status)));
                        }
                        // ACKs travel client → server only; ignore anything else.
                        Some(Payload::Ack(_)) | None => continue,
                    }
                }
                Message::Close(frame) => {
                    if frame.is_some_and(|f| f.reason == "replaced") {
                        return Err(RelayError::Replaced);
                    }
                    return Ok(None);
                }
                // Pings are answered by tungstenite; text is not part of the protocol.
                _ => continue,
            }
        }
        Ok(None)
    }

    /// Acknowledges `id`: the relay deletes the message.
    pub async fn ack(&mut self, id: &str) -> Result<(), RelayError> {
        let frame = WebSocketFrame {
            payload: Some(Payload::Ack(AckMessage {
                message_id: id.to_string(),
                message_ids: Vec::new(),
            })),
        };
        self.ws
            .send(Message::Binary(frame.encode_to_vec().into()))
            .await
            .map_err(|e| RelayError::WebSocket(e.to_string()))
    }

    /// Closes the connection politely.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}
