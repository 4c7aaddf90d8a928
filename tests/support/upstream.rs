//! The scriptable mock upstream (HTTP/1.1, h2c, TLS with ALPN) that records
//! every request, a listener that never answers (a silent plain or TLS
//! upstream), and free/closed ports.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, Version, header};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::tls::upstream_leaf;
use super::{TestBody, empty, eventually, json_response, response, server_tls_config};

/// How the mock upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Plain HTTP/1.1 only.
    Http1,
    /// HTTP/2 with prior knowledge only.
    H2c,
    /// TLS (certificate from [`test_ca`]), ALPN `h2` and `http/1.1`.
    Tls,
    /// TLS offering only ALPN `http/1.1`.
    TlsHttp1,
}

impl Mode {
    pub fn is_tls(self) -> bool {
        matches!(self, Mode::Tls | Mode::TlsHttp1)
    }
}

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    /// Path and query.
    pub target: String,
    pub version: Version,
    pub headers: HeaderMap,
    /// Authority from the URI (HTTP/2) or the Host header (HTTP/1.1).
    pub authority: Option<String>,
    pub body: Bytes,
    /// False if the body failed before its end (what arrived is in `body`).
    pub body_complete: bool,
    /// Which accepted TCP connection (1-based) carried it.
    pub conn: usize,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

type Handler =
    Arc<dyn Fn(Recorded) -> Pin<Box<dyn Future<Output = Response<TestBody>> + Send>> + Send + Sync>;

/// Mock upstream options.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub mode: Mode,
    /// After the first response on a connection has been written, close the
    /// socket abruptly (no `connection: close`), so a pooled connection goes
    /// stale.
    pub close_after_first: bool,
}

impl From<Mode> for Options {
    fn from(mode: Mode) -> Self {
        Self {
            mode,
            close_after_first: false,
        }
    }
}

/// A mock upstream on 127.0.0.1:0 whose answers a closure decides.
pub struct Upstream {
    pub addr: SocketAddr,
    pub mode: Mode,
    conns: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::AbortHandle,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    pub async fn start<F, Fut>(opts: impl Into<Options>, handler: F) -> Upstream
    where
        F: Fn(Recorded) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<TestBody>> + Send + 'static,
    {
        let opts = opts.into();
        let handler: Handler = Arc::new(move |r| Box::pin(handler(r)));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let alpn: &[&[u8]] = match opts.mode {
            Mode::TlsHttp1 => &[b"http/1.1"],
            _ => &[b"h2", b"http/1.1"],
        };
        let acceptor = opts
            .mode
            .is_tls()
            .then(|| tokio_rustls::TlsAcceptor::from(server_tls_config(upstream_leaf(), alpn)));
        let task = tokio::spawn({
            let (conns, requests) = (conns.clone(), requests.clone());
            async move {
                let mut set = JoinSet::new();
                loop {
                    tokio::select! {
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            let _ = stream.set_nodelay(true);
                            let id = conns.fetch_add(1, Ordering::SeqCst) + 1;
                            let conn = Conn {
                                id,
                                opts,
                                handler: handler.clone(),
                                requests: requests.clone(),
                            };
                            let acceptor = acceptor.clone();
                            set.spawn(async move {
                                match acceptor {
                                    None => {
                                        let h2 = opts.mode == Mode::H2c;
                                        conn.serve(stream, h2).await;
                                    }
                                    Some(a) => {
                                        let Ok(tls) = a.accept(stream).await else { return };
                                        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                                        conn.serve(tls, h2).await;
                                    }
                                }
                            });
                        }
                        Some(_) = set.join_next(), if !set.is_empty() => {}
                    }
                }
            }
        })
        .abort_handle();
        Upstream {
            addr,
            mode: opts.mode,
            conns,
            requests,
            task,
        }
    }

    /// A mock that answers every request with `200 {"ok":true}`.
    pub async fn ok(opts: impl Into<Options>) -> Upstream {
        Upstream::start(opts, |_| async { json_response(200, r#"{"ok":true}"#) }).await
    }

    pub fn url(&self) -> String {
        let scheme = if self.mode.is_tls() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// `origin` label value in the pool metrics.
    pub fn origin(&self) -> String {
        self.url()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }

    /// Requests whose body has been read (completely or not) so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    pub fn request_count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    pub async fn wait_requests(&self, n: usize) {
        eventually(
            Duration::from_secs(10),
            &format!("{n} upstream requests"),
            || self.request_count() >= n,
        )
        .await;
    }
}

struct Conn {
    id: usize,
    opts: Options,
    handler: Handler,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl Conn {
    async fn serve<I>(self, io: I, h2: bool)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let done = Arc::new(Notify::new());
        let close_after_first = self.opts.close_after_first;
        let (id, handler, requests) = (self.id, self.handler, self.requests);
        let svc = service_fn({
            let done = done.clone();
            move |req: Request<Incoming>| {
                let (handler, requests, done) = (handler.clone(), requests.clone(), done.clone());
                async move {
                    let rec = record(req, id).await;
                    requests.lock().unwrap().push(rec.clone());
                    let res = if rec.body_complete {
                        handler(rec).await
                    } else {
                        response(400, &[], empty())
                    };
                    let res = if close_after_first {
                        res.map(|b| NotifyOnEnd::new(b, done).boxed())
                    } else {
                        res
                    };
                    Ok::<_, Infallible>(res)
                }
            }
        });
        let builder = auto::Builder::new(TokioExecutor::new());
        let builder = if h2 {
            builder.http2_only()
        } else {
            builder.http1_only()
        };
        let conn = builder.serve_connection(TokioIo::new(io), svc);
        if close_after_first {
            tokio::select! {
                _ = conn => {}
                () = async {
                    done.notified().await;
                    // Let hyper flush what it has written, then drop the
                    // socket without a word.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                } => {}
            }
        } else {
            let _ = conn.await;
        }
    }
}

async fn record(req: Request<Incoming>, conn: usize) -> Recorded {
    let (parts, mut body) = req.into_parts();
    let mut buf = Vec::new();
    let mut complete = true;
    loop {
        match body.frame().await {
            None => break,
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                }
            }
            Some(Err(_)) => {
                complete = false;
                break;
            }
        }
    }
    let authority = parts.uri.authority().map(|a| a.to_string()).or_else(|| {
        parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
    });
    Recorded {
        method: parts.method,
        target: parts
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
        version: parts.version,
        headers: parts.headers,
        authority,
        body: buf.into(),
        body_complete: complete,
        conn,
    }
}

/// Wraps a response body and signals when its last frame has been taken.
struct NotifyOnEnd {
    inner: TestBody,
    done: Option<Arc<Notify>>,
}

impl NotifyOnEnd {
    fn new(inner: TestBody, done: Arc<Notify>) -> Self {
        let mut this = Self {
            inner,
            done: Some(done),
        };
        if this.inner.is_end_stream() {
            this.fire();
        }
        this
    }

    fn fire(&mut self) {
        if let Some(d) = self.done.take() {
            d.notify_one();
        }
    }
}

impl Body for NotifyOnEnd {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => self.fire(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.fire(),
            _ => {}
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

/// A TCP listener that accepts connections and never says anything.
pub struct SilentListener {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
    task: tokio::task::AbortHandle,
}

impl SilentListener {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let accepted = accepted.clone();
            async move {
                let mut held = Vec::new();
                while let Ok((s, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    held.push(s);
                }
            }
        })
        .abort_handle();
        Self {
            addr,
            accepted,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The listener as a TLS upstream: the relay's handshake never gets an
    /// answer.
    pub fn https_url(&self) -> String {
        format!("https://{}", self.addr)
    }
}

impl Drop for SilentListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A port that refuses connections and stays reserved while the socket
/// lives (bound but not listening), so no concurrent test can take it over.
pub fn refusing_port() -> (socket2::Socket, SocketAddr) {
    let sock =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    sock.bind(&any.into()).expect("bind");
    let addr = sock.local_addr().unwrap().as_socket().unwrap();
    (sock, addr)
}

/// An address nothing listens on (bound, then closed).
pub fn closed_port_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    closed_port_addr().port()
}
