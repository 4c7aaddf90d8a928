//! The client side: accept, optional TLS, then hyper's connection state
//! machines for HTTP/1.1 and HTTP/2.
//!
//! # Drain contract
//! When the drain signal fires the accept loop stops and closes its
//! listener; every connection gets hyper's graceful shutdown (HTTP/2
//! GOAWAY; HTTP/1 finishes its in-flight response, which the relay marks
//! `connection: close`, then closes). Connections may run until
//! `drain_timeout`; whatever is left then is aborted. [`Server::run`]
//! returns only when no connection task is left.

mod head_timer;
mod listener;
mod stall;
mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

pub(crate) use listener::AcceptBackoff;
pub(crate) use listener::bind;
use stall::WriteDeadline;
pub(crate) use tls::Terminator;

use crate::config::ServerConfig;
use crate::proxy::{ConnInfo, Relay};
use crate::shutdown::Shutdown;
use crate::telemetry::{Activity, Metrics};
use crate::timer::Wheel;

/// hyper connection builders, chosen by the preface `first_bytes` peeked
/// (plaintext) or by ALPN (TLS). Not hyper-util's preface detection: it
/// hands hyper the bytes it read as a prefix, and hyper's next read then
/// grew the connection's read buffer to 16 KiB.
#[derive(Clone)]
struct Builders {
    /// `server.http2`: h2c prefaces are served as HTTP/2.
    h2c: bool,
    h1: http1::Builder,
    h2: auto::Builder<TokioExecutor>,
}

impl Builders {
    fn new(cfg: &ServerConfig) -> Self {
        let head = usize::try_from(cfg.limits.max_header_size).unwrap_or(usize::MAX);
        let mut h1 = http1::Builder::new();
        h1.timer(head_timer::HeadTimer::default())
            .header_read_timeout(cfg.header_read_timeout)
            .keep_alive(true)
            // A head larger than this is answered 431. The read buffer's
            // limit alone is not exact: a read may fill it past its maximum.
            .max_header_size(head)
            .max_buf_size(head.max(8192))
            .max_headers(cfg.limits.max_headers);
        let mut b = auto::Builder::new(TokioExecutor::new());
        b.http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(cfg.h2_max_concurrent_streams)
            .max_header_list_size(u32::try_from(head).unwrap_or(u32::MAX))
            // Rapid-reset and local-error-reset storms end the connection.
            .max_pending_accept_reset_streams(64)
            .max_local_error_reset_streams(1024);
        Self {
            h2c: cfg.http2,
            h1,
            h2: b.http2_only(),
        }
    }
}

/// The client-facing server.
pub(crate) struct Server {
    relay: Arc<Relay>,
    tls: Option<Arc<Terminator>>,
    metrics: Arc<Metrics>,
    builders: Builders,
    tcp_keepalive: Option<Duration>,
    header_read_timeout: Duration,
    write_timeout: Duration,
    idle_timeout: Duration,
    max_connections: usize,
}

impl Server {
    pub(crate) fn new(
        cfg: &ServerConfig,
        relay: Arc<Relay>,
        tls: Option<Arc<Terminator>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            relay,
            tls,
            metrics,
            builders: Builders::new(cfg),
            tcp_keepalive: cfg.tcp_keepalive,
            header_read_timeout: cfg.header_read_timeout,
            write_timeout: cfg.limits.write_timeout,
            idle_timeout: cfg.limits.idle_timeout,
            max_connections: cfg.limits.max_connections,
        }
    }

    /// Accepts until `drain`, then drains for at most `drain_timeout`.
    pub(crate) async fn run(
        self: Arc<Self>,
        listener: TcpListener,
        drain: Shutdown,
        drain_timeout: Duration,
    ) {
        let mut conns = JoinSet::new();
        let mut backoff = AcceptBackoff::new("client");
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) if self.at_capacity() => {
                        conns.spawn(self.clone().refuse(stream, peer));
                    }
                    Ok((stream, peer)) => {
                        conns.spawn(self.clone().serve(stream, peer, drain.clone()));
                    }
                    Err(e) => backoff.failed(&e).await,
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                () = drain.wait() => break,
            }
        }
        drop(listener);
        tracing::info!(
            "draining {} connection(s) for up to {drain_timeout:?}",
            conns.len()
        );
        let deadline = tokio::time::sleep(drain_timeout);
        let mut deadline = pin!(deadline);
        loop {
            tokio::select! {
                next = conns.join_next() => if next.is_none() { break },
                () = &mut deadline => {
                    tracing::warn!("drain timeout: ending {} connection(s)", conns.len());
                    conns.abort_all();
                    while conns.join_next().await.is_some() {}
                    break;
                }
            }
        }
    }

    async fn serve(self: Arc<Self>, stream: TcpStream, peer: SocketAddr, drain: Shutdown) {
        let _open = OpenConn::new(&self.metrics);
        listener::tune_accepted(&stream, self.tcp_keepalive);
        let local = match stream.local_addr() {
            Ok(a) => a,
            Err(e) => return tracing::debug!("local_addr: {e}"),
        };
        let wheel = Arc::new(Wheel::new(self.relay.wheel_tick()));
        let Some(tls) = self.tls.clone() else {
            // Boxed, like every stage below: the task's own future is as
            // large as its largest stage and lives as long as the
            // connection, so each stage that is large or long is a box of
            // its own (a plaintext or TLS connection then carries only the
            // stage it is in).
            let decided = Box::pin(async {
                tokio::select! {
                    d = first_bytes(&stream, self.header_read_timeout) => d,
                    () = drain.wait() => None,
                }
            })
            .await;
            let Some(preface) = decided else {
                return tracing::debug!(%peer, "closed: no request bytes within header_read_timeout");
            };
            // With HTTP/2 off, hyper's HTTP/1 answers a preface with an error.
            let proto = match preface {
                Proto::H2 if self.builders.h2c => Proto::H2,
                _ => Proto::H1,
            };
            let info = ConnInfo::new(peer, local, false, wheel);
            return self.drive(proto, stream, info, &drain).await;
        };
        let handshake = Box::pin(tls.acceptor().accept(stream));
        // The TLS stream is moved into the boxed `drive` inside this match,
        // so the task's future keeps no slot for it (over 1 KiB, see the
        // `tls_stream_size` test) while the connection runs.
        let drive = match tokio::time::timeout(tls.handshake_timeout(), handshake).await {
            Ok(Ok(stream)) => {
                let info = ConnInfo::new(peer, local, true, wheel);
                // HTTP/2 over TLS needs ALPN `h2` (RFC 9113 §3.3); anything
                // else is HTTP/1.1.
                let proto = match stream.get_ref().1.alpn_protocol() {
                    Some(b"h2") => Proto::H2,
                    _ => Proto::H1,
                };
                self.drive(proto, stream, info, &drain)
            }
            Ok(Err(e)) => return self.tls_failed(peer, &e),
            Err(_) => return self.tls_failed(peer, &"handshake timed out"),
        };
        drive.await;
    }

    fn at_capacity(&self) -> bool {
        let open = self.metrics.connections_open.load(Ordering::Relaxed);
        usize::try_from(open).unwrap_or(0) >= self.max_connections
    }

    /// Over `max_connections`: a plaintext client gets a minimal 503 (one
    /// write, bounded by a short deadline); a TLS client just a close, since
    /// answering would cost a handshake. Either way the live connections
    /// keep their share of the relay.
    async fn refuse(self: Arc<Self>, mut stream: TcpStream, peer: SocketAddr) {
        self.metrics
            .connections_refused
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%peer, "refused: max_connections ({}) reached", self.max_connections);
        if self.tls.is_some() {
            return;
        }
        const BODY: &str = r#"{"error":{"message":"relay at its connection limit","type":"server_error","code":"overloaded"}}"#;
        let busy = format!(
            "HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{BODY}",
            BODY.len()
        );
        let write = tokio::io::AsyncWriteExt::write_all(&mut stream, busy.as_bytes());
        let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
    }

    fn tls_failed(&self, peer: SocketAddr, e: &dyn std::fmt::Display) {
        self.metrics
            .tls_handshake_errors
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%peer, "TLS handshake failed: {e}");
    }

    /// The connection's whole life as one boxed future. Built by a plain
    /// function: an async fn would keep its `io` argument's slot (over 1 KiB
    /// for TLS) in its state after moving it into the connection.
    fn drive<'a, I>(
        &'a self,
        proto: Proto,
        io: I,
        info: ConnInfo,
        drain: &'a Shutdown,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let relay = self.relay.clone();
        let (peer, wheel, activity) = (info.peer, info.wheel.clone(), info.activity.clone());
        // Each request's future is boxed: hyper's HTTP/1 dispatcher keeps a
        // slot the size of the service's future for the connection's whole
        // life, so an inline future (several KiB) would stay allocated through
        // every idle stream, where a box is freed once the head is out.
        let svc = service_fn(move |req| Box::pin(relay.clone().handle(info.clone(), req)));
        let io = TokioIo::new(WriteDeadline::new(io, self.write_timeout));
        let idle = idle(activity, self.idle_timeout);
        // One box per protocol, so an HTTP/1 connection holds HTTP/1's
        // state only; the connection in a box of its own, pinned where it
        // was made (moved into `until_drained` it would be stored twice: as
        // the argument and as the pinned local).
        match proto {
            Proto::H1 => {
                let conn = Box::pin(self.builders.h1.serve_connection(io, svc));
                Box::pin(until_drained(conn, wheel, drain, idle, peer))
            }
            Proto::H2 => {
                let conn = Box::pin(self.builders.h2.serve_connection(io, svc));
                Box::pin(until_drained(conn, wheel, drain, idle, peer))
            }
        }
    }
}

/// The protocol a connection speaks: from a plaintext client's first bytes
/// or TLS ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    /// HTTP/1.x (for plaintext: anything but the HTTP/2 preface).
    H1,
    /// HTTP/2 (plaintext: the h2c preface, prior knowledge).
    H2,
}

/// Waits, at most `limit`, until a plaintext client has sent enough bytes
/// to tell HTTP/1.1 from the h2c preface (peeked: hyper reads them again).
/// A deadline of its own because hyper's `header_read_timeout` starts only
/// once hyper reads, so a client that connects and sends nothing, or part
/// of the preface, would otherwise hold its connection slot forever. None
/// on timeout, EOF or error.
async fn first_bytes(stream: &TcpStream, limit: Duration) -> Option<Proto> {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let decided = async {
        let mut buf = [0u8; PREFACE.len()];
        loop {
            match stream.peek(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) if buf[..n] != PREFACE[..n] => return Some(Proto::H1),
                Ok(n) if n == buf.len() => return Some(Proto::H2),
                // Part of the preface: `peek` would return at once again.
                Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    };
    tokio::time::timeout(limit, decided).await.ok().flatten()
}

/// Runs `conn` with its timer wheel; on drain asks it to finish gracefully
/// and keeps both running until it has.
async fn until_drained<C>(
    mut conn: Pin<Box<C>>,
    wheel: Arc<Wheel>,
    drain: &Shutdown,
    idle: impl Future<Output = Duration>,
    peer: SocketAddr,
) where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    let mut timers = pin!(wheel.drive());
    // Timers first: a keepalive that falls due is fired before the
    // connection (and the stream waiting on it) is polled in the same wake,
    // instead of costing the task a second wake-up.
    let res = tokio::select! {
        biased;
        () = timers.as_mut() => return, // `drive` never returns
        res = conn.as_mut() => res,
        () = drain.wait() => {
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                res = conn.as_mut() => res,
                () = timers.as_mut() => return,
            }
        }
        grace = idle => {
            tracing::debug!(%peer, "idle timeout: closing the connection");
            // GOAWAY first; HTTP/2 then waits for the client's PING ack,
            // which an idle (or broken) client may never send.
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                res = conn.as_mut() => res,
                () = timers.as_mut() => return,
                () = tokio::time::sleep(grace) => return,
            }
        }
    };
    if let Err(e) = res {
        tracing::debug!(%peer, "connection ended: {e}");
    }
}

/// Resolves once the connection has had no open request for `timeout`,
/// with how long a graceful close may then take. HTTP/1 keep-alive
/// connections are closed sooner by hyper's header read timeout; this is
/// what ends idle HTTP/2 connections.
///
/// Requests record no time (nothing on the request path), so idleness is
/// sampled: every eighth of `timeout` the connection is checked. The first
/// idle sample may come just after the last request ended, so the
/// connection closes at the ninth idle sample in a row: between `timeout`
/// and `timeout` plus one eighth after its last request ended.
async fn idle(activity: Arc<Activity>, timeout: Duration) -> Duration {
    const SAMPLES: u32 = 8;
    let step = timeout / SAMPLES;
    let mut cursor = activity.started();
    let mut quiet = 0;
    while quiet <= SAMPLES {
        tokio::time::sleep(step).await;
        quiet = if activity.idle_since(&mut cursor) {
            quiet + 1
        } else {
            0
        };
    }
    timeout.min(Duration::from_secs(5))
}

/// Counts an open client connection for its lifetime.
struct OpenConn(Arc<Metrics>);

impl OpenConn {
    fn new(m: &Arc<Metrics>) -> Self {
        m.connections_open.fetch_add(1, Ordering::Relaxed);
        m.connections_total.fetch_add(1, Ordering::Relaxed);
        Self(m.clone())
    }
}

impl Drop for OpenConn {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    /// The size the comments in `serve` and `drive` quote: a TLS stream is
    /// worth keeping out of the connection task's own future.
    #[test]
    fn tls_stream_size() {
        let size = std::mem::size_of::<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>();
        assert!(size > 1024, "a server TLS stream is {size} bytes");
    }
}
