//! The load generator: hyper HTTP/1.1 client connections (plain or TLS) on
//! a current-thread runtime, one task per connection, and the workloads
//! the benchmark runs through them.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::util::now_ns;

pub type Sender = SendRequest<Full<Bytes>>;

const STREAM_BODY: &str = r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Write a short poem about the sea."}]}"#;
const JSON_BODY: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Say hello."}]}"#;

trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// Where the load goes: an address, with TLS or without.
#[derive(Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub tls: Option<Arc<ClientConfig>>,
}

impl Endpoint {
    pub fn plain(addr: SocketAddr) -> Self {
        Endpoint { addr, tls: None }
    }
}

/// A TLS client offering only `http/1.1`, accepting any certificate (the
/// run's self-signed one) but still checking the handshake signature, so
/// the client does the work a real one does. `resume = false` makes every
/// connection a full handshake.
pub fn tls_client(resume: bool) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !resume {
        cfg.resumption = rustls::client::Resumption::disabled();
    }
    Arc::new(cfg)
}

#[derive(Debug)]
struct AnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// Opens one HTTP/1.1 connection; the returned handle ends when it closes.
/// Sockets close with SO_LINGER 0 (a reset, no TIME_WAIT left behind).
pub async fn connect(ep: &Endpoint) -> io::Result<(Sender, JoinHandle<()>)> {
    let tcp = TcpStream::connect(ep.addr).await?;
    tcp.set_nodelay(true)?;
    socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO))?;
    let io: Box<dyn Io> = match &ep.tls {
        None => Box::new(tcp),
        Some(cfg) => {
            let c = tokio_rustls::TlsConnector::from(cfg.clone());
            let name = ServerName::try_from("localhost").expect("server name");
            Box::new(c.connect(name, tcp).await?)
        }
    };
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(io_err)?;
    let h = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok((sender, h))
}

fn host(ep: &Endpoint) -> String {
    ep.addr.to_string()
}

pub fn stream_request(
    ep: &Endpoint,
    events: u32,
    interval_us: u32,
    hold: bool,
) -> Request<Full<Bytes>> {
    Request::post(format!(
        "/v1/chat/completions?events={events}&interval_us={interval_us}&hold={}",
        u8::from(hold)
    ))
    .header("host", host(ep))
    .header("content-type", "application/json")
    .header("accept", "text/event-stream")
    .header("authorization", "Bearer sk-bench")
    .header("user-agent", "e2e-bench")
    .body(Full::new(Bytes::from_static(STREAM_BODY.as_bytes())))
    .expect("request")
}

pub fn json_request(ep: &Endpoint) -> Request<Full<Bytes>> {
    Request::post("/v1/chat/completions")
        .header("host", host(ep))
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header("authorization", "Bearer sk-bench")
        .header("user-agent", "e2e-bench")
        .body(Full::new(Bytes::from_static(JSON_BODY.as_bytes())))
        .expect("request")
}

/// Follows SSE events across body frames: counts events, keepalive
/// comments, error events and `[DONE]`, and takes each event's upstream
/// send stamp (`chatcmpl-<ns>`) off its receive time.
#[derive(Default)]
pub struct Scan {
    carry: Vec<u8>,
    pub events: u64,
    pub keepalives: u64,
    pub errors: u64,
    pub done: bool,
}

impl Scan {
    pub fn feed(&mut self, chunk: &[u8], now: u64, lat: &mut Option<&mut Vec<u32>>) {
        if self.carry.is_empty() {
            let used = self.scan(chunk, now, lat);
            self.carry.extend_from_slice(&chunk[used..]);
        } else {
            let mut buf = std::mem::take(&mut self.carry);
            buf.extend_from_slice(chunk);
            let used = self.scan(&buf, now, lat);
            buf.drain(..used);
            self.carry = buf;
        }
    }

    fn scan(&mut self, data: &[u8], now: u64, lat: &mut Option<&mut Vec<u32>>) -> usize {
        let mut start = 0;
        while let Some(i) = memchr::memmem::find(&data[start..], b"\n\n") {
            let ev = &data[start..start + i];
            start += i + 2;
            self.event(ev, now, lat);
        }
        start
    }

    fn event(&mut self, ev: &[u8], now: u64, lat: &mut Option<&mut Vec<u32>>) {
        let ev = ev.strip_prefix(b"\n").unwrap_or(ev);
        if ev.is_empty() {
            return;
        }
        if ev.starts_with(b":") || ev.starts_with(b"event: ping") {
            self.keepalives += 1;
            return;
        }
        if ev.starts_with(b"data: [DONE]") {
            self.done = true;
            self.events += 1;
            return;
        }
        if memchr::memmem::find(ev, b"chatcmpl-").is_none() {
            // Not one of the upstream's events: a relay-made error event.
            self.errors += 1;
            return;
        }
        self.events += 1;
        if let Some(lat) = lat.as_mut()
            && let Some(i) = memchr::memmem::find(ev, b"\"id\":\"chatcmpl-")
        {
            let digits = &ev[i + 15..];
            let mut ts = 0u64;
            for &d in digits.iter().take_while(|d| d.is_ascii_digit()) {
                ts = ts * 10 + u64::from(d - b'0');
            }
            if ts > 0 {
                lat.push(now.saturating_sub(ts).min(u64::from(u32::MAX)) as u32);
            }
        }
    }
}

/// Result of a token-stream run.
#[derive(Default)]
pub struct StreamStats {
    pub streams: u64,
    pub events: u64,
    pub failed: u64,
    /// The first failure's reason, for the report.
    pub first_error: Option<String>,
    pub lat_ns: Vec<u32>,
    pub wall: Duration,
}

/// `total` streams of `events` events over `clients` keep-alive connections.
pub async fn streams(
    ep: &Endpoint,
    clients: usize,
    total: u64,
    events: u32,
    interval_us: u32,
    record_latency: bool,
) -> StreamStats {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let ep = ep.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut st = StreamStats::default();
            let mut lat = Vec::new();
            let mut sender: Option<Sender> = None;
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let r = one_stream(
                    &ep,
                    &mut sender,
                    events,
                    interval_us,
                    record_latency.then_some(&mut lat),
                    &mut st,
                )
                .await;
                match r {
                    Ok(()) => st.streams += 1,
                    Err(e) => {
                        st.failed += 1;
                        st.first_error.get_or_insert(e);
                        sender = None;
                        // Do not spin on a refusing peer.
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
            }
            st.lat_ns = lat;
            st
        }));
    }
    let mut all = StreamStats::default();
    for t in tasks {
        if let Ok(st) = t.await {
            all.streams += st.streams;
            all.events += st.events;
            all.failed += st.failed;
            if all.first_error.is_none() {
                all.first_error = st.first_error;
            }
            all.lat_ns.extend_from_slice(&st.lat_ns);
        }
    }
    all.wall = start.elapsed();
    all
}

/// Makes `sender` ready: the kept connection, or a new one.
pub async fn ready_sender(ep: &Endpoint, sender: &mut Option<Sender>) -> io::Result<()> {
    if let Some(s) = sender.as_mut()
        && s.ready().await.is_ok()
    {
        return Ok(());
    }
    *sender = Some(connect(ep).await?.0);
    Ok(())
}

async fn one_stream(
    ep: &Endpoint,
    sender: &mut Option<Sender>,
    events: u32,
    interval_us: u32,
    lat: Option<&mut Vec<u32>>,
    st: &mut StreamStats,
) -> Result<(), String> {
    ready_sender(ep, sender)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let s = sender.as_mut().expect("sender");
    let resp = s
        .send_request(stream_request(ep, events, interval_us, false))
        .await
        .map_err(|e| format!("request: {e}"))?;
    if resp.status() != StatusCode::OK {
        return Err(format!("status {}", resp.status()));
    }
    let mut body = resp.into_body();
    let mut scan = Scan::default();
    let mut lat = lat;
    while let Some(f) = body.frame().await {
        let f = f.map_err(|e| format!("body after {} events: {e}", scan.events))?;
        if let Some(d) = f.data_ref() {
            scan.feed(d, now_ns(), &mut lat);
        }
    }
    st.events += scan.events;
    if scan.done && scan.events == u64::from(events) && scan.errors == 0 {
        Ok(())
    } else {
        Err(format!(
            "incomplete stream: {} of {events} events, [DONE] {}, {} relay error events",
            scan.events, scan.done, scan.errors
        ))
    }
}

/// Silent streams held open: counters the run reads while they are open.
pub struct IdleSet {
    /// The first failure's reason, for the report.
    pub first_error: Arc<std::sync::Mutex<Option<String>>>,
    pub opened: Arc<AtomicU64>,
    pub failed: Arc<AtomicU64>,
    pub ended: Arc<AtomicU64>,
    pub keepalives: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<()>>,
}

impl IdleSet {
    /// Drops every connection still open (with a reset).
    pub fn abort(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}

/// Opens `n` streams whose upstream sends one event and then goes silent;
/// at most `parallel` are being set up at once. A stream counts as opened
/// once its first event has come through.
pub fn open_idle(ep: &Endpoint, n: u64, parallel: usize) -> IdleSet {
    let set = IdleSet {
        first_error: Arc::new(std::sync::Mutex::new(None)),
        opened: Arc::new(AtomicU64::new(0)),
        failed: Arc::new(AtomicU64::new(0)),
        ended: Arc::new(AtomicU64::new(0)),
        keepalives: Arc::new(AtomicU64::new(0)),
        tasks: Vec::new(),
    };
    let gate = Arc::new(Semaphore::new(parallel));
    let mut tasks = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let ep = ep.clone();
        let gate = gate.clone();
        let (opened, failed, ended, kas, first_error) = (
            set.opened.clone(),
            set.failed.clone(),
            set.ended.clone(),
            set.keepalives.clone(),
            set.first_error.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let fail = |e: String| {
                failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut f) = first_error.lock() {
                    f.get_or_insert(e);
                }
            };
            let permit = gate.acquire_owned().await;
            let (mut s, _conn) = match connect(&ep).await {
                Ok(c) => c,
                Err(e) => return fail(format!("connect: {e}")),
            };
            let resp = match s.send_request(stream_request(&ep, 300, 0, true)).await {
                Ok(r) if r.status() == StatusCode::OK => r,
                Ok(r) => return fail(format!("status {}", r.status())),
                Err(e) => return fail(format!("request: {e}")),
            };
            let mut body = resp.into_body();
            let mut scan = Scan::default();
            let mut permit = Some(permit);
            let mut seen_ka = 0;
            while let Some(Ok(f)) = body.frame().await {
                if let Some(d) = f.data_ref() {
                    scan.feed(d, 0, &mut None);
                    if scan.events > 0 && permit.take().is_some() {
                        opened.fetch_add(1, Ordering::Relaxed);
                    }
                    if scan.keepalives > seen_ka {
                        kas.fetch_add(scan.keepalives - seen_ka, Ordering::Relaxed);
                        seen_ka = scan.keepalives;
                    }
                }
            }
            if permit.is_some() {
                fail("stream ended before its first event".into());
            } else {
                ended.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    IdleSet { tasks, ..set }
}

/// Result of a request/response run.
#[derive(Default)]
pub struct ReqStats {
    pub ok: u64,
    pub failed: u64,
    /// The first failure's reason, for the report.
    pub first_error: Option<String>,
    pub lat_ns: Vec<u32>,
    pub wall: Duration,
}

impl ReqStats {
    pub fn merge(&mut self, o: ReqStats) {
        self.ok += o.ok;
        self.failed += o.failed;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
        self.lat_ns.extend_from_slice(&o.lat_ns);
    }
}

async fn one_json(ep: &Endpoint, sender: &mut Option<Sender>) -> Result<u32, String> {
    ready_sender(ep, sender)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let s = sender.as_mut().expect("sender");
    let t0 = Instant::now();
    let resp = s
        .send_request(json_request(ep))
        .await
        .map_err(|e| format!("request: {e}"))?;
    if resp.status() != StatusCode::OK {
        return Err(format!("status {}", resp.status()));
    }
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    if body.len() < 100 {
        return Err(format!("short body ({} bytes)", body.len()));
    }
    Ok(t0.elapsed().as_nanos().min(u128::from(u32::MAX)) as u32)
}

/// Small JSON requests, closed loop: each of `conns` keep-alive connections
/// sends the next request as soon as the previous answer is complete.
pub async fn json_closed(ep: &Endpoint, conns: usize, duration: Duration) -> ReqStats {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let ep = ep.clone();
        tasks.push(tokio::spawn(async move {
            let mut st = ReqStats::default();
            let mut sender = None;
            while Instant::now() < deadline {
                match one_json(&ep, &mut sender).await {
                    Ok(ns) => {
                        st.ok += 1;
                        st.lat_ns.push(ns);
                    }
                    Err(e) => {
                        st.failed += 1;
                        st.first_error.get_or_insert(e);
                        sender = None;
                        // Do not spin on a refusing peer.
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
            }
            st
        }));
    }
    let mut all = ReqStats::default();
    for t in tasks {
        if let Ok(st) = t.await {
            all.merge(st);
        }
    }
    all.wall = start.elapsed();
    all
}

/// Small JSON requests in waves: every `period`, each of `conns`
/// keep-alive connections sends one request at the same instant (so
/// `conns` requests are in flight together); a connection still busy
/// skips the wave.
pub async fn json_waves(
    ep: &Endpoint,
    conns: usize,
    period: Duration,
    duration: Duration,
) -> ReqStats {
    let start = Instant::now();
    let deadline = start + duration;
    let first = tokio::time::Instant::now() + Duration::from_millis(20);
    // Connect first, so waves measure requests, not handshakes.
    let mut senders = Vec::new();
    for _ in 0..conns {
        let mut s = None;
        let _ = ready_sender(ep, &mut s).await;
        senders.push(s);
    }
    let mut tasks = Vec::new();
    for mut sender in senders {
        let ep = ep.clone();
        tasks.push(tokio::spawn(async move {
            let mut st = ReqStats::default();
            let mut tick = tokio::time::interval_at(first, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                if Instant::now() >= deadline {
                    break;
                }
                match one_json(&ep, &mut sender).await {
                    Ok(ns) => {
                        st.ok += 1;
                        st.lat_ns.push(ns);
                    }
                    Err(e) => {
                        st.failed += 1;
                        st.first_error.get_or_insert(e);
                        sender = None;
                        // Do not spin on a refusing peer.
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
            }
            st
        }));
    }
    let mut all = ReqStats::default();
    for t in tasks {
        if let Ok(st) = t.await {
            all.merge(st);
        }
    }
    all.wall = start.elapsed();
    all
}

/// New connection per request: TCP connect, full TLS handshake (no
/// resumption), `GET /v1/models` with `connection: close`, read to the
/// server's close. `conns` such loops run at once.
pub async fn handshakes(ep: &Endpoint, conns: usize, duration: Duration) -> ReqStats {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let ep = ep.clone();
        tasks.push(tokio::spawn(async move {
            let mut st = ReqStats::default();
            while Instant::now() < deadline {
                let t0 = Instant::now();
                match one_handshake(&ep).await {
                    Ok(()) => {
                        st.ok += 1;
                        st.lat_ns
                            .push(t0.elapsed().as_nanos().min(u128::from(u32::MAX)) as u32);
                    }
                    Err(e) => {
                        st.failed += 1;
                        st.first_error.get_or_insert(e.to_string());
                    }
                }
            }
            st
        }));
    }
    let mut all = ReqStats::default();
    for t in tasks {
        if let Ok(st) = t.await {
            all.merge(st);
        }
    }
    all.wall = start.elapsed();
    all
}

async fn one_handshake(ep: &Endpoint) -> io::Result<()> {
    let (mut s, conn) = connect(ep).await?;
    let req = Request::get("/v1/models")
        .header("host", host(ep))
        .header("connection", "close")
        .header("user-agent", "e2e-bench")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = s.send_request(req).await.map_err(io_err)?;
    if resp.status() != StatusCode::OK {
        return Err(io_err(resp.status()));
    }
    resp.into_body().collect().await.map_err(io_err)?;
    drop(s);
    // The server closes first (connection: close), so TIME_WAIT stays on
    // its side; wait for that close.
    let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
    Ok(())
}

/// `GET` a plain-HTTP path and return the body (admin `/metrics`, upstream `/_release`).
pub async fn simple(addr: SocketAddr, method: &str, path: &str) -> io::Result<String> {
    let ep = Endpoint::plain(addr);
    let (mut s, _conn) = connect(&ep).await?;
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", host(&ep))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = s.send_request(req).await.map_err(io_err)?;
    let body = resp.into_body().collect().await.map_err(io_err)?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}
