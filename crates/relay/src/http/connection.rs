//! Connection-level policies hyper does not provide: a lingering close.
//!
//! A request answered before its body was read (too large by
//! Content-Length, unauthenticated, rate-limited…) ends its connection. If
//! the socket were closed while the client is still sending, the kernel
//! would answer the unread bytes with a reset, and an ordinary client
//! (reqwest, OkHttp) would fail with EPIPE/ECONNRESET instead of reading
//! the answer. So such a connection sends its answer, half-closes (FIN),
//! reads and discards what the client still sends within a byte and time
//! budget, and only then closes. Nothing is buffered.
//!
//! hyper shuts the socket down itself when a connection ends; the linger
//! happens inside [`ConnIo::poll_shutdown`], which keeps this working with
//! the auto (HTTP/1 + HTTP/2) builder and WebSocket upgrades.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Most request-body bytes discarded after an answer before closing: a
/// client library typically sends its whole body before reading the answer,
/// so this covers the common uploads that are refused (a few MiB); a client
/// sending more within [`LINGER_MAX_TIME`] meets a reset.
pub const LINGER_MAX_BYTES: usize = 8 * 1024 * 1024;
/// Longest time spent discarding them.
pub const LINGER_MAX_TIME: Duration = Duration::from_secs(2);

/// One connection's shared state, in each of its requests' extensions.
#[derive(Debug, Clone, Default)]
pub struct ConnState(Arc<Shared>);

#[derive(Debug, Default)]
struct Shared {
    /// Set when a request was answered with its body not read to the end.
    linger: AtomicBool,
}

impl ConnState {
    fn request_linger(&self) {
        self.0.linger.store(true, Ordering::Release);
    }

    fn linger_requested(&self) -> bool {
        self.0.linger.load(Ordering::Acquire)
    }
}

/// Middleware: a request answered without its body read to the end leaves
/// the connection unable to carry another request. The answer says
/// `Connection: close` (keep-alive clients must not reuse the connection)
/// and the connection ends with a lingering close.
pub async fn close_if_unread(req: Request, next: Next) -> Response {
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    let conn = req.extensions().get::<ConnState>().cloned();
    let done = Arc::new(AtomicBool::new(false));
    let req = req.map(|inner| {
        Body::new(TrackedBody {
            inner,
            done: Arc::clone(&done),
        })
    });
    let mut response = next.run(req).await;
    if !done.load(Ordering::Acquire) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        if let Some(conn) = conn {
            conn.request_linger();
        }
    }
    response
}

/// A request body that records when it has been read to the end.
struct TrackedBody {
    inner: Body,
    done: Arc<AtomicBool>,
}

impl HttpBody for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.done.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The socket under hyper: passes I/O through, and lingers on shutdown
/// when [`close_if_unread`] asked for it.
pub struct ConnIo<T> {
    io: T,
    state: ConnState,
    drain: Option<Drain>,
}

/// Progress of a lingering close.
struct Drain {
    fin_sent: bool,
    left: usize,
    deadline: Pin<Box<Sleep>>,
}

impl<T> ConnIo<T> {
    pub fn new(io: T, state: ConnState) -> Self {
        Self {
            io,
            state,
            drain: None,
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> ConnIo<T> {
    /// FIN, then discard input until EOF, an error, the byte budget or the
    /// deadline; the caller drops (closes) the socket afterwards.
    fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let drain = self.drain.get_or_insert_with(|| Drain {
            fin_sent: false,
            left: LINGER_MAX_BYTES,
            deadline: Box::pin(tokio::time::sleep(LINGER_MAX_TIME)),
        });
        if !drain.fin_sent {
            ready!(Pin::new(&mut self.io).poll_shutdown(cx))?;
            drain.fin_sent = true;
        }
        let mut sink = [0u8; 8 * 1024];
        while drain.left > 0 {
            if drain.deadline.as_mut().poll(cx).is_ready() {
                break;
            }
            let mut buf = ReadBuf::new(&mut sink);
            match ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf)) {
                Ok(()) if !buf.filled().is_empty() => {
                    drain.left = drain.left.saturating_sub(buf.filled().len());
                }
                // EOF (the client is done) or a reset: nothing left to wait for.
                _ => break,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ConnIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ConnIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.state.linger_requested() {
            this.poll_linger(cx)
        } else {
            Pin::new(&mut this.io).poll_shutdown(cx)
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn lingering<T>(io: T) -> ConnIo<T> {
        let state = ConnState::default();
        state.request_linger();
        ConnIo::new(io, state)
    }

    #[tokio::test]
    async fn linger_drains_what_the_client_still_sends_then_stops() {
        let (server, mut client) = tokio::io::duplex(64 * 1024);
        let closing = tokio::spawn(async move { lingering(server).shutdown().await });
        // The client's remaining body goes through, then it sees the FIN.
        client.write_all(&vec![7u8; 1024 * 1024]).await.unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        drop(client);
        closing.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn linger_gives_up_after_its_byte_budget() {
        let (server, mut client) = tokio::io::duplex(64 * 1024);
        let closing = tokio::spawn(async move {
            let mut io = lingering(server);
            io.shutdown().await.unwrap();
            drop(io);
        });
        let chunk = vec![0u8; 64 * 1024];
        let mut total = 0usize;
        while client.write_all(&chunk).await.is_ok() {
            total += chunk.len();
        }
        closing.await.unwrap();
        assert!(
            total <= LINGER_MAX_BYTES + 128 * 1024,
            "{total} bytes accepted"
        );
    }

    #[tokio::test]
    async fn without_a_request_shutdown_is_immediate() {
        let (server, mut client) = tokio::io::duplex(1024);
        let mut io = ConnIo::new(server, ConnState::default());
        io.shutdown().await.unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
    }
}
