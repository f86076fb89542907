//! Connection-level I/O policies hyper does not provide:
//! * a write deadline: hyper has read (header) timeouts but none for writes,
//!   so a client that requests large answers and never reads them could hold
//!   its connection (and a connection slot) forever;
//! * a lingering close: a connection whose last request was answered before
//!   its body was read (too large, unauthenticated…) is not simply closed.
//!   Closing a socket with unread input makes the kernel send a reset, which
//!   makes an ordinary client (still writing its body) fail with EPIPE or
//!   ECONNRESET and lose the answer. So the answer is followed by a FIN, and
//!   the rest of the body is read and discarded, within a byte and time
//!   budget, before the socket is closed.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Sleep;

/// Most request-body bytes discarded after an answer before closing.
pub const LINGER_MAX_BYTES: usize = 4 * 1024 * 1024;
/// Longest time spent discarding them.
pub const LINGER_MAX_TIME: Duration = Duration::from_secs(2);

/// A connection's "end with a lingering close" flag, in each request's
/// extensions; set when a request is answered without its body read.
#[derive(Debug, Clone, Default)]
pub struct LingerOnClose(Arc<AtomicBool>);

impl LingerOnClose {
    pub fn request(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn requested(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Lingering close: sends FIN (the answer is complete), then reads and
/// discards what the client still sends (`already` bytes were buffered by
/// hyper) until it stops, [`LINGER_MAX_BYTES`] or [`LINGER_MAX_TIME`];
/// dropping `io` then closes the socket. Nothing is kept.
pub async fn linger<T: AsyncRead + AsyncWrite + Unpin>(mut io: T, already: usize) {
    if io.shutdown().await.is_err() {
        return;
    }
    let deadline = tokio::time::Instant::now() + LINGER_MAX_TIME;
    let mut left = LINGER_MAX_BYTES.saturating_sub(already);
    let mut sink = vec![0u8; 16 * 1024];
    while left > 0 {
        match tokio::time::timeout_at(deadline, io.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => left = left.saturating_sub(n),
            _ => return,
        }
    }
}

/// Fails a write (and so the connection) that makes no progress for `timeout`.
pub struct WriteTimeout<T> {
    io: T,
    timeout: Duration,
    /// Armed while a write is blocked; reset whenever one makes progress.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<T> WriteTimeout<T> {
    pub fn new(io: T, timeout: Duration) -> Self {
        Self {
            io,
            timeout,
            deadline: None,
        }
    }

    /// Called when the inner write is pending: `Err` once the deadline passed.
    fn blocked(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let timeout = self.timeout;
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client did not read the answer",
            )),
            Poll::Pending => Ok(()),
        }
    }

    fn track<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match polled {
            Poll::Pending => match self.blocked(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
            ready => {
                self.deadline = None;
                ready
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteTimeout<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.track(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.track(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.track(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn linger_drains_what_the_client_still_sends_then_stops() {
        let (server, mut client) = tokio::io::duplex(64 * 1024);
        let lingering = tokio::spawn(linger(server, 0));
        // The client's remaining body goes through, and it sees the FIN.
        client.write_all(&vec![7u8; 1024 * 1024]).await.unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        drop(client);
        lingering.await.unwrap();
    }

    #[tokio::test]
    async fn linger_gives_up_after_its_byte_budget() {
        let (server, mut client) = tokio::io::duplex(64 * 1024);
        let lingering = tokio::spawn(linger(server, LINGER_MAX_BYTES - 1024));
        // Far more than the budget left: the server stops reading, so the
        // client's writes fail once the server side is gone.
        let written = async {
            let chunk = vec![0u8; 16 * 1024];
            let mut total = 0usize;
            while client.write_all(&chunk).await.is_ok() {
                total += chunk.len();
            }
            total
        }
        .await;
        lingering.await.unwrap();
        assert!(written < 1024 * 1024, "{written} bytes accepted");
    }

    #[tokio::test]
    async fn a_write_nobody_reads_fails_after_the_timeout() {
        let (client, _server) = tokio::io::duplex(16);
        let mut io = WriteTimeout::new(client, Duration::from_millis(200));
        let err = io.write_all(&[0u8; 64]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn a_slow_but_moving_reader_is_fine() {
        let (client, mut server) = tokio::io::duplex(16);
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            let mut total = 0;
            while total < 64 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                total += tokio::io::AsyncReadExt::read(&mut server, &mut buf)
                    .await
                    .unwrap();
            }
        });
        // The whole answer takes ~400 ms, longer than the timeout, but every
        // chunk is taken well before it: progress resets the deadline.
        let mut io = WriteTimeout::new(client, Duration::from_millis(300));
        io.write_all(&[0u8; 64]).await.unwrap();
        reader.await.unwrap();
    }
}
