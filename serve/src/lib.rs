//! # arcane-serve
//!
//! How every arcane-aip server (log, witness, gateway, relay, compute node) accepts connections,
//! so that no peer can hold one open for free:
//! - a **header timeout**: a connection must deliver a whole request head within it — its first
//!   bytes included, and again for every request on a kept-alive connection — or it is closed;
//!   a client that dribbles its headers (slowloris) or opens a connection and sends nothing is
//!   cut off when it runs out;
//! - a **connection limit**, overall and **per peer address**: beyond it new connections are
//!   closed at once, so one peer cannot take every slot;
//! - limits on request heads (HTTP/1.1) and on streams and header lists (HTTP/2, with keep-alive
//!   pings that close dead peers);
//! - a **graceful shutdown**: stop accepting, let requests in progress finish; dropping the
//!   [`serve`] future instead (aborting its task) ends every connection at once, as a crashed
//!   process would.
//!
//! - a **body timeout**: a request body must arrive whole within it from the end of its head,
//!   or reading it fails (handlers answer with an error; sizes are the handlers' own limits);
//! - optionally **TLS** ([`tls`], TLS 1.3, HTTP/2 or HTTP/1.1 by ALPN), its handshake within the
//!   header timeout, and **HTTP/3** over QUIC ([`http3`]) under the same limits.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::sync::{Semaphore, watch};
use tower_service::Service as _;

/// The limits a server applies to its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServeLimits {
    /// Longest a connection may take to deliver a whole request head (and, on a new
    /// connection, its first bytes).
    pub header_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most connections open at once from one peer address.
    pub max_per_peer: usize,
    /// Largest HTTP/1.1 request head, in bytes.
    pub max_header_bytes: usize,
    /// Most concurrent HTTP/2 streams per connection.
    pub max_h2_streams: u32,
    /// Interval of HTTP/2 keep-alive pings (an unanswered ping closes the connection).
    pub h2_keep_alive: Duration,
    /// Longest a request body may take to arrive, from the end of its head.
    pub body_timeout: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            header_timeout: Duration::from_secs(10),
            max_connections: 4096,
            max_per_peer: 256,
            max_header_bytes: 64 * 1024,
            max_h2_streams: 64,
            h2_keep_alive: Duration::from_secs(30),
            body_timeout: Duration::from_secs(30),
        }
    }
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub mod http3;
pub mod tls;

/// The connection slots of one server: overall and per peer address.
pub(crate) struct Admission {
    connections: Arc<Semaphore>,
    peers: Arc<Peers>,
    max_per_peer: usize,
}

/// What an admitted connection holds until it ends.
pub(crate) type Slot = (tokio::sync::OwnedSemaphorePermit, PeerSlot);

impl Admission {
    pub(crate) fn new(limits: &ServeLimits) -> Self {
        Admission {
            connections: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            peers: Arc::new(Peers::default()),
            max_per_peer: limits.max_per_peer,
        }
    }

    /// A slot for a new connection from `ip`, or which limit refuses it.
    pub(crate) fn admit(&self, ip: IpAddr) -> Result<Slot, &'static str> {
        let permit = Arc::clone(&self.connections)
            .try_acquire_owned()
            .map_err(|_| "connection limit reached")?;
        let slot = self
            .peers
            .take(ip, self.max_per_peer)
            .ok_or("per-peer connection limit reached")?;
        Ok((permit, slot))
    }
}

/// Open connections per peer address.
#[derive(Default)]
pub(crate) struct Peers(Mutex<HashMap<IpAddr, usize>>);

/// A peer's connection slot, given back when dropped.
pub(crate) struct PeerSlot {
    peers: Arc<Peers>,
    ip: IpAddr,
}

impl Peers {
    pub(crate) fn take(self: &Arc<Self>, ip: IpAddr, limit: usize) -> Option<PeerSlot> {
        let mut open = self.0.lock().expect("peers lock");
        let count = open.entry(ip).or_insert(0);
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(PeerSlot {
            peers: Arc::clone(self),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = self.peers.0.lock().expect("peers lock");
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Serves `router` on `listener` under `limits` until `shutdown` completes, then stops
/// accepting and waits for the connections in progress to finish their requests.
///
/// The connections belong to the returned future: dropping it closes all of them mid-request.
pub async fn serve<L>(
    listener: L,
    router: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()>
where
    L: Listener<Addr = SocketAddr>,
{
    serve_tls(listener, None, router, limits, shutdown).await
}

/// [`serve`], over TLS when `tls` is given: the handshake, too, must complete within the header
/// timeout.
pub async fn serve_tls<L>(
    mut listener: L,
    tls: Option<tokio_rustls::TlsAcceptor>,
    router: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()>
where
    L: Listener<Addr = SocketAddr>,
{
    let admission = Admission::new(&limits);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut open = tokio::task::JoinSet::new();
    loop {
        let (io, addr) = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = open.join_next() => continue,
            () = &mut shutdown => break,
        };
        let held = match admission.admit(addr.ip()) {
            Ok(held) => held,
            Err(limit) => {
                tracing::warn!("{limit}; a new connection is closed");
                continue;
            }
        };
        let router = router.clone();
        let stop = stop_rx.clone();
        let tls = tls.clone();
        open.spawn(async move {
            let _held = held;
            match tls {
                None => serve_connection(io, router, limits, stop).await,
                Some(tls) => {
                    let handshake = tokio::time::timeout(limits.header_timeout, tls.accept(io));
                    if let Ok(Ok(io)) = handshake.await {
                        serve_connection(io, router, limits, stop).await;
                    }
                }
            }
        });
    }
    let _ = stop_tx.send(true);
    while open.join_next().await.is_some() {}
    Ok(())
}

async fn serve_connection<I>(
    mut io: I,
    router: Router,
    limits: ServeLimits,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // The first bytes tell HTTP/2's preface from HTTP/1.1; they too must come in time.
    let Ok(Ok(start)) = tokio::time::timeout(limits.header_timeout, first_bytes(&mut io)).await
    else {
        return;
    };
    if start.is_empty() {
        return;
    }
    let http2 = start == H2_PREFACE;
    let io = TokioIo::new(Prefixed { start, at: 0, io });
    let body_timeout = limits.body_timeout;
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let mut router = router.clone();
        let request =
            request.map(|body| axum::body::Body::new(DeadlineBody::new(body, body_timeout)));
        async move { router.call(request).await }
    });
    if http2 {
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.max_h2_streams)
            .max_header_list_size(limits.max_header_bytes as u32)
            .keep_alive_interval(limits.h2_keep_alive)
            .keep_alive_timeout(limits.h2_keep_alive);
        let connection = builder.serve_connection(io, service);
        drive(connection, &mut stop, |c| c.graceful_shutdown()).await;
    } else {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_buf_size(limits.max_header_bytes.max(8192));
        let connection = builder.serve_connection(io, service).with_upgrades();
        drive(connection, &mut stop, |c| c.graceful_shutdown()).await;
    }
}

/// Runs a connection to its end; on shutdown, asks it to finish what it is doing and close.
async fn drive<C, E>(
    connection: C,
    stop: &mut watch::Receiver<bool>,
    graceful: impl FnOnce(Pin<&mut C>),
) where
    C: Future<Output = Result<(), E>>,
{
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = stop.wait_for(|stopping| *stopping) => {}
    }
    graceful(connection.as_mut());
    let _ = connection.await;
}

/// Reads until the bytes read either are HTTP/2's whole preface or cannot become it; an empty
/// answer means the peer closed first.
async fn first_bytes<I: AsyncRead + Unpin>(io: &mut I) -> io::Result<Vec<u8>> {
    let mut start = Vec::with_capacity(H2_PREFACE.len());
    let mut chunk = [0u8; 24];
    while start.len() < H2_PREFACE.len() {
        let n = io
            .read(&mut chunk[..H2_PREFACE.len() - start.len()])
            .await?;
        if n == 0 {
            break;
        }
        start.extend_from_slice(&chunk[..n]);
        if !H2_PREFACE.starts_with(&start) {
            break;
        }
    }
    Ok(start)
}

/// A stream whose first bytes were already read: they are handed out again first.
struct Prefixed<I> {
    start: Vec<u8>,
    at: usize,
    io: I,
}

impl<I: AsyncRead + Unpin> AsyncRead for Prefixed<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.at < self.start.len() {
            let n = (self.start.len() - self.at).min(buf.remaining());
            let at = self.at;
            buf.put_slice(&self.start[at..at + n]);
            self.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Prefixed<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
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
}

/// A request body that fails once `deadline` has passed before it ended.
pub(crate) struct DeadlineBody<B> {
    inner: B,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl<B> DeadlineBody<B> {
    pub(crate) fn new(inner: B, timeout: Duration) -> Self {
        DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

/// The error a body gives when it did not arrive in time.
#[derive(Debug)]
pub struct BodyTimedOut;

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body did not arrive in time")
    }
}

impl std::error::Error for BodyTimedOut {}

impl<B> http_body::Body for DeadlineBody<B>
where
    B: http_body::Body<Data = hyper::body::Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = hyper::body::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
