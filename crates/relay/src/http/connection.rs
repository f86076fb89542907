//! Connection-level policies hyper does not provide: a lingering close and
//! the client deadlines.
//!
//! **Lingering close.** A request answered before its body was read (too
//! large by Content-Length, unauthenticated, rate-limited…) ends its
//! connection. If the socket were closed while the client is still sending,
//! the kernel would answer the unread bytes with a reset, and an ordinary
//! client (reqwest, OkHttp) would fail with EPIPE/ECONNRESET instead of
//! reading the answer. So such a connection sends its answer, half-closes
//! (FIN), reads and discards what the client still sends within a byte and
//! time budget, and only then closes. Nothing is buffered. hyper shuts the
//! socket down itself when a connection ends; the linger happens inside
//! [`ConnIo::poll_shutdown`], which keeps this working with the auto
//! (HTTP/1 + HTTP/2) builder and WebSocket upgrades.
//!
//! **Deadlines.** Between requests (none being handled, no upgrade), a
//! connection that moves no byte for the keep-alive timeout is closed, and a
//! request head, once its first byte arrived, must be complete within the
//! header timeout ([`ConnIo`]; hyper's own header timer also runs while the
//! connection is idle, so it cannot tell the two apart). A request body must
//! keep arriving: each [`BODY_WINDOW`] bytes of it (all of it, if smaller)
//! within the body-read timeout, else the request is answered 408 and the
//! connection closed ([`guard_request`]). A deadline on the whole body would
//! cut off honest large uploads on slow links; this pace still costs a
//! slow-loris client real bandwidth per connection it holds.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::error::json_error;
use crate::config::Config;

/// Most request-body bytes discarded after an answer before closing: a
/// client library typically sends its whole body before reading the answer,
/// so this covers the common uploads that are refused (a few MiB); a client
/// sending more within [`LINGER_MAX_TIME`] meets a reset.
pub const LINGER_MAX_BYTES: usize = 8 * 1024 * 1024;
/// Longest time spent discarding them.
pub const LINGER_MAX_TIME: Duration = Duration::from_secs(2);
/// A request head must be complete this long after its first byte (and a
/// new connection must send its first byte within it).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
const REQUEST_ID: &str = "x-request-id";
/// The body-read timeout applies to each this many bytes of a body.
pub const BODY_WINDOW: usize = 64 * 1024;

/// The client deadlines of one listener.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header_read: Duration,
    pub body_read: Duration,
    pub keep_alive: Duration,
}

impl Timeouts {
    pub fn from_config(config: &Config) -> Self {
        Self {
            header_read: HEADER_READ_TIMEOUT,
            body_read: config.body_read_timeout,
            keep_alive: config.keep_alive_timeout,
        }
    }
}

/// One connection's shared state, in each of its requests' extensions.
#[derive(Debug, Clone)]
pub struct ConnState(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    timeouts: Timeouts,
    /// Set when a request was answered with its body not read to the end.
    linger: AtomicBool,
    /// Requests being handled now, and ever started.
    in_flight: AtomicUsize,
    started: AtomicU64,
    /// The connection was handed to a WebSocket: its session owns it now.
    upgraded: AtomicBool,
}

impl ConnState {
    pub fn new(timeouts: Timeouts) -> Self {
        Self(Arc::new(Shared {
            timeouts,
            linger: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            started: AtomicU64::new(0),
            upgraded: AtomicBool::new(false),
        }))
    }

    fn request_linger(&self) {
        self.0.linger.store(true, Ordering::Release);
    }

    fn linger_requested(&self) -> bool {
        self.0.linger.load(Ordering::Acquire)
    }

    /// Marks a request as being handled until the guard is dropped.
    fn begin_request(&self) -> InFlight {
        self.0.started.fetch_add(1, Ordering::AcqRel);
        self.0.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }
}

struct InFlight(ConnState);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Middleware, outermost: keeps the connection's deadlines informed, holds
/// the request body to its pace, and when a request is answered without its
/// body read to the end (the connection cannot carry another request),
/// says `Connection: close` (keep-alive clients must not reuse it) and asks
/// for a lingering close.
pub async fn guard_request(req: Request, next: Next) -> Response {
    let Some(conn) = req.extensions().get::<ConnState>().cloned() else {
        return next.run(req).await;
    };
    let _in_flight = conn.begin_request();
    let connect = req.method() == Method::CONNECT;
    if req.body().is_end_stream() {
        let response = next.run(req).await;
        if connect || response.status() == StatusCode::SWITCHING_PROTOCOLS {
            conn.0.upgraded.store(true, Ordering::Release);
        }
        return response;
    }
    let progress = Arc::new(BodyProgress::default());
    let timeout = conn.0.timeouts.body_read;
    let req = req.map(|inner| {
        Body::new(GuardedBody {
            inner,
            progress: Arc::clone(&progress),
            timeout,
            window_left: BODY_WINDOW,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        })
    });
    let mut response = next.run(req).await;
    if progress.timed_out.load(Ordering::Acquire) {
        // Whatever the handler made of the failed read, the answer is 408.
        let request_id = response.headers().get(REQUEST_ID).cloned();
        response = json_error(
            StatusCode::REQUEST_TIMEOUT,
            "request body not received in time",
        );
        if let Some(id) = request_id {
            response.headers_mut().insert(REQUEST_ID, id);
        }
    }
    if !progress.done.load(Ordering::Acquire) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        conn.request_linger();
    }
    response
}

#[derive(Default)]
struct BodyProgress {
    /// Read to the end.
    done: AtomicBool,
    /// Stopped for arriving too slowly.
    timed_out: AtomicBool,
}

/// A request body that records when it has been read to the end, and fails
/// when it does not arrive at the required pace.
struct GuardedBody {
    inner: Body,
    progress: Arc<BodyProgress>,
    timeout: Duration,
    /// Bytes still expected before the deadline is pushed back.
    window_left: usize,
    deadline: Pin<Box<Sleep>>,
}

impl HttpBody for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, Bytes::len);
                this.window_left = this.window_left.saturating_sub(len);
                if this.window_left == 0 {
                    this.window_left = BODY_WINDOW;
                    let next = Instant::now() + this.timeout;
                    this.deadline.as_mut().reset(next);
                }
            }
            Poll::Pending if this.deadline.as_mut().poll(cx).is_ready() => {
                this.progress.timed_out.store(true, Ordering::Release);
                return Poll::Ready(Some(Err(axum::Error::new(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request body not received in time",
                )))));
            }
            _ => {}
        }
        if matches!(polled, Poll::Ready(None)) || this.inner.is_end_stream() {
            this.progress.done.store(true, Ordering::Release);
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

/// The socket under hyper: enforces the between-requests deadlines, and
/// lingers on shutdown when [`guard_request`] asked for it.
pub struct ConnIo<T> {
    io: T,
    state: ConnState,
    timer: Option<Timer>,
    drain: Option<Drain>,
}

/// The deadline running while no request is being handled.
struct Timer {
    /// Waiting for a request (keep-alive), or reading its head.
    reading_head: bool,
    /// `ConnState::started` when armed: a later request re-arms it.
    started: u64,
    sleep: Pin<Box<Sleep>>,
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
            timer: None,
            drain: None,
        }
    }

    /// Disarms the timer while a request is handled or after an upgrade;
    /// arms the wait for the next request once the connection is idle.
    fn refresh_timer(&mut self) {
        let shared = &self.state.0;
        if shared.upgraded.load(Ordering::Acquire) || shared.in_flight.load(Ordering::Acquire) > 0 {
            self.timer = None;
            return;
        }
        let started = shared.started.load(Ordering::Acquire);
        if self.timer.as_ref().is_some_and(|t| t.started == started) {
            return;
        }
        // A new connection gets the header timeout for its first byte.
        let wait = if started == 0 {
            shared.timeouts.header_read
        } else {
            shared.timeouts.keep_alive
        };
        self.timer = Some(Timer {
            reading_head: false,
            started,
            sleep: Box::pin(tokio::time::sleep(wait)),
        });
    }

    /// Bytes moved while idle: the first bytes of a request start the header
    /// deadline; bytes written (a response still streaming) restart the wait.
    fn progressed(&mut self, read: bool) {
        let timeouts = self.state.0.timeouts;
        if let Some(timer) = self.timer.as_mut().filter(|t| !t.reading_head) {
            let after = if read {
                timer.reading_head = true;
                timeouts.header_read
            } else {
                timeouts.keep_alive
            };
            timer.sleep.as_mut().reset(Instant::now() + after);
        }
    }

    /// Fails once the deadline passed; otherwise the task wakes when it does.
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let Some(timer) = self.timer.as_mut() else {
            return Ok(());
        };
        if timer.sleep.as_mut().poll(cx).is_pending() {
            return Ok(());
        }
        let what = if timer.reading_head {
            "request head not received in time"
        } else {
            "idle connection timed out"
        };
        Err(io::Error::new(io::ErrorKind::TimedOut, what))
    }

    /// Before each operation: updates the timer, fails once it has expired,
    /// and otherwise registers the task to be woken when it does (hyper may
    /// not poll an idle connection again on its own).
    fn before_io(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        self.refresh_timer();
        self.poll_timer(cx)
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
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.before_io(cx)?;
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.progressed(true);
        }
        polled
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ConnIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.before_io(cx)?;
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.progressed(false);
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.before_io(cx)?;
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.progressed(false);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.before_io(cx)?;
        Pin::new(&mut this.io).poll_flush(cx)
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

    const TIMEOUTS: Timeouts = Timeouts {
        header_read: Duration::from_secs(30),
        body_read: Duration::from_secs(30),
        keep_alive: Duration::from_secs(75),
    };

    fn lingering<T>(io: T) -> ConnIo<T> {
        let state = ConnState::new(TIMEOUTS);
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
        let mut io = ConnIo::new(server, ConnState::new(TIMEOUTS));
        io.shutdown().await.unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
    }

    const SHORT: Timeouts = Timeouts {
        header_read: Duration::from_millis(100),
        body_read: Duration::from_millis(100),
        keep_alive: Duration::from_millis(100),
    };

    /// A connection that has served a request and is now idle.
    fn idle_after_a_request() -> ConnState {
        let state = ConnState::new(SHORT);
        drop(state.begin_request());
        state
    }

    #[tokio::test]
    async fn an_idle_connection_times_out() {
        let (server, _client) = tokio::io::duplex(1024);
        let mut io = ConnIo::new(server, idle_after_a_request());
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(5), io.read(&mut buf)).await;
        let err = read.expect("the deadline fired").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn no_deadline_while_a_request_is_handled() {
        let (server, _client) = tokio::io::duplex(1024);
        let state = ConnState::new(SHORT);
        let _handling = state.begin_request();
        let mut io = ConnIo::new(server, state);
        let mut buf = [0u8; 16];
        // Several keep-alive periods pass without the read failing.
        let read = tokio::time::timeout(Duration::from_millis(400), io.read(&mut buf)).await;
        assert!(read.is_err(), "read ended: {read:?}");
    }

    #[tokio::test]
    async fn no_deadline_after_an_upgrade() {
        let (server, _client) = tokio::io::duplex(1024);
        let state = idle_after_a_request();
        state.0.upgraded.store(true, Ordering::Release);
        let mut io = ConnIo::new(server, state);
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_millis(400), io.read(&mut buf)).await;
        assert!(read.is_err(), "read ended: {read:?}");
    }

    fn guarded(chunks: Vec<usize>, progress: &Arc<BodyProgress>) -> GuardedBody {
        use futures::StreamExt;
        let data = futures::stream::iter(
            chunks
                .into_iter()
                .map(|n| Ok::<_, io::Error>(Bytes::from(vec![0u8; n]))),
        )
        .chain(futures::stream::pending());
        GuardedBody {
            inner: Body::from_stream(data),
            progress: Arc::clone(progress),
            timeout: SHORT.body_read,
            window_left: BODY_WINDOW,
            deadline: Box::pin(tokio::time::sleep(SHORT.body_read)),
        }
    }

    #[tokio::test]
    async fn a_stalled_body_fails_after_the_body_read_timeout() {
        use http_body_util::BodyExt;
        let progress = Arc::new(BodyProgress::default());
        let body = guarded(vec![10], &progress);
        let read = tokio::time::timeout(Duration::from_secs(5), body.collect()).await;
        assert!(read.expect("the deadline fired").is_err());
        assert!(progress.timed_out.load(Ordering::Acquire));
        assert!(!progress.done.load(Ordering::Acquire));
    }
}
