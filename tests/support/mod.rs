//! Shared helpers for the integration tests: a scriptable mock upstream
//! (HTTP/1.1, h2c, TLS with ALPN), relay starters (in-process and the real
//! binary), small hyper clients over real sockets, a throwaway CA, and
//! Prometheus text parsing.
//!
//! Every test file includes this with `mod support;` and uses a subset of it.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::{http1 as client_h1, http2 as client_h2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use sse_edge::Running;
use sse_edge::config::{Invocation, from_args};
use sse_edge::telemetry::AccessLog;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;

/// Body type used by the mock upstream's answers and the test clients.
pub type TestBody = BoxBody<Bytes, std::io::Error>;

/// Upper bound for one whole test; a hang fails instead of blocking.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `f` with [`TEST_TIMEOUT`].
pub async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("test timed out")
}

/// Polls `cond` every 10 ms until it holds; panics with `what` after `limit`.
pub async fn eventually(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------- bodies

pub fn full(b: impl Into<Bytes>) -> TestBody {
    Full::new(b.into())
        .map_err(|e: Infallible| match e {})
        .boxed()
}

pub fn empty() -> TestBody {
    Empty::<Bytes>::new()
        .map_err(|e: Infallible| match e {})
        .boxed()
}

/// A body fed by a channel; it ends when the sender is dropped. Sending an
/// `Err` fails the body (the peer sees the stream cut).
pub fn channel_body() -> (mpsc::Sender<Result<Bytes, std::io::Error>>, TestBody) {
    let (tx, rx) = mpsc::channel(64);
    (tx, ChannelBody { rx }.boxed())
}

struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|item| item.map(|r| r.map(Frame::data)))
    }
}

/// A streamed body: `frames` sent one by one with `gap` before each but the
/// first. The instant each frame was handed over is pushed to `sent`.
pub fn stream_frames(
    frames: Vec<Bytes>,
    gap: Duration,
    sent: Option<Arc<Mutex<Vec<Instant>>>>,
) -> TestBody {
    let (tx, body) = channel_body();
    tokio::spawn(async move {
        for (i, f) in frames.into_iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(gap).await;
            }
            if tx.send(Ok(f)).await.is_err() {
                return;
            }
            if let Some(log) = &sent {
                log.lock().unwrap().push(Instant::now());
            }
        }
    });
    body
}

/// `n` SSE events, one frame each, in the OpenAI chat-completions shape:
/// `n - 1` chunks `data: {"i":k,...}` and a final `data: [DONE]`, so the
/// stream is complete in every dialect's eyes.
pub fn sse_events(n: usize) -> Vec<Bytes> {
    (0..n)
        .map(|i| {
            if i + 1 == n {
                Bytes::from_static(b"data: [DONE]\n\n")
            } else {
                Bytes::from(format!(
                    "data: {{\"i\":{i},\"choices\":[{{\"delta\":{{\"content\":\"token-{i} é✓\"}}}}]}}\n\n"
                ))
            }
        })
        .collect()
}

/// Asserts two byte strings are equal, showing them as text when not.
#[track_caller]
pub fn assert_same(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        panic!(
            "{what}: {} bytes differ from the expected {} bytes\n got: {:?}\nwant: {:?}",
            got.len(),
            want.len(),
            String::from_utf8_lossy(&got[..got.len().min(4096)]),
            String::from_utf8_lossy(&want[..want.len().min(4096)]),
        );
    }
}

pub fn concat(frames: &[Bytes]) -> Vec<u8> {
    frames.iter().flat_map(|f| f.iter().copied()).collect()
}

/// Deterministic pseudo-random bytes.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(seed);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

// ---------------------------------------------------------------- responses

pub fn response(status: u16, headers: &[(&str, &str)], body: TestBody) -> Response<TestBody> {
    let mut res = Response::new(body);
    *res.status_mut() = StatusCode::from_u16(status).unwrap();
    for (k, v) in headers {
        res.headers_mut().append(
            header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    res
}

pub fn json_response(status: u16, body: impl Into<Bytes>) -> Response<TestBody> {
    response(status, &[("content-type", "application/json")], full(body))
}

pub fn sse_response(body: TestBody) -> Response<TestBody> {
    response(
        200,
        &[
            ("content-type", "text/event-stream"),
            ("cache-control", "no-cache"),
        ],
        body,
    )
}

// ---------------------------------------------------------------- test CA

/// A throwaway CA and leaf certificates signed by it.
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pub cert_der: CertificateDer<'static>,
    pub cert_pem: String,
}

/// A leaf certificate for `localhost` and `127.0.0.1`.
#[derive(Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: CertificateDer<'static>,
    pub key_der: Vec<u8>,
}

impl TestCa {
    pub fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sse-edge test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self {
            cert_der: cert.der().clone(),
            cert_pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A leaf with common name `cn`, valid for localhost and 127.0.0.1.
    pub fn leaf(&self, cn: &str) -> Leaf {
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }

    pub fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert_der.clone()).unwrap();
        roots
    }
}

/// The process-wide test CA.
pub fn test_ca() -> &'static TestCa {
    static CA: OnceLock<TestCa> = OnceLock::new();
    CA.get_or_init(TestCa::new)
}

/// The mock upstream's TLS certificate (signed by [`test_ca`]).
fn upstream_leaf() -> &'static Leaf {
    static LEAF: OnceLock<Leaf> = OnceLock::new();
    LEAF.get_or_init(|| test_ca().leaf("mock upstream"))
}

/// [`test_ca`]'s certificate as a PEM file (for `--upstream-ca-file`).
pub fn ca_pem_path() -> &'static Path {
    static PATH: OnceLock<(TempDir, PathBuf)> = OnceLock::new();
    &PATH
        .get_or_init(|| {
            let dir = TempDir::new("ca");
            let path = dir.write("ca.pem", test_ca().cert_pem.as_bytes());
            (dir, path)
        })
        .1
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn server_tls_config(leaf: &Leaf, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key_der.clone()));
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.cert_der.clone()], key)
        .unwrap();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

pub fn client_tls_config(alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(test_ca().roots())
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

// ---------------------------------------------------------------- temp dirs

/// A directory under `target/tmp`, removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(name: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        // Cargo's scratch directory for integration tests, inside target/.
        let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("sse-edge-test-{}-{n}-{name}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        Self { path }
    }

    /// Writes `name` (atomically: temp file, then rename) and returns its path.
    pub fn write(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.path.join(name);
        let tmp = self.path.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, contents).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

// ---------------------------------------------------------------- mock upstream

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
}

impl Drop for SilentListener {
    fn drop(&mut self) {
        self.task.abort();
    }
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

// ---------------------------------------------------------------- relay (in-process)

/// Builds a config from `args` after `--listen 127.0.0.1:0 --admin 127.0.0.1:0`.
pub fn relay_config(args: &[&str]) -> sse_edge::config::Config {
    let mut all = vec![
        "sse-edge",
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
    ];
    all.extend_from_slice(args);
    match from_args(all, &|_| None) {
        Ok(Invocation::Run(c)) => c,
        Ok(_) => panic!("relay args name a subcommand: {args:?}"),
        Err(e) => panic!("bad relay args {args:?}: {e}"),
    }
}

/// Starts the relay in this runtime.
pub async fn start_relay(args: &[&str]) -> Running {
    sse_edge::start(relay_config(args), AccessLog::disabled())
        .await
        .expect("relay starts")
}

/// Starts the relay with `--upstream <upstream>` plus `extra`.
pub async fn start_relay_to(upstream: &Upstream, extra: &[&str]) -> Running {
    let url = upstream.url();
    let mut args = vec!["--upstream", url.as_str()];
    if upstream.mode.is_tls() {
        args.extend([
            "--upstream-ca-file",
            ca_pem_path().to_str().unwrap(),
            "--upstream-roots",
            "none",
        ]);
    }
    args.extend_from_slice(extra);
    start_relay(&args).await
}

/// Drains the relay and waits (bounded) for it to stop.
pub async fn stop_relay(r: Running) {
    r.drain();
    tokio::time::timeout(Duration::from_secs(10), r.wait())
        .await
        .expect("relay stops within 10s");
}

// ---------------------------------------------------------------- clients

/// A complete response.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }
}

/// Reads a whole response.
pub async fn collect(res: Response<Incoming>) -> Resp {
    let (parts, body) = res.into_parts();
    let body = body.collect().await.expect("response body").to_bytes();
    Resp {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body,
    }
}

/// One data frame and when it arrived.
#[derive(Debug, Clone)]
pub struct Timed {
    pub at: Instant,
    pub data: Bytes,
}

/// Reads a body frame by frame; returns the frames and the error that ended
/// it, if any.
pub async fn read_frames(mut body: Incoming) -> (Vec<Timed>, Option<hyper::Error>) {
    let mut out = Vec::new();
    loop {
        match body.frame().await {
            None => return (out, None),
            Some(Ok(f)) => {
                if let Ok(data) = f.into_data() {
                    out.push(Timed {
                        at: Instant::now(),
                        data,
                    });
                }
            }
            Some(Err(e)) => return (out, Some(e)),
        }
    }
}

pub fn joined(frames: &[Timed]) -> Vec<u8> {
    frames.iter().flat_map(|f| f.data.iter().copied()).collect()
}

/// What a TLS handshake negotiated.
#[derive(Debug, Clone)]
pub struct TlsInfo {
    pub alpn: Option<Vec<u8>>,
    /// The peer's leaf certificate (DER).
    pub peer_cert: Vec<u8>,
}

/// A TLS connection to `addr` trusting [`test_ca`], SNI `localhost`.
pub async fn tls_connect(
    addr: SocketAddr,
    alpn: &[&[u8]],
) -> (tokio_rustls::client::TlsStream<TcpStream>, TlsInfo) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(client_tls_config(alpn));
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake");
    let c = tls.get_ref().1;
    let info = TlsInfo {
        alpn: c.alpn_protocol().map(<[u8]>::to_vec),
        peer_cert: c
            .peer_certificates()
            .and_then(|certs| certs.first())
            .map(|c| c.to_vec())
            .unwrap_or_default(),
    };
    (tls, info)
}

/// A client connection (HTTP/1.1 or HTTP/2) over a real socket.
pub struct Client {
    conn: ClientConn,
    authority: String,
    scheme: &'static str,
}

enum ClientConn {
    H1(client_h1::SendRequest<TestBody>),
    H2(client_h2::SendRequest<TestBody>),
}

impl Client {
    /// Plain HTTP/1.1.
    pub async fn h1(addr: SocketAddr) -> Client {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.set_nodelay(true).unwrap();
        Client::over(tcp, false, addr.to_string(), false).await
    }

    /// HTTP/2 with prior knowledge (h2c).
    pub async fn h2(addr: SocketAddr) -> Client {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.set_nodelay(true).unwrap();
        Client::over(tcp, true, addr.to_string(), false).await
    }

    /// TLS with `alpn`; speaks HTTP/2 if the server picked `h2`.
    pub async fn tls(addr: SocketAddr, alpn: &[&[u8]]) -> (Client, TlsInfo) {
        let (tls, info) = tls_connect(addr, alpn).await;
        let h2 = info.alpn.as_deref() == Some(b"h2");
        let authority = format!("localhost:{}", addr.port());
        (Client::over(tls, h2, authority, true).await, info)
    }

    pub async fn over<I>(io: I, h2: bool, authority: String, https: bool) -> Client
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let io = TokioIo::new(io);
        let conn = if h2 {
            let (tx, conn) = client_h2::Builder::new(TokioExecutor::new())
                .handshake(io)
                .await
                .expect("h2 handshake");
            tokio::spawn(async move {
                let _ = conn.await;
            });
            ClientConn::H2(tx)
        } else {
            let (tx, conn) = client_h1::handshake(io).await.expect("h1 handshake");
            tokio::spawn(async move {
                let _ = conn.await;
            });
            ClientConn::H1(tx)
        };
        Client {
            conn,
            authority,
            scheme: if https { "https" } else { "http" },
        }
    }

    pub fn is_h2(&self) -> bool {
        matches!(self.conn, ClientConn::H2(_))
    }

    /// Sends `req`; fills in Host (HTTP/1.1) or scheme and authority (HTTP/2).
    pub async fn send(&mut self, mut req: Request<TestBody>) -> hyper::Result<Response<Incoming>> {
        match &mut self.conn {
            ClientConn::H1(tx) => {
                if !req.headers().contains_key(header::HOST) {
                    let host = HeaderValue::from_str(&self.authority).unwrap();
                    req.headers_mut().insert(header::HOST, host);
                }
                tx.ready().await?;
                tx.send_request(req).await
            }
            ClientConn::H2(tx) => {
                if req.uri().scheme().is_none() {
                    let pq = req
                        .uri()
                        .path_and_query()
                        .map_or("/", |p| p.as_str())
                        .to_owned();
                    *req.uri_mut() = format!("{}://{}{pq}", self.scheme, self.authority)
                        .parse::<Uri>()
                        .unwrap();
                }
                *req.version_mut() = Version::HTTP_2;
                tx.ready().await?;
                tx.send_request(req).await
            }
        }
    }

    /// Sends `req` and reads the whole response.
    pub async fn fetch(&mut self, req: Request<TestBody>) -> Resp {
        let res = self.send(req).await.expect("request sent");
        collect(res).await
    }

    pub async fn get(&mut self, path: &str) -> Resp {
        self.fetch(get(path)).await
    }
}

pub fn get(path: &str) -> Request<TestBody> {
    Request::get(path).body(empty()).unwrap()
}

pub fn post(path: &str, body: impl Into<Bytes>) -> Request<TestBody> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(full(body))
        .unwrap()
}

/// One request on a fresh HTTP/1.1 connection.
pub async fn fetch_once(addr: SocketAddr, req: Request<TestBody>) -> Resp {
    Client::h1(addr).await.fetch(req).await
}

/// Writes `raw` on a fresh TCP connection and reads until the peer closes
/// (bounded at 10 s).
pub async fn raw_exchange(addr: SocketAddr, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    match read {
        Ok(_) => String::from_utf8_lossy(&out).into_owned(),
        Err(_) => panic!(
            "raw exchange did not end; got so far: {}",
            String::from_utf8_lossy(&out)
        ),
    }
}

/// The status code of a raw HTTP/1.1 response.
pub fn raw_status(resp: &str) -> u16 {
    resp.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {resp:?}"))
}

// ---------------------------------------------------------------- admin and metrics

pub async fn admin_get(admin: SocketAddr, path: &str) -> Resp {
    fetch_once(admin, get(path)).await
}

/// The `/metrics` text.
pub async fn metrics(admin: SocketAddr) -> String {
    let r = admin_get(admin, "/metrics").await;
    assert_eq!(r.status, 200, "metrics status");
    r.text()
}

/// The value of the series `name` whose labels include every pair of
/// `labels`; `None` if there is no such series.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(parse_sample)
        .find(|(n, ls, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| ls.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, v)| v)
}

/// Like [`metric`] but 0 for a missing series.
pub fn metric_or_zero(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric(text, name, labels).unwrap_or(0.0)
}

type Sample = (String, Vec<(String, String)>, f64);

fn parse_sample(line: &str) -> Option<Sample> {
    let (series, value) = line.rsplit_once(' ')?;
    let value: f64 = value.trim().parse().ok()?;
    let Some((name, rest)) = series.split_once('{') else {
        return Some((series.to_owned(), Vec::new(), value));
    };
    let body = rest.strip_suffix('}')?;
    let mut labels = Vec::new();
    let mut chars = body.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('"') {
            return None;
        }
        let mut val = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next()? {
                    'n' => val.push('\n'),
                    other => val.push(other),
                },
                '"' => break,
                other => val.push(other),
            }
        }
        labels.push((key.trim_start_matches(',').to_owned(), val));
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    Some((name.to_owned(), labels, value))
}

// ---------------------------------------------------------------- the binary

/// `sse-edge` with no `SSE_EDGE_*` variables from the test environment.
pub fn bin_command() -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sse-edge"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SSE_EDGE_") {
            cmd.env_remove(&k);
        }
    }
    cmd.env_remove("RUST_LOG");
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    cmd
}

/// Output of a finished run of the binary.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the binary to completion (bounded at 20 s).
pub async fn run_bin(args: &[&str], env: &[(&str, &str)]) -> Finished {
    let mut cmd = bin_command();
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(20), cmd.output())
        .await
        .expect("binary finished within 20s")
        .expect("binary runs");
    Finished {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The relay binary, running.
pub struct RelayProc {
    child: tokio::process::Child,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

fn drain_into<R>(mut r: R, buf: Arc<Mutex<Vec<u8>>>) -> tokio::task::JoinHandle<()>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut chunk = [0u8; 8192];
        loop {
            match r.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.lock().unwrap().extend_from_slice(&chunk[..n]),
            }
        }
    })
}

impl RelayProc {
    /// Starts the binary on free ports with `args` (plus `--workers 2`) and
    /// waits until `/readyz` answers 200. Retries with other ports if a port
    /// was taken in the meantime.
    pub async fn spawn(args: &[&str]) -> RelayProc {
        let mut last_err = String::new();
        for _ in 0..3 {
            let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let (l, a) = (listen.to_string(), admin.to_string());
            let mut cmd = bin_command();
            cmd.args(["--listen", &l, "--admin", &a, "--workers", "2"])
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = cmd.spawn().expect("spawn sse-edge");
            let stdout = Arc::new(Mutex::new(Vec::new()));
            let stderr = Arc::new(Mutex::new(Vec::new()));
            let readers = vec![
                drain_into(child.stdout.take().unwrap(), stdout.clone()),
                drain_into(child.stderr.take().unwrap(), stderr.clone()),
            ];
            let mut proc = RelayProc {
                child,
                listen,
                admin,
                stdout,
                stderr,
                readers,
            };
            match proc.wait_ready().await {
                Ok(()) => return proc,
                Err(e) => {
                    last_err = format!("{e}; stderr: {}", proc.stderr());
                    let _ = proc.child.start_kill();
                    let _ = proc.child.wait().await;
                }
            }
        }
        panic!("sse-edge did not become ready: {last_err}");
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited early with {status}"));
            }
            let probe = tokio::time::timeout(
                Duration::from_secs(2),
                try_fetch(self.admin, get("/readyz")),
            )
            .await;
            if matches!(probe, Ok(Ok(ref r)) if r.status == 200) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err("readyz not 200 within 15s".to_owned())
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("child still running")
    }

    /// Sends SIGTERM with `kill(1)`.
    pub fn sigterm(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits for the process to exit within `limit`; then for its output.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let status = tokio::time::timeout(limit, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "sse-edge did not exit within {limit:?}; stderr: {}",
                    self.stderr()
                )
            })
            .expect("wait for sse-edge");
        for r in self.readers.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), r).await;
        }
        status
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }
}

/// Like [`fetch_once`] but returns errors instead of panicking.
pub async fn try_fetch(addr: SocketAddr, req: Request<TestBody>) -> Result<Resp, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut tx, conn) = client_h1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = req;
    req.headers_mut().insert(
        header::HOST,
        HeaderValue::from_str(&addr.to_string()).unwrap(),
    );
    let res = tx
        .send_request(req)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let (parts, body) = res.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok(Resp {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body,
    })
}
