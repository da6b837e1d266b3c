//! Per-connection guards: the connection limit, and the request-headers deadline that closes
//! slowloris clients (pingora times out each read, not the whole header).
//!
//! [`Guarded`] wraps the proxy application. It counts open connections, tells whether HTTP/1
//! or HTTP/2 is spoken (within the deadline, so a client that trickles its first bytes is
//! closed too), and hands pingora a [`GuardedStream`] whose reads fail once a request's headers
//! took longer than `--request-headers-timeout` from their first byte. The proxy marks the
//! headers as read in `request_filter` and waits for the next ones in `logging`, through the
//! [`ConnState`] it finds on the session's stream. On HTTP/2 its writes fail once blocked for
//! `--stream-idle-timeout`, which closes a client that floods PING or SETTINGS without reading,
//! its reads yield to other connections after every [`H2_READ_BUDGET`] bytes, and it is closed
//! past Envoy's bounds on PRIORITY and WINDOW_UPDATE frames (`h2_frames`).

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::l4::stream::Stream as TcpStream;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN, IO,
};
use pingora::proxy::Session;
use pingora::server::ShutdownWatch;
use prometheus::IntGauge;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use super::h2_frames::FrameCounts;
use super::head::{self, HeadWatch};
use super::{Limits, HEADERS_TOO_LARGE};
use crate::local_reply::LocalReply;

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Bytes read and dropped after a `431` before the connection is closed: closing a socket with
/// unread bytes sends a reset, which can destroy the reply before the client reads it.
const DRAIN_AFTER_REJECT: usize = 1024 * 1024;
/// The longest that dropping lasts; Envoy's `delayed_close_timeout` default.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// Bytes an HTTP/2 connection may read before its task yields to the others on the thread.
/// h2 handles frames for as long as the socket has them, so a flood of small frames (about
/// 3,800 PINGs in 64 KiB) would otherwise keep a request on another connection waiting; Envoy
/// bounds the same work per I/O cycle (`max_requests_per_io_cycle`).
pub const H2_READ_BUDGET: usize = 64 * 1024;

/// What the proxy and the stream share about one client connection.
#[derive(Debug)]
pub struct ConnState {
    /// When the connection was accepted.
    pub accepted: Instant,
    /// The connection is over `--max-connections`: its requests are shed.
    pub shed: bool,
    awaiting_headers: AtomicBool,
    epoch: AtomicU32,
}

impl ConnState {
    fn new(shed: bool) -> Self {
        Self {
            accepted: crate::clock::now(),
            shed,
            awaiting_headers: AtomicBool::new(true),
            epoch: AtomicU32::new(0),
        }
    }

    /// The current request's headers are in: the deadline no longer applies.
    pub fn headers_read(&self) {
        self.awaiting_headers.store(false, Ordering::Relaxed);
    }

    /// The request is done; the next one's headers get a new deadline from their first byte.
    pub fn expect_headers(&self) {
        self.epoch.fetch_add(1, Ordering::Relaxed);
        self.awaiting_headers.store(true, Ordering::Relaxed);
    }

    /// The state of the HTTP/1 connection a request came on (`None` for HTTP/2).
    pub fn of(session: &Session) -> Option<&ConnState> {
        let stream = session.as_downstream().stream()?;
        let io: &dyn IO = &**stream;
        io.as_any()
            .downcast_ref::<GuardedStream>()
            .map(|g| &*g.state)
    }
}

/// Open client connections of one proxy, shared by its listeners, and exported as a gauge
/// when one is given.
#[derive(Debug, Default, Clone)]
pub struct Connections {
    open: Arc<AtomicUsize>,
    gauge: Option<IntGauge>,
}

impl Connections {
    /// A count that `gauge` follows.
    pub fn exported(gauge: IntGauge) -> Self {
        Self {
            open: Arc::default(),
            gauge: Some(gauge),
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// Holds one count of [`Connections`] for the life of a connection.
struct Open(Connections);

impl Open {
    fn enter(c: &Connections) -> (Self, usize) {
        let now = c.open.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(g) = &c.gauge {
            g.inc();
        }
        (Self(c.clone()), now)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
        if let Some(g) = &self.0.gauge {
            g.dec();
        }
    }
}

/// A request head the connection answered itself, before pingora made a request of it.
#[derive(Debug, Clone, Copy)]
pub struct RefusedHead {
    /// When the head's first byte came (`None` without `--request-headers-timeout`).
    pub started: Option<Instant>,
    /// The listener address.
    pub local: Option<SocketAddr>,
    /// The client address.
    pub remote: Option<SocketAddr>,
    /// What the client was sent.
    pub reply: LocalReply,
}

/// Records the heads a connection refuses, as the proxy records the requests it answers
/// (access log and Istio's metrics).
pub trait RefusalLog: Send + Sync {
    /// One refused head.
    fn refused(&self, head: &RefusedHead);
}

/// The proxy application behind the connection guards.
pub struct Guarded<A> {
    app: Arc<A>,
    limits: Arc<Limits>,
    connections: Connections,
    refusals: Option<Arc<dyn RefusalLog>>,
}

impl<A> Guarded<A> {
    /// Guards `app` with `limits`, counting connections in `connections`.
    pub fn new(app: A, limits: Arc<Limits>, connections: Connections) -> Self {
        Self {
            app: Arc::new(app),
            limits,
            connections,
            refusals: None,
        }
    }

    /// Records the request heads the connections refuse in `log`.
    pub fn with_refusals(mut self, log: Arc<dyn RefusalLog>) -> Self {
        self.refusals = Some(log);
        self
    }
}

#[async_trait]
impl<A> ServerApp for Guarded<A>
where
    A: ServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let (_open, open) = Open::enter(&self.connections);
        let shed = self.limits.max_connections > 0 && open > self.limits.max_connections;
        let (stream, h2) = match self.detect(stream).await {
            Ok(detected) => detected?,
            Err(e) => {
                tracing::debug!(error = %e, "client connection closed before its first request");
                return None;
            }
        };
        let header_timeout = if h2 {
            None
        } else {
            self.limits.request_headers_timeout
        };
        let guarded = GuardedStream {
            inner: stream,
            state: Arc::new(ConnState::new(shed)),
            header_timeout,
            h2,
            deadline: None,
            write_stall: self.limits.stream_idle_timeout.filter(|_| h2),
            write_deadline: None,
            read_budget: H2_READ_BUDGET,
            yielding: None,
            frames: FrameCounts::new(&self.limits).filter(|_| h2),
            head: (!h2).then(|| Head {
                watch: HeadWatch::default(),
                drained: None,
                refusals: self.refusals.clone(),
            }),
            rewritten: None,
        };
        // Kept-alive HTTP/1 connections come back here, so the count covers the connection.
        let mut next = self.app.process_new(Box::new(guarded), shutdown).await;
        while let Some(stream) = next {
            next = self.app.process_new(stream, shutdown).await;
        }
        None
    }

    async fn cleanup(&self) {
        self.app.cleanup().await;
    }
}

impl<A> Guarded<A> {
    /// Whether the client speaks HTTP/2: by ALPN on TLS, by the preface in cleartext (read,
    /// then put back). `Ok(None)` when the client left or stalled before deciding.
    async fn detect(&self, stream: Stream) -> std::io::Result<Option<(Stream, bool)>> {
        if stream.get_ssl_digest().is_some() {
            let h2 = matches!(stream.selected_alpn_proto(), Some(ALPN::H2));
            return Ok(Some((stream, h2)));
        }
        if !stream.as_any().is::<TcpStream>() {
            return Ok(Some((stream, false)));
        }
        let Ok(mut tcp) = stream.into_any().downcast::<TcpStream>() else {
            return Ok(None);
        };
        let mut buf = [0u8; H2_PREFACE.len()];
        let mut received = 0;
        let mut deadline: Option<tokio::time::Instant> = None;
        let idle = self.limits.idle_timeout;
        let h2 = loop {
            let seen = buf.get(..received).unwrap_or_default();
            if H2_PREFACE.get(..received) != Some(seen) {
                break false;
            }
            let Some(space) = buf.get_mut(received..).filter(|s| !s.is_empty()) else {
                break true;
            };
            // Until the first byte the connection is idle; after it, its headers are late.
            let wait = match (deadline, idle) {
                (Some(at), _) => Some(at),
                (None, Some(idle)) => Some(tokio::time::Instant::now() + idle),
                (None, None) => None,
            };
            let read = tcp.read(space);
            let n = match wait {
                Some(at) => match tokio::time::timeout_at(at, read).await {
                    Ok(n) => n?,
                    Err(_) => return Ok(None),
                },
                None => read.await?,
            };
            if n == 0 {
                return Ok(None);
            }
            if received == 0 {
                deadline = self
                    .limits
                    .request_headers_timeout
                    .map(|t| tokio::time::Instant::now() + t);
            }
            received += n;
        };
        tcp.rewind(buf.get(..received).unwrap_or_default());
        Ok(Some((tcp, h2)))
    }
}

/// A client connection whose reads fail once a request's headers are late.
pub struct GuardedStream {
    inner: Stream,
    state: Arc<ConnState>,
    header_timeout: Option<Duration>,
    h2: bool,
    /// The running deadline and the request (epoch) it is for.
    deadline: Option<(u32, Pin<Box<Sleep>>)>,
    /// HTTP/2: longest time a write may stay blocked (`--stream-idle-timeout`).
    write_stall: Option<Duration>,
    /// When the blocked write fails.
    write_deadline: Option<Pin<Box<Sleep>>>,
    /// HTTP/2: bytes left to read before yielding ([`H2_READ_BUDGET`]), and the yield.
    read_budget: usize,
    yielding: Option<Pin<Box<dyn Future<Output = ()> + Send + Sync>>>,
    /// HTTP/2: the frames each way, against PRIORITY and WINDOW_UPDATE floods.
    frames: Option<FrameCounts>,
    /// HTTP/1: the request head being read, against the header limits.
    head: Option<Head>,
    /// HTTP/1: a reply of pingora's own being written as Envoy's ([`head::as_envoys_reply`]).
    rewritten: Option<Rewritten>,
}

/// A write whose bytes were replaced: what goes out instead, how much of it went, and how many
/// of the caller's bytes it stands for.
struct Rewritten {
    bytes: Vec<u8>,
    written: usize,
    stands_for: usize,
}

/// What an HTTP/1 connection knows of the request head it is reading.
struct Head {
    watch: HeadWatch,
    /// After a `431`: what is dropped before the close.
    drained: Option<Drain>,
    /// Where a refused head is recorded.
    refusals: Option<Arc<dyn RefusalLog>>,
}

/// The client's bytes dropped after a `431`, and when dropping ends.
struct Drain {
    bytes: usize,
    until: Pin<Box<Sleep>>,
}

impl GuardedStream {
    /// Reads HTTP/2 bytes until [`H2_READ_BUDGET`] is spent, then yields once, as
    /// `tokio::task::yield_now` does: the task runs again only after the runtime has polled
    /// for I/O, so other connections' readiness is seen between two turns of a flood (a plain
    /// self-wake would keep the run queue busy, and a current-thread runtime looks for I/O
    /// only every 61 polls while it is).
    fn poll_read_budgeted(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.read_budget == 0 {
            let turn = self
                .yielding
                .get_or_insert_with(|| Box::pin(tokio::task::yield_now()));
            if turn.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.yielding = None;
            self.read_budget = H2_READ_BUDGET;
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        match read {
            Poll::Ready(Ok(())) => {
                let new = buf.filled().get(before..).unwrap_or_default();
                self.read_budget = self.read_budget.saturating_sub(new.len());
                if let Some(Err(flood)) = self.frames.as_mut().map(|f| f.received(new)) {
                    tracing::debug!(%flood, "HTTP/2 connection closed");
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        flood.to_string(),
                    )));
                }
            }
            // The task waits for the socket anyway: a fresh budget when it comes back.
            Poll::Pending => self.read_budget = H2_READ_BUDGET,
            Poll::Ready(Err(_)) => {}
        }
        read
    }

    /// Fails an HTTP/2 connection whose writes stayed blocked for `write_stall`: the client
    /// reads nothing. h2 stops reading frames while it cannot write the ACKs that a PING or
    /// SETTINGS flood asks for, so such a client would otherwise hold the connection and its
    /// socket buffers until the idle timeout (Envoy closes it: `max_outbound_control_frames`).
    /// `wrote` is whether `result` is a write that took bytes, which restarts the clock.
    fn write_stalled<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<std::io::Result<T>>,
        wrote: bool,
    ) -> Poll<std::io::Result<T>> {
        let Some(limit) = self.write_stall else {
            return result;
        };
        if result.is_ready() {
            if wrote {
                self.write_deadline = None;
            }
            return result;
        }
        let sleep = self
            .write_deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        // Polling registers the timer, so that a connection nobody reads is woken and closed.
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "HTTP/2 client reads nothing (--stream-idle-timeout)",
            )));
        }
        Poll::Pending
    }
}

impl GuardedStream {
    /// Writes the replacement bytes of [`Self::rewritten`] until all are out, then reports the
    /// caller's bytes as written.
    fn inner_write_rewritten(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        loop {
            let Some(rewritten) = self.rewritten.as_mut() else {
                return Poll::Ready(Ok(0));
            };
            let rest = rewritten.bytes.get(rewritten.written..).unwrap_or_default();
            match Pin::new(&mut self.inner).poll_write(cx, rest) {
                Poll::Ready(Ok(0)) => {
                    self.rewritten = None;
                    return Poll::Ready(Ok(0));
                }
                Poll::Ready(Ok(n)) => {
                    rewritten.written += n;
                    if rewritten.written >= rewritten.bytes.len() {
                        let stands_for = rewritten.stands_for;
                        self.rewritten = None;
                        return Poll::Ready(Ok(stands_for));
                    }
                }
                Poll::Ready(Err(e)) => {
                    self.rewritten = None;
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl fmt::Debug for GuardedStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedStream")
            .field("inner", &self.inner)
            .field("h2", &self.h2)
            .finish_non_exhaustive()
    }
}

fn headers_timed_out() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "request headers timeout (--request-headers-timeout)",
    )
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.h2 {
            return this.poll_read_budgeted(cx, buf);
        }
        if this.head.as_ref().is_some_and(|h| h.drained.is_some()) {
            return this.poll_drain(cx);
        }
        if !this.state.awaiting_headers.load(Ordering::Relaxed) {
            this.deadline = None;
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let epoch = this.state.epoch.load(Ordering::Relaxed);
        if this.deadline.as_ref().is_some_and(|(e, _)| *e != epoch) {
            this.deadline = None;
        }
        if let Some((_, sleep)) = this.deadline.as_mut() {
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(headers_timed_out()));
            }
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        let new = buf.filled().get(before..).unwrap_or_default();
        if !matches!(read, Poll::Ready(Ok(()))) || new.is_empty() {
            return read;
        }
        if let (Some(limit), None) = (this.header_timeout, &this.deadline) {
            // The request's first byte: its headers are due within the limit.
            let mut sleep = Box::pin(tokio::time::sleep(limit));
            // Registers the timer, so that a stalled client is woken up and closed.
            let _ = sleep.as_mut().poll(cx);
            this.deadline = Some((epoch, sleep));
        }
        let over = this
            .head
            .as_mut()
            .is_some_and(|h| h.watch.over_parser_limits(epoch, new));
        if over {
            // What was read is dropped with the rest: pingora gets no bytes, only the close.
            buf.set_filled(before);
            return this.reject_head(cx);
        }
        read
    }
}

impl GuardedStream {
    /// Answers `431` for a head past pingora's ceiling, then drops what the client still sends
    /// (up to [`DRAIN_AFTER_REJECT`] or [`DRAIN_TIMEOUT`]) before failing the read.
    fn reject_head(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let reply = head::too_large_reply();
        // The client is still sending its head, so nothing else is queued on this socket and
        // the reply goes out in one write; if it does not, the client gets the close alone.
        let inner = Pin::new(&mut self.inner);
        if let Poll::Ready(Ok(n)) = inner.poll_write(cx, &reply) {
            if n == reply.len() {
                let _ = Pin::new(&mut self.inner).poll_flush(cx);
            }
        }
        tracing::debug!("request head past the parser's ceiling: 431 DPE, connection closed");
        let started = match (&self.deadline, self.header_timeout) {
            (Some((_, due)), Some(limit)) => due.deadline().into_std().checked_sub(limit),
            _ => None,
        };
        let digest = self.inner.get_socket_digest();
        let addr = |a: Option<&pingora::protocols::l4::socket::SocketAddr>| {
            a.and_then(|a| a.as_inet()).copied()
        };
        if let Some(head) = self.head.as_mut() {
            if let Some(log) = &head.refusals {
                log.refused(&RefusedHead {
                    started,
                    local: addr(digest.as_ref().and_then(|d| d.local_addr())),
                    remote: addr(digest.as_ref().and_then(|d| d.peer_addr())),
                    reply: HEADERS_TOO_LARGE,
                });
            }
            head.drained = Some(Drain {
                bytes: 0,
                until: Box::pin(tokio::time::sleep(DRAIN_TIMEOUT)),
            });
        }
        self.poll_drain(cx)
    }

    /// Reads and drops the client's bytes after a `431` until it closes, sent
    /// [`DRAIN_AFTER_REJECT`] or [`DRAIN_TIMEOUT`] passed; then fails the read, which closes
    /// the connection.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let failed = || {
            Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "request head past the parser's ceiling (431)",
            )))
        };
        let Some(drain) = self.head.as_mut().and_then(|h| h.drained.as_mut()) else {
            return failed();
        };
        if drain.until.as_mut().poll(cx).is_ready() {
            return failed();
        }
        let mut scratch = [0u8; 8192];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.inner).poll_read(cx, &mut buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                    drain.bytes += buf.filled().len();
                    if drain.bytes >= DRAIN_AFTER_REJECT {
                        return failed();
                    }
                }
                Poll::Ready(_) => return failed(),
            }
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.head.is_some() {
            if this.rewritten.is_none() {
                this.rewritten = head::as_envoys_reply(buf).map(|bytes| Rewritten {
                    bytes,
                    written: 0,
                    stands_for: buf.len(),
                });
            }
            if this.rewritten.is_some() {
                return this.inner_write_rewritten(cx);
            }
        }
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let (Poll::Ready(Ok(n)), Some(frames)) = (&result, this.frames.as_mut()) {
            frames.sent(buf.get(..*n).unwrap_or_default());
        }
        this.write_stalled(cx, result, true)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        this.write_stalled(cx, result, false)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let (Poll::Ready(Ok(n)), Some(frames)) = (&result, this.frames.as_mut()) {
            let mut left = *n;
            for b in bufs {
                let take = left.min(b.len());
                frames.sent(b.get(..take).unwrap_or_default());
                left -= take;
                if left == 0 {
                    break;
                }
            }
        }
        this.write_stalled(cx, result, true)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for GuardedStream {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await;
    }
}

impl UniqueID for GuardedStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for GuardedStream {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for GuardedStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for GuardedStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for GuardedStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for GuardedStream {
    /// pingora peeks for the HTTP/2 preface; [`Guarded`] already knows, without waiting for
    /// 24 bytes a short HTTP/1 request never sends.
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        if self.h2 {
            return self.inner.try_peek(buf).await;
        }
        // Not the preface: pingora reads HTTP/1.
        buf.fill(0);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_count_follows_guards() {
        let gauge = IntGauge::new("open", "open").expect("gauge");
        let c = Connections::exported(gauge.clone());
        let (a, n) = Open::enter(&c);
        assert_eq!(n, 1);
        let (b, n) = Open::enter(&c);
        assert_eq!((n, gauge.get()), (2, 2));
        drop(a);
        assert_eq!((c.open(), gauge.get()), (1, 1));
        drop(b);
        assert_eq!((c.open(), gauge.get()), (0, 0));
    }

    #[tokio::test]
    async fn an_http2_connection_yields_after_its_read_budget() {
        use tokio::io::AsyncWriteExt;
        // An in-memory pipe already holding three budgets: every read is ready at once, so
        // without the budget the reads would never pause.
        let (mut client, server) = tokio::io::duplex(4 * H2_READ_BUDGET);
        client
            .write_all(&vec![0u8; 3 * H2_READ_BUDGET])
            .await
            .expect("write");
        let mut guarded = GuardedStream {
            inner: Box::new(server),
            state: Arc::new(ConnState::new(false)),
            header_timeout: None,
            h2: true,
            deadline: None,
            write_stall: None,
            write_deadline: None,
            read_budget: H2_READ_BUDGET,
            yielding: None,
            frames: None,
            head: None,
            rewritten: None,
        };
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut chunk = [0u8; 4096];
        let mut turns = vec![0usize];
        while turns.iter().sum::<usize>() < 3 * H2_READ_BUDGET {
            let mut buf = ReadBuf::new(&mut chunk);
            match Pin::new(&mut guarded).poll_read(&mut cx, &mut buf) {
                Poll::Ready(Ok(())) => {
                    if let Some(turn) = turns.last_mut() {
                        *turn += buf.filled().len();
                    }
                }
                Poll::Ready(Err(e)) => panic!("read: {e}"),
                Poll::Pending => {
                    turns.push(0);
                    // Let the runtime poll for I/O and run the deferred wake-up.
                    tokio::task::yield_now().await;
                }
            }
            assert!(turns.len() <= 4, "too many pauses: {turns:?}");
        }
        assert_eq!(turns, vec![H2_READ_BUDGET; 3], "one budget per turn");
    }

    #[test]
    fn a_new_request_restarts_the_headers_deadline() {
        let s = ConnState::new(false);
        assert!(s.awaiting_headers.load(Ordering::Relaxed));
        s.headers_read();
        assert!(!s.awaiting_headers.load(Ordering::Relaxed));
        let before = s.epoch.load(Ordering::Relaxed);
        s.expect_headers();
        assert!(s.awaiting_headers.load(Ordering::Relaxed));
        assert_eq!(s.epoch.load(Ordering::Relaxed), before + 1);
    }
}
