//! Accepts connections and serves the application on each one, over HTTP/1.1 (with
//! upgrades, for WebSocket) or HTTP/2, in plain text or over TLS.
//!
//! The protocol is settled before any HTTP state exists: by ALPN over TLS, and by the
//! first bytes in plain text or when a TLS client offers no ALPN (HTTP/2 with prior
//! knowledge opens with `PRI `, a method HTTP/1 reserves for exactly that). Each
//! connection then holds only its own protocol's state. hyper-util's auto builder detects the protocol inside one future sized for
//! either, so every HTTP/1.1 connection's task had room for an HTTP/2 connection's state
//! (2.4 KB; here an HTTP/1.1 connection's task and its boxed state take 1.5 KB), which
//! adds up at ten thousand open event streams.
//!
//! Limits: the TLS handshake and a connection's first bytes must come within the head
//! timeout, and so must every HTTP/1.1 request head (hyper's header read timeout, which
//! also closes keep-alive connections left idle that long). An HTTP/2 connection is
//! closed once it has had no request and no response in progress for as long (an
//! open event stream counts as a response in progress). On shutdown the listener stops
//! accepting, each connection finishes the requests it has and closes, and whatever is
//! still open after the grace period is dropped.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How an HTTP/2 connection with prior knowledge starts (the first 4 of its 24 bytes).
const H2_PREFACE_START: &[u8; 4] = b"PRI ";

/// hyper's smallest read buffer limit, which is also the longest request head accepted.
/// Its default (about 400 KB) lets the read buffer grow to 16 KiB on a plain keep-alive
/// connection, held for as long as the connection stays open.
const READ_BUFFER_LIMIT: usize = 8192;

/// How often an HTTP/2 connection is pinged; a peer that does not answer within hyper's
/// keep-alive timeout (20 s) is dropped.
const H2_PING_INTERVAL: Duration = Duration::from_secs(60);

/// Pause after a failed `accept` (out of file descriptors, say), so a listener that keeps
/// failing does not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// Per-connection limits.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// For the TLS handshake and the first bytes, for each HTTP/1.1 request head, and
    /// for an HTTP/2 connection with nothing in progress.
    pub head_timeout: Duration,
    /// How long connections get to finish after shutdown starts.
    pub grace: Duration,
}

/// The application as one connection serves it: the router, with the peer's address in
/// every request (as axum's `ConnectInfo` extractor reads it).
#[derive(Clone)]
struct Service {
    app: Router,
    peer: SocketAddr,
    /// Told of every exchange, where the connection closes itself once idle (HTTP/2).
    activity: Option<Arc<Activity>>,
}

impl hyper::service::Service<Request<Incoming>> for Service {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = Exchange;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        request.extensions_mut().insert(ConnectInfo(self.peer));
        // A router is always ready, and a clone is one reference count.
        Exchange {
            response: tower::Service::call(&mut self.app.clone(), request),
            open: self.activity.as_ref().map(Activity::open),
        }
    }
}

/// An HTTP/2 connection's exchanges in progress: a request being answered, or a
/// response body (an event stream, say) still being sent.
#[derive(Default)]
struct Activity {
    open: AtomicUsize,
    /// Whether the connection has made a request yet.
    seen: AtomicBool,
    changed: Notify,
}

impl Activity {
    fn open(self: &Arc<Self>) -> Open {
        self.open.fetch_add(1, Ordering::AcqRel);
        self.seen.store(true, Ordering::Release);
        self.changed.notify_one();
        Open(Arc::clone(self))
    }

    fn seen(&self) -> bool {
        self.seen.load(Ordering::Acquire)
    }

    /// Completes once the connection has had no exchange for `limit` on end.
    async fn idle_for(&self, limit: Duration) {
        loop {
            // `notify_one` keeps a permit while nobody waits, so a change between the
            // look and the wait still ends the wait (and restarts the idle clock).
            if self.open.load(Ordering::Acquire) > 0 {
                self.changed.notified().await;
            } else if tokio::time::timeout(limit, self.changed.notified())
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

/// One exchange in progress; it ends when this is dropped.
struct Open(Arc<Activity>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_one();
    }
}

/// The router's answer to one request, tied (where activity is tracked) to an [`Open`]
/// that lives until the response body is sent or abandoned.
struct Exchange {
    response: axum::routing::future::RouteFuture<std::convert::Infallible>,
    open: Option<Open>,
}

impl Future for Exchange {
    type Output = Result<axum::response::Response, std::convert::Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = match std::task::ready!(Pin::new(&mut self.response).poll(cx)) {
            Ok(response) => response,
            Err(never) => match never {},
        };
        Poll::Ready(Ok(match self.open.take() {
            Some(open) => response.map(|body| axum::body::Body::new(Tracked { body, _open: open })),
            None => response,
        }))
    }
}

/// A response body that keeps its exchange open until hyper has sent it or dropped it.
struct Tracked {
    body: axum::body::Body,
    _open: Open,
}

impl hyper::body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// What a connection's task is handed besides its stream.
struct Connection {
    service: Service,
    limits: ConnectionLimits,
    /// Shutdown has started: finish what is in progress and close.
    stop: CancellationToken,
    /// The grace period is over: close now.
    drop_all: CancellationToken,
}

/// Serves `app` on `listener` until `stop`, on the server's task tracker: its task ends
/// once every connection has closed or been dropped after the grace period.
pub fn spawn(
    tasks: &TaskTracker,
    listener: std::net::TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: ConnectionLimits,
    stop: CancellationToken,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    let tls = tls.map(TlsAcceptor::from);
    tasks.spawn(accept_loop(listener, app, tls, limits, stop));
    Ok(())
}

async fn accept_loop(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    limits: ConnectionLimits,
    stop: CancellationToken,
) {
    let connections = TaskTracker::new();
    // Cancelled when the grace period is over: drops every connection still open.
    let drop_all = CancellationToken::new();
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    if !is_per_connection(&error) {
                        tracing::warn!(%error, "accepting a connection failed");
                        tokio::time::sleep(ACCEPT_RETRY).await;
                    }
                    continue;
                }
            },
        };
        // Responses are written whole; small frames (events, pongs) must not wait for
        // Nagle's algorithm.
        stream.set_nodelay(true).ok();
        // A dual-stack listener (`[::]:…`) sees IPv4 clients as `::ffff:a.b.c.d`; the
        // plain IPv4 form is what `trusted_proxies`, rate limits and logs expect.
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let connection = Connection {
            service: Service {
                app: app.clone(),
                peer,
                activity: None,
            },
            limits,
            stop: stop.clone(),
            drop_all: drop_all.clone(),
        };
        match &tls {
            None => connections.spawn(serve_plain(stream, connection)),
            Some(acceptor) => connections.spawn(serve_tls(stream, acceptor.clone(), connection)),
        };
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(limits.grace, connections.wait())
        .await
        .is_err()
    {
        tracing::info!(
            open = connections.len(),
            "dropping the connections still open after the grace period"
        );
        drop_all.cancel();
        connections.wait().await;
    }
}

/// Errors that concern one connection (the peer gave up before it was accepted), after
/// which the listener is as good as before.
fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
}

async fn serve_plain(stream: TcpStream, connection: Connection) {
    let deadline = tokio::time::Instant::now() + connection.limits.head_timeout;
    let Some((stream, protocol)) = sniff(stream, deadline, &connection.stop).await else {
        return;
    };
    serve(TokioIo::new(stream), protocol, connection).await;
}

async fn serve_tls(stream: TcpStream, acceptor: TlsAcceptor, connection: Connection) {
    // The handshake and, without ALPN, the first bytes share one head timeout.
    let deadline = tokio::time::Instant::now() + connection.limits.head_timeout;
    let handshake = tokio::select! {
        biased;
        () = connection.stop.cancelled() => return,
        handshake = tokio::time::timeout_at(deadline, acceptor.accept(stream)) => handshake,
    };
    let stream = match handshake {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            tracing::debug!(%error, "TLS handshake failed");
            return;
        }
        Err(_) => return,
    };
    let (stream, protocol) = match stream.get_ref().1.alpn_protocol() {
        Some(b"h2") => (Sniffed::decided(stream), Protocol::Http2),
        Some(_) => (Sniffed::decided(stream), Protocol::Http1),
        // A client that offers no ALPN may still speak HTTP/2 with prior knowledge.
        None => match sniff(stream, deadline, &connection.stop).await {
            Some(sniffed) => sniffed,
            None => return,
        },
    };
    serve(TokioIo::new(stream), protocol, connection).await;
}

/// Tells the protocol from the first bytes; `None` when they do not come by `deadline`,
/// the peer goes away, or the server stops meanwhile.
async fn sniff<S: AsyncRead + Unpin>(
    stream: S,
    deadline: tokio::time::Instant,
    stop: &CancellationToken,
) -> Option<(Sniffed<S>, Protocol)> {
    tokio::select! {
        biased;
        () = stop.cancelled() => None,
        sniffed = tokio::time::timeout_at(deadline, Sniffed::read(stream)) => sniffed.ok()?.ok(),
    }
}

/// Runs one connection's protocol. The connection is boxed so that this future, and the
/// task around it, are the same small size whichever protocol it speaks.
async fn serve<I>(io: TokioIo<I>, protocol: Protocol, connection: Connection)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let head_timeout = connection.limits.head_timeout;
    match protocol {
        Protocol::Http1 => {
            // hyper's header read timeout closes a connection that stays idle.
            let http = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(head_timeout)
                .max_buf_size(READ_BUFFER_LIMIT)
                .serve_connection(io, connection.service.clone())
                .with_upgrades();
            let shutdown = |http: Pin<&mut _>| {
                http1::UpgradeableConnection::graceful_shutdown(http);
            };
            let never_idle = std::future::pending();
            until_closed(Box::pin(http), shutdown, never_idle, || true, &connection).await;
        }
        Protocol::Http2 => {
            // HTTP/2 has no request head timeout and hyper no idle timeout: a client
            // could hold a connection for good without asking anything. One with no
            // request and no response in progress for the head timeout is closed.
            let activity = Arc::new(Activity::default());
            let service = Service {
                activity: Some(Arc::clone(&activity)),
                ..connection.service.clone()
            };
            let http = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                // Pings find peers that vanished without closing, while a stream (an
                // event stream may rightly stay open for hours) keeps it busy.
                .keep_alive_interval(H2_PING_INTERVAL)
                .serve_connection(io, service);
            let shutdown = |http: Pin<&mut _>| http2::Connection::graceful_shutdown(http);
            let idle = activity.idle_for(head_timeout);
            let asked = || activity.seen();
            until_closed(Box::pin(http), shutdown, idle, asked, &connection).await;
        }
    }
}

/// Drives `http` until it closes. On `stop`, or once `idle` completes, asks it to finish
/// what it has and close (HTTP/2: GOAWAY); gives up on it at `drop_all`, and (when closed
/// for idleness) also after another head timeout, which is as long as an idle client had
/// to ask something. A connection that never `asked` anything has nothing to finish and
/// is dropped at once: HTTP/2's graceful close waits for a PING answer such a client
/// may never send.
async fn until_closed<C>(
    mut http: Pin<Box<C>>,
    shutdown: impl FnOnce(Pin<&mut C>),
    idle: impl Future<Output = ()>,
    asked: impl Fn() -> bool,
    connection: &Connection,
) where
    C: Future<Output = Result<(), hyper::Error>>,
{
    let stopping = tokio::select! {
        biased;
        outcome = http.as_mut() => return log_end(outcome),
        () = connection.stop.cancelled() => true,
        () = idle => false,
    };
    // A request that came in the same instant is answered before the close.
    if !asked() {
        return;
    }
    shutdown(http.as_mut());
    let idle_grace = async {
        if stopping {
            // Shutdown has a grace period of its own: `drop_all`.
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(connection.limits.head_timeout).await;
    };
    tokio::select! {
        outcome = http.as_mut() => log_end(outcome),
        () = idle_grace => {}
        () = connection.drop_all.cancelled() => {}
    }
}

fn log_end(outcome: Result<(), hyper::Error>) {
    if let Err(error) = outcome {
        // Clients that vanish, time out or speak nonsense: theirs to fix, not ours.
        tracing::debug!(%error, "connection ended with an error");
    }
}

/// A stream whose first bytes were read to tell its protocol; they are handed out again
/// before the rest, so the HTTP parser sees the stream whole.
struct Sniffed<S> {
    stream: S,
    head: [u8; H2_PREFACE_START.len()],
    unread: std::ops::Range<usize>,
}

impl<S: AsyncRead + Unpin> Sniffed<S> {
    /// A stream whose protocol is known without reading (by ALPN).
    fn decided(stream: S) -> Self {
        Self {
            stream,
            head: [0; H2_PREFACE_START.len()],
            unread: 0..0,
        }
    }

    /// Reads until the first bytes differ from the HTTP/2 preface (HTTP/1) or match its
    /// start (HTTP/2). Most clients send their whole first line at once, so this is one
    /// read.
    async fn read(mut stream: S) -> io::Result<(Self, Protocol)> {
        let mut head = [0u8; H2_PREFACE_START.len()];
        let mut filled = 0;
        while filled < head.len() {
            let read = stream.read(&mut head[filled..]).await?;
            if read == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            filled += read;
            if head[..filled] != H2_PREFACE_START[..filled] {
                break;
            }
        }
        let protocol = if head[..filled] == H2_PREFACE_START[..] {
            Protocol::Http2
        } else {
            Protocol::Http1
        };
        let sniffed = Self {
            stream,
            head,
            unread: 0..filled,
        };
        Ok((sniffed, protocol))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Sniffed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.unread.is_empty() {
            return Pin::new(&mut this.stream).poll_read(cx, buf);
        }
        let count = this.unread.len().min(buf.remaining());
        let start = this.unread.start;
        buf.put_slice(&this.head[start..start + count]);
        this.unread.start += count;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Sniffed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
