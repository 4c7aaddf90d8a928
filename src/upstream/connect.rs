//! Opening one upstream connection.
//!
//! DNS, TCP connect (trying each resolved address in turn), socket options,
//! TLS with ALPN, and the HTTP/2 handshake all run under one
//! `connect_timeout`. An HTTP/2 connection's task is spawned here; it ends
//! when the connection closes, when every sender is dropped, or at the stop
//! signal, whichever comes first. An HTTP/1.1 connection needs no handshake
//! and no task (see `h1`): its transport goes to the pool as it is.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::RequestBody;
use super::h1::Io;
use super::pool::OriginKey;
use super::tls::ClientTls;
use crate::config::{UpstreamConfig, UpstreamProtocol};
use crate::error::{Error, Kind};
use crate::shutdown::Shutdown;

/// A freshly opened connection.
pub(crate) enum Fresh {
    /// The transport of an HTTP/1.1 connection.
    H1(Io),
    /// The sender and the peer's SETTINGS_MAX_CONCURRENT_STREAMS, kept
    /// current by the connection task.
    H2(http2::SendRequest<RequestBody>, Arc<AtomicUsize>),
}

/// Opens upstream connections; shared by every origin.
pub(crate) struct Connector {
    tls: ClientTls,
    connect_timeout: Duration,
    tcp_keepalive: Option<Duration>,
    h2: http2::Builder<TokioExecutor>,
    stop: Shutdown,
}

impl Connector {
    pub(crate) fn new(cfg: &UpstreamConfig, stop: Shutdown) -> io::Result<Self> {
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            // Bounded per-stream buffering: a slow client holds at most one
            // window of upstream data per stream.
            .initial_stream_window_size(256 * 1024)
            .initial_connection_window_size(4 * 1024 * 1024)
            .max_concurrent_reset_streams(512)
            .max_pending_accept_reset_streams(64)
            .max_local_error_reset_streams(1024)
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(20));
        Ok(Self {
            tls: ClientTls::new(cfg)?,
            connect_timeout: cfg.connect_timeout,
            tcp_keepalive: cfg.tcp_keepalive,
            h2,
            stop,
        })
    }

    /// Opens a connection to `key` within the connect timeout. `on_h2_close`
    /// runs when an HTTP/2 connection's task ends (and is dropped unused
    /// for an HTTP/1.1 connection, whose transport the caller owns).
    pub(crate) async fn connect(
        &self,
        key: &OriginKey,
        on_h2_close: impl FnOnce() + Send + 'static,
    ) -> Result<Fresh, Error> {
        match tokio::time::timeout(self.connect_timeout, self.open(key, on_h2_close)).await {
            Ok(res) => res,
            Err(_) => Err(Error::new(Kind::ConnectTimeout)),
        }
    }

    async fn open(
        &self,
        key: &OriginKey,
        on_close: impl FnOnce() + Send + 'static,
    ) -> Result<Fresh, Error> {
        let tcp = self.tcp(key).await?;
        if !key.tls {
            if key.protocol == UpstreamProtocol::Http2 {
                return self.handshake_h2(TokioIo::new(tcp), on_close).await;
            }
            return Ok(Fresh::H1(Io::Tcp(tcp)));
        }
        let name =
            ServerName::try_from(key.host.clone()).map_err(|e| Error::with_cause(Kind::Tls, e))?;
        let connector = TlsConnector::from(self.tls.for_protocol(key.protocol));
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| Error::with_cause(Kind::Tls, e))?;
        if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
            return self.handshake_h2(TokioIo::new(tls), on_close).await;
        }
        Ok(Fresh::H1(Io::Tls(Box::new(tls))))
    }

    async fn tcp(&self, key: &OriginKey) -> Result<TcpStream, Error> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((key.host.as_str(), key.port))
            .await
            .map_err(|e| Error::with_cause(Kind::Connect, e))?
            .collect();
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    self.tune(&stream);
                    return Ok(stream);
                }
                Err(e) => last = Some(e),
            }
        }
        let err = last.unwrap_or_else(|| io::Error::other("name resolved to no address"));
        Err(Error::with_cause(Kind::Connect, err))
    }

    fn tune(&self, stream: &TcpStream) {
        let sock = SockRef::from(stream);
        if let Err(e) = sock.set_tcp_nodelay(true) {
            tracing::debug!("upstream TCP_NODELAY: {e}");
        }
        if let Some(idle) = self.tcp_keepalive {
            let ka = TcpKeepalive::new().with_time(idle);
            if let Err(e) = sock.set_tcp_keepalive(&ka) {
                tracing::debug!("upstream SO_KEEPALIVE: {e}");
            }
        }
    }

    async fn handshake_h2<T>(
        &self,
        io: TokioIo<T>,
        on_close: impl FnOnce() + Send + 'static,
    ) -> Result<Fresh, Error>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, conn) = self
            .h2
            .handshake(io)
            .await
            .map_err(|e| Error::with_cause(Kind::UpstreamProtocol, e))?;
        let peer_limit = Arc::new(AtomicUsize::new(conn.current_max_send_streams()));
        let stop = self.stop.clone();
        spawn_conn(track_peer_limit(conn, peer_limit.clone()), stop, on_close);
        Ok(Fresh::H2(tx, peer_limit))
    }
}

/// Publishes the peer's stream limit after every poll of the connection
/// (SETTINGS frames are processed inside those polls), so checkout can
/// open another connection instead of queueing behind a full one.
async fn track_peer_limit<T>(
    conn: http2::Connection<T, RequestBody, TokioExecutor>,
    limit: Arc<AtomicUsize>,
) -> hyper::Result<()>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let mut conn = std::pin::pin!(conn);
    std::future::poll_fn(|cx| {
        let polled = conn.as_mut().poll(cx);
        limit.store(conn.current_max_send_streams(), Ordering::Relaxed);
        polled
    })
    .await
}

/// Drives a hyper client connection until it ends or the stop signal fires.
fn spawn_conn<F>(conn: F, stop: Shutdown, on_close: impl FnOnce() + Send + 'static)
where
    F: std::future::Future<Output = hyper::Result<()>> + Send + 'static,
{
    tokio::spawn(async move {
        tokio::select! {
            res = conn => {
                if let Err(e) = res {
                    tracing::debug!("upstream connection ended: {e}");
                }
            }
            () = stop.wait() => {}
        }
        on_close();
    });
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::RootStore;

    /// The size the pool's comment on boxing the connect quotes: a connect
    /// future (TCP, TLS, HTTP/2 handshake) is worth keeping out of every
    /// request's own future. With rustc 1.95 it is about 7.5 KiB in debug
    /// and release builds alike (7712 and 7664 bytes).
    #[test]
    fn connect_future_size() {
        let cfg = UpstreamConfig {
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            max_idle_per_origin: 8,
            h2_max_streams_per_connection: 100,
            tcp_keepalive: None,
            roots: RootStore::None,
            ca_file: None,
        };
        let connector = Connector::new(&cfg, Shutdown::new()).unwrap();
        let key = OriginKey {
            tls: true,
            host: "upstream.test".to_owned(),
            port: 443,
            protocol: UpstreamProtocol::Auto,
        };
        let stats = std::sync::Arc::new(AtomicUsize::new(0));
        let future = connector.connect(&key, move || drop(stats));
        let size = std::mem::size_of_val(&future);
        eprintln!("connect future: {size} bytes");
        assert!(size > 4096, "a connect future is {size} bytes");
    }
}
