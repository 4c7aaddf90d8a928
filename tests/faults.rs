//! The fault suite: what clients see, and that nothing is lost or leaked,
//! when upstreams, clients and the network misbehave.
//!
//! A `harness = false` target: `main` runs the cases area by area (the cases
//! of an area concurrently unless marked solo), prints one line per case,
//! one summary line per area and a total line, and exits 1 on any failure.
//! Each case has its own deadline, so a hang fails instead of blocking CI.
//! `cargo test --test faults -- NAME` runs only the cases whose
//! `area/name` contains NAME.
//!
//! After each case the relay's `/metrics` must come back to rest: no
//! request in flight, no active stream, no client connection, no HTTP/2
//! stream or HTTP/1.1 upstream connection checked out of the pool.

mod support;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use serde_json::Value;
use sse_edge::sse::whatwg;
use sse_edge::telemetry::AccessLog;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

// ================================================================ harness

type CaseResult = Result<(), String>;
type CaseFuture = Pin<Box<dyn Future<Output = CaseResult> + Send>>;

struct Case {
    name: &'static str,
    limit: Duration,
    /// Runs alone, after the area's concurrent cases (timing or memory
    /// figures that other load would blur).
    solo: bool,
    run: fn() -> CaseFuture,
}

macro_rules! case {
    ($name:literal, $f:ident, $secs:expr) => {
        Case {
            name: $name,
            limit: Duration::from_secs($secs),
            solo: false,
            run: || Box::pin($f()),
        }
    };
    ($name:literal, $f:ident, $secs:expr, solo) => {
        Case {
            name: $name,
            limit: Duration::from_secs($secs),
            solo: true,
            run: || Box::pin($f()),
        }
    };
}

/// `return Err(...)` unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if let false = $cond {
            return Err(format!($($arg)+));
        }
    };
}

fn areas() -> Vec<(&'static str, Vec<Case>)> {
    vec![
        (
            "upstream",
            vec![
                case!("refuses_connections", upstream_refuses_connections, 20),
                case!("stalls_before_headers", upstream_stalls_before_headers, 20),
                case!("resets_before_headers", upstream_resets_before_headers, 20),
                case!("resets_mid_stream", upstream_resets_mid_stream, 20),
                case!("ends_without_terminal_event", upstream_ends_early, 20),
                case!("answers_garbage", upstream_answers_garbage, 20),
                case!("silent_mid_sse_body", upstream_silent_mid_sse, 20),
                case!("silent_mid_json_body", upstream_silent_mid_json, 20),
            ],
        ),
        (
            "client",
            vec![
                case!(
                    "disconnect_mid_stream_h1_upstream",
                    client_disconnect_h1,
                    20
                ),
                case!(
                    "disconnect_mid_stream_h2_upstream",
                    client_disconnect_h2,
                    20
                ),
                case!(
                    "disconnect_during_early_commit",
                    client_disconnect_early_commit,
                    20
                ),
                case!(
                    "sequential_disconnects_200",
                    client_sequential_disconnects,
                    60
                ),
            ],
        ),
        (
            "slow",
            vec![
                case!("slowloris_head", slow_loris_head, 20),
                case!("idle_connections", slow_idle_connections, 20),
                case!("slow_body_json_buffered", slow_body_json, 20),
                case!("slow_body_plain_streamed", slow_body_streamed, 20),
                case!("never_reading_client", slow_never_reading_client, 40, solo),
            ],
        ),
        (
            "limits",
            vec![
                case!("header_70k", limits_big_header, 20),
                case!("headers_150", limits_many_headers, 20),
                case!("uri_9k", limits_long_uri, 20),
                case!("body_over_limit", limits_body, 20),
                case!("max_connections", limits_max_connections, 20),
                case!("max_requests", limits_max_requests, 20),
            ],
        ),
        (
            "smuggling",
            vec![
                case!("cl_and_te", smuggle_cl_te, 20),
                case!("duplicate_content_length", smuggle_duplicate_cl, 20),
                case!("te_not_ending_in_chunked", smuggle_te_not_chunked, 20),
                case!("obs_fold", smuggle_obs_fold, 20),
                case!("bare_lf_chunks", smuggle_bare_lf, 20),
                case!("upgrade_h2c_not_honoured", smuggle_upgrade_h2c, 20),
                case!("connect_405", smuggle_connect, 20),
            ],
        ),
        (
            "h2",
            vec![
                case!("rapid_reset", h2_rapid_reset, 40),
                case!("continuation_flood", h2_continuation_flood, 40),
            ],
        ),
        (
            "tls",
            vec![
                case!("alpn_h3_only", tls_alpn_h3_only, 20),
                case!("garbage_client_hello", tls_garbage_hello, 20),
                case!("handshake_never_finishes", tls_stalled_handshake, 20),
                case!("idle_after_handshake", tls_idle_after_handshake, 20),
            ],
        ),
        ("soak", vec![case!("mixed_faults", soak_mixed, 90, solo)]),
    ]
}

fn main() {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (mut passed, mut failed) = (0, 0);
    rt.block_on(async {
        for (area, cases) in areas() {
            let cases: Vec<Case> = cases
                .into_iter()
                .filter(|c| {
                    filter
                        .as_deref()
                        .is_none_or(|f| format!("{area}/{}", c.name).contains(f))
                })
                .collect();
            if cases.is_empty() {
                continue;
            }
            let (p, f) = run_area(area, cases).await;
            println!("{area}: {p} passed, {f} failed");
            passed += p;
            failed += f;
        }
    });
    println!("{passed} passed, {failed} failed");
    rt.shutdown_timeout(Duration::from_secs(2));
    std::process::exit(i32::from(failed > 0));
}

async fn run_area(area: &'static str, cases: Vec<Case>) -> (usize, usize) {
    let (solo, together): (Vec<Case>, Vec<Case>) = cases.into_iter().partition(|c| c.solo);
    let mut set = tokio::task::JoinSet::new();
    for c in together {
        set.spawn(run_case(area, c));
    }
    let (mut passed, mut failed) = (0, 0);
    let mut tally = |ok: bool| {
        if ok {
            passed += 1;
        } else {
            failed += 1;
        }
    };
    while let Some(res) = set.join_next().await {
        tally(res.unwrap_or(false));
    }
    for c in solo {
        tally(run_case(area, c).await);
    }
    (passed, failed)
}

tokio::task_local! {
    /// Figures a case reports on its output line.
    static NOTES: Arc<Mutex<Vec<String>>>;
}

/// Adds a figure to the running case's output line.
fn note(s: impl Into<String>) {
    let s = s.into();
    let _ = NOTES.try_with(|n| n.lock().unwrap().push(s));
}

/// Runs one case under its deadline (and catching panics from support
/// helpers); prints its line; returns whether it passed.
async fn run_case(area: &'static str, c: Case) -> bool {
    let notes = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let task = tokio::spawn(NOTES.scope(notes.clone(), (c.run)()));
    let abort = task.abort_handle();
    let res = match tokio::time::timeout(c.limit, task).await {
        Ok(Ok(res)) => res,
        Ok(Err(e)) if e.is_panic() => Err(format!("panicked: {}", panic_text(e.into_panic()))),
        Ok(Err(e)) => Err(format!("task failed: {e}")),
        Err(_) => {
            abort.abort();
            Err(format!("hung: no result within {:?}", c.limit))
        }
    };
    let ms = start.elapsed().as_millis();
    let notes = notes.lock().unwrap().join("; ");
    let notes = if notes.is_empty() {
        String::new()
    } else {
        format!(" [{notes}]")
    };
    match res {
        Ok(()) => {
            println!("ok   {area}/{} ({ms} ms){notes}", c.name);
            true
        }
        Err(e) => {
            println!("FAIL {area}/{}: {e} ({ms} ms){notes}", c.name);
            false
        }
    }
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-text panic".to_owned()
    }
}

// ================================================================ helpers

const STREAM_REQ: &str = r#"{"model":"m","stream":true,"messages":[]}"#;
const HB: &str = "300ms";

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

fn sleep(ms: u64) -> tokio::time::Sleep {
    tokio::time::sleep(Duration::from_millis(ms))
}

/// The access log of an in-process relay.
struct Log {
    rx: Receiver<String>,
    seen: Vec<Value>,
}

impl Log {
    /// The first line (not yet taken) that satisfies `pred`, waiting up to 5 s.
    async fn find(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Result<Value, String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            while let Ok(line) = self.rx.try_recv() {
                let v = serde_json::from_str(&line)
                    .map_err(|e| format!("access-log line is not JSON ({e}): {line}"))?;
                self.seen.push(v);
            }
            if let Some(i) = self.seen.iter().position(&pred) {
                return Ok(self.seen.remove(i));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no access-log line {what}; lines: {:?}",
                    self.seen.iter().map(Value::to_string).collect::<Vec<_>>()
                ));
            }
            sleep(10).await;
        }
    }

    /// The line for `path` whose outcome is `outcome`.
    async fn outcome(&mut self, path: &str, outcome: &str) -> Result<Value, String> {
        self.find(&format!("for {path} with outcome {outcome}"), |v| {
            v["path"] == path && v["outcome"] == outcome
        })
        .await
    }
}

/// Starts the relay in-process with a captured access log.
async fn start_logged(args: &[&str]) -> (sse_edge::Running, Log) {
    let (access, rx) = AccessLog::capture();
    let relay = sse_edge::start(relay_config(args), access)
        .await
        .expect("relay starts");
    (
        relay,
        Log {
            rx,
            seen: Vec::new(),
        },
    )
}

/// The relay in front of `up` with an HTTP/2 prior-knowledge route.
async fn start_logged_h2c(up: &Upstream, extra: &[&str]) -> (sse_edge::Running, Log) {
    let dir = TempDir::new("faults-h2c");
    let toml = format!(
        "[[route]]\nprefix = \"/\"\nupstream = \"{}\"\nprotocol = \"http2\"\n",
        up.url()
    );
    let file = dir.write("relay.toml", toml.as_bytes());
    let mut args = vec!["--config", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    start_logged(&args).await
}

async fn scrape(admin: SocketAddr) -> Result<String, String> {
    let r = tokio::time::timeout(Duration::from_secs(5), try_fetch(admin, get("/metrics")))
        .await
        .map_err(|_| "GET /metrics hung".to_owned())??;
    ensure!(r.status == 200, "GET /metrics: {}", r.status);
    Ok(r.text())
}

fn value(m: &str, name: &str) -> f64 {
    metric_or_zero(m, name, &[])
}

/// Every `name{origin="..."}` value.
fn per_origin(m: &str, name: &str) -> Vec<f64> {
    m.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix("{origin=")?;
            rest.rsplit_once(' ')?.1.parse().ok()
        })
        .collect()
}

/// What is still held: requests, streams, client connections, HTTP/2
/// streams, and (for HTTP/1.1 origins) connections checked out of the pool.
fn held(m: &str, h1_pool: bool) -> Vec<String> {
    let mut out = Vec::new();
    for g in [
        "sse_edge_requests_in_flight",
        "sse_edge_active_streams",
        "sse_edge_connections",
    ] {
        let v = value(m, g);
        if v != 0.0 {
            out.push(format!("{g} {v}"));
        }
    }
    for v in per_origin(m, "sse_edge_upstream_h2_streams") {
        if v != 0.0 {
            out.push(format!("sse_edge_upstream_h2_streams {v}"));
        }
    }
    if h1_pool {
        let open = per_origin(m, "sse_edge_upstream_connections");
        let idle = per_origin(m, "sse_edge_upstream_idle_connections");
        for (o, i) in open.iter().zip(&idle) {
            if o > i {
                out.push(format!(
                    "{} upstream connection(s) checked out ({o} open, {i} idle)",
                    o - i
                ));
            }
        }
    }
    out
}

/// Waits (up to 5 s) until the relay holds nothing; returns the metrics.
async fn settled(admin: SocketAddr, h1_pool: bool) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = scrape(admin).await?;
        let left = held(&m, h1_pool);
        if left.is_empty() {
            return Ok(m);
        }
        ensure!(
            Instant::now() < deadline,
            "relay not at rest 5 s after the case: {}",
            left.join(", ")
        );
        sleep(50).await;
    }
}

/// A whole response as the client saw it, body error included.
struct Got {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
    err: Option<String>,
    took: Duration,
}

impl Got {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One request on a fresh HTTP/1.1 connection; the body is read to its end
/// or its error.
async fn send(addr: SocketAddr, req: Request<TestBody>) -> Result<Got, String> {
    let start = Instant::now();
    let mut c = Client::h1(addr).await;
    let res = c.send(req).await.map_err(|e| format!("send: {e}"))?;
    let (parts, body) = res.into_parts();
    let (frames, err) = read_frames(body).await;
    Ok(Got {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: joined(&frames),
        err: err.map(|e| e.to_string()),
        took: start.elapsed(),
    })
}

fn stream_post(path: &str) -> Request<TestBody> {
    post(path, STREAM_REQ)
}

/// Checks a relay-made error answer: status, `sse-edge-error`, and the
/// dialect's JSON shape (OpenAI unless the body is Anthropic-shaped).
fn dialect_error(status: u16, headers: &HeaderMap, body: &[u8], code: &str) -> CaseResult {
    let text = String::from_utf8_lossy(body);
    let got = headers.get("sse-edge-error").and_then(|v| v.to_str().ok());
    ensure!(
        got == Some(code),
        "sse-edge-error {got:?}, want {code:?} (status {status}): {text}"
    );
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("error body not JSON ({e}): {text}"))?;
    if v["type"] == "error" {
        ensure!(
            v["error"]["type"].is_string() && v["error"]["message"].is_string(),
            "not the Anthropic error shape: {v}"
        );
    } else {
        ensure!(
            v["error"]["code"] == code
                && v["error"]["message"].is_string()
                && v["error"]["type"].is_string(),
            "not the OpenAI error shape with code {code}: {v}"
        );
    }
    Ok(())
}

fn expect_error(r: &Got, status: u16, code: &str) -> CaseResult {
    ensure!(
        r.status == status,
        "status {} (want {status}): {}",
        r.status,
        r.text()
    );
    dialect_error(r.status, &r.headers, &r.body, code)
}

/// The code of the stream's last event if it is an error event (OpenAI
/// chat shape `data: {"error":{...}}`, or `event: error`).
fn error_event_code(body: &[u8]) -> Option<String> {
    let events = whatwg::parse(body);
    let last = events.last()?;
    let v: Value = serde_json::from_str(&last.data).ok()?;
    v["error"]["code"]
        .as_str()
        .or_else(|| v["error"]["type"].as_str())
        .map(str::to_owned)
}

fn expect_error_event(r: &Got, code: &str) -> CaseResult {
    ensure!(r.status == 200, "status {}: {}", r.status, r.text());
    ensure!(
        r.err.is_none(),
        "the stream should end cleanly after its error event, got {:?}",
        r.err
    );
    let got = error_event_code(&r.body);
    ensure!(
        got.as_deref() == Some(code),
        "last event's error code {got:?}, want {code:?}: {:?}",
        r.text()
    );
    ensure!(
        !r.text().contains("[DONE]"),
        "an error stream must not carry [DONE]: {:?}",
        r.text()
    );
    Ok(())
}

/// A healthy request through `addr`, answered 200 within 1 s.
async fn healthy(addr: SocketAddr, path: &str) -> Result<Duration, String> {
    let start = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(3), try_fetch(addr, get(path)))
        .await
        .map_err(|_| format!("healthy GET {path} hung during the fault"))??;
    let took = start.elapsed();
    ensure!(
        r.status == 200,
        "healthy GET {path}: {} {}",
        r.status,
        r.text()
    );
    ensure!(
        took < Duration::from_secs(1),
        "healthy GET {path} took {took:?} during the fault"
    );
    Ok(took)
}

/// What a raw socket received until the peer closed it.
struct RawReply {
    bytes: Vec<u8>,
    /// Time from the start until EOF or reset; `None` if still open at the limit.
    closed: Option<Duration>,
    reset: bool,
}

impl RawReply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    fn status(&self) -> Option<u16> {
        let t = self.text();
        t.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
    }

    fn responses(&self) -> usize {
        self.text().matches("HTTP/1.1 ").count()
    }
}

async fn read_until_close(mut r: OwnedReadHalf, start: Instant, limit: Duration) -> RawReply {
    let mut bytes = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let read = tokio::time::timeout(limit, async {
        loop {
            match r.read(&mut buf).await {
                Ok(0) => return false,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
                Err(_) => return true,
            }
        }
    })
    .await;
    match read {
        Ok(reset) => RawReply {
            bytes,
            closed: Some(start.elapsed()),
            reset,
        },
        Err(_) => RawReply {
            bytes,
            closed: None,
            reset: false,
        },
    }
}

/// Writes `raw` (errors ignored: the peer may close early) and reads until
/// the peer closes, at most `limit`. The write side stays open meanwhile.
async fn raw_roundtrip(
    addr: SocketAddr,
    raw: Vec<u8>,
    limit: Duration,
) -> Result<RawReply, String> {
    let s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let start = Instant::now();
    let (r, w) = s.into_split();
    let writer = tokio::spawn(write_then_hold(w, raw));
    let reply = read_until_close(r, start, limit).await;
    writer.abort();
    Ok(reply)
}

async fn write_then_hold(mut w: OwnedWriteHalf, raw: Vec<u8>) {
    let _ = w.write_all(&raw).await;
    std::future::pending::<()>().await;
    drop(w);
}

/// Reads one request head (and whatever came with it).
async fn read_head(s: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return buf,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    return buf;
                }
            }
        }
    }
}

/// Closes with a TCP RST instead of a FIN.
fn reset(s: TcpStream) {
    let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
    drop(s);
}

/// A TCP "upstream" whose every connection is handed to `serve`.
struct RawUpstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::AbortHandle,
}

impl RawUpstream {
    async fn start<F, Fut>(serve: F) -> RawUpstream
    where
        F: Fn(TcpStream, usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let n = accepted.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    Ok((s, _)) = listener.accept() => {
                        let i = n.fetch_add(1, Ordering::SeqCst);
                        conns.spawn(serve(s, i));
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        })
        .abort_handle();
        RawUpstream {
            addr,
            accepted,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// When an upstream stream noticed its reader was gone, and how often.
#[derive(Default)]
struct Stops {
    count: AtomicUsize,
    last: Mutex<Option<Instant>>,
}

impl Stops {
    fn stopped(&self) {
        *self.last.lock().unwrap() = Some(Instant::now());
        self.count.fetch_add(1, Ordering::SeqCst);
    }

    fn last(&self) -> Option<Instant> {
        *self.last.lock().unwrap()
    }

    /// Waits (up to `limit`) for `n` stops; the last one's instant.
    async fn wait(&self, n: usize, limit: Duration) -> Result<Instant, String> {
        let deadline = Instant::now() + limit;
        loop {
            if self.count.load(Ordering::SeqCst) >= n {
                return Ok(self.last().unwrap());
            }
            ensure!(
                Instant::now() < deadline,
                "the upstream saw {} of {n} stream(s) cancelled within {limit:?}",
                self.count.load(Ordering::SeqCst)
            );
            sleep(5).await;
        }
    }
}

/// An upstream answering `/ok` with JSON and everything else with an
/// endless event stream (one event per `gap`); `stops` records when a
/// stream's body channel was closed by the upstream's HTTP stack (its
/// connection closed or its stream reset).
async fn endless_upstream(mode: Mode, gap: Duration, stops: Arc<Stops>) -> Upstream {
    Upstream::start(mode, move |req: Recorded| {
        let stops = stops.clone();
        async move {
            if req.target == "/ok" {
                return json_response(200, r#"{"ok":true}"#);
            }
            let (tx, body) = channel_body();
            tokio::spawn(async move {
                for i in 0u64.. {
                    let ev = format!("data: {{\"tick\":{i}}}\n\n");
                    if tx.send(Ok(ev.into())).await.is_err() {
                        stops.stopped();
                        return;
                    }
                    tokio::time::sleep(gap).await;
                }
            });
            sse_response(body)
        }
    })
    .await
}

/// Reads `n` data frames of a response body.
async fn frames(body: &mut hyper::body::Incoming, n: usize) -> Result<(), String> {
    use http_body_util::BodyExt;
    let mut got = 0;
    while got < n {
        match tokio::time::timeout(Duration::from_secs(5), body.frame()).await {
            Err(_) => return Err(format!("no frame {got} within 5 s")),
            Ok(None) => return Err(format!("body ended after {got} frames")),
            Ok(Some(Err(e))) => return Err(format!("body failed after {got} frames: {e}")),
            Ok(Some(Ok(f))) => {
                if f.is_data() {
                    got += 1;
                }
            }
        }
    }
    Ok(())
}

fn proc_status(pid: u32, key: &str) -> Result<u64, String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no {key} in /proc/{pid}/status"))
}

fn rss_kib(pid: u32) -> Result<u64, String> {
    proc_status(pid, "VmRSS:")
}

fn fd_count(pid: u32) -> Result<usize, String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(Iterator::count)
        .map_err(|e| format!("/proc/{pid}/fd: {e}"))
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

async fn stop_proc(mut p: RelayProc) {
    p.sigterm();
    p.wait_exit(Duration::from_secs(10)).await;
}

// ================================================================ upstream

/// A port that refuses connections and stays reserved while this lives (a
/// socket bound but not listening), so no concurrent case can take it over.
fn refusing_port() -> (socket2::Socket, SocketAddr) {
    let sock =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    sock.bind(&any.into()).expect("bind");
    let addr = sock.local_addr().unwrap().as_socket().unwrap();
    (sock, addr)
}

async fn upstream_refuses_connections() -> CaseResult {
    let (_reserved, dead) = refusing_port();
    let url = format!("http://{dead}");
    let (relay, mut log) = start_logged(&[
        "--upstream",
        &url,
        "--heartbeat",
        HB,
        "--retry-backoff",
        "200ms",
    ])
    .await;

    let r = send(relay.listen, post("/v1/chat/completions", "{}")).await?;
    expect_error(&r, 502, "upstream_unreachable")?;
    let r = send(relay.listen, post("/v1/messages", "{}")).await?;
    expect_error(&r, 502, "upstream_unreachable")?;
    log.outcome("/v1/chat/completions", "relay_error").await?;

    // A streaming request is retried (3 x 200 ms backoff, doubled): longer
    // than the heartbeat, so it is committed and ends in one error event.
    let r = send(relay.listen, stream_post("/v1/chat/completions")).await?;
    ensure!(
        r.header("sse-edge-early-commit") == Some("1"),
        "no early commit: {:?}",
        r.headers
    );
    expect_error_event(&r, "upstream_unreachable")?;
    let line = log
        .outcome("/v1/chat/completions", "upstream_connect")
        .await?;
    ensure!(
        line["upstream_attempts"] == 4,
        "access log says upstream_attempts {} for a committed stream whose 4 connects failed",
        line["upstream_attempts"]
    );
    note(format!("streamed error after {} ms", ms(r.took)));
    let m = settled(relay.admin, true).await?;
    let connect = metric_or_zero(
        &m,
        "sse_edge_upstream_errors_total",
        &[("class", "connect")],
    );
    ensure!(connect >= 3.0, "connect errors counted: {connect}");
    stop_relay(relay).await;
    Ok(())
}

async fn upstream_stalls_before_headers() -> CaseResult {
    let silent = SilentListener::start().await;
    let url = format!("http://{}", silent.addr);
    let (relay, mut log) = start_logged(&[
        "--upstream",
        &url,
        "--heartbeat",
        HB,
        "--upstream-first-byte-timeout",
        "500ms",
    ])
    .await;
    let r = send(relay.listen, post("/v1/chat/completions", "{}")).await?;
    expect_error(&r, 504, "upstream_timeout")?;
    ensure!(
        r.took >= Duration::from_millis(450) && r.took < Duration::from_secs(2),
        "504 after {:?}, want ~500 ms",
        r.took
    );
    let plain = r.took;

    // Streaming: committed at the heartbeat, then the deadline passes.
    let r = send(relay.listen, stream_post("/v1/chat/completions")).await?;
    ensure!(
        r.header("sse-edge-early-commit") == Some("1"),
        "no early commit"
    );
    expect_error_event(&r, "upstream_timeout")?;
    ensure!(
        r.took >= Duration::from_millis(450) && r.took < Duration::from_secs(2),
        "error event after {:?}, want ~500 ms",
        r.took
    );
    log.outcome("/v1/chat/completions", "upstream_timeout")
        .await?;
    note(format!(
        "504 after {} ms, error event after {} ms",
        ms(plain),
        ms(r.took)
    ));
    ensure!(
        silent.accepted.load(Ordering::SeqCst) >= 2,
        "the upstream was contacted"
    );
    // The abandoned upstream connections are closed, not kept checked out.
    settled(relay.admin, true).await?;
    stop_relay(relay).await;
    Ok(())
}

async fn upstream_resets_before_headers() -> CaseResult {
    let up = RawUpstream::start(|mut s, _| async move {
        read_head(&mut s).await;
        reset(s);
    })
    .await;
    let url = up.url();
    let (relay, mut log) = start_logged(&["--upstream", &url, "--heartbeat", HB]).await;
    let r = send(relay.listen, post("/v1/chat/completions", "{}")).await?;
    expect_error(&r, 502, "upstream_error")?;
    // Streaming: a reset after the request was written is not retried.
    let r = send(relay.listen, stream_post("/v1/messages")).await?;
    if r.status == 200 {
        expect_error_event(&r, "api_error")?;
    } else {
        expect_error(&r, 502, "upstream_error")?;
    }
    log.outcome("/v1/chat/completions", "relay_error").await?;
    ensure!(
        up.accepted.load(Ordering::SeqCst) == 2,
        "each request sent once, got {} connections",
        up.accepted.load(Ordering::SeqCst)
    );
    let m = settled(relay.admin, true).await?;
    let resets = metric_or_zero(&m, "sse_edge_upstream_errors_total", &[("class", "reset")]);
    ensure!(resets == 2.0, "reset errors counted: {resets}");
    stop_relay(relay).await;
    Ok(())
}

const SSE_HEAD: &str =
    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";

fn chunk(data: &str) -> String {
    format!("{:x}\r\n{data}\r\n", data.len())
}

async fn upstream_resets_mid_stream() -> CaseResult {
    let up = RawUpstream::start(|mut s, _| async move {
        read_head(&mut s).await;
        let mut out = String::from(SSE_HEAD);
        out.push_str(&chunk("data: {\"i\":0}\n\ndata: {\"i\":1}\n\n"));
        out.push_str(&chunk("data: {\"i\":2,\"cut"));
        let _ = s.write_all(out.as_bytes()).await;
        sleep(100).await;
        reset(s);
    })
    .await;
    let url = up.url();
    let (relay, mut log) = start_logged(&["--upstream", &url, "--heartbeat", HB]).await;
    let r = send(relay.listen, stream_post("/v1/chat/completions")).await?;
    expect_error_event(&r, "upstream_reset")?;
    let events = whatwg::parse(&r.body);
    ensure!(
        events.len() >= 3 && events[0].data == r#"{"i":0}"# && events[1].data == r#"{"i":1}"#,
        "the events before the reset must arrive intact: {:?}",
        r.text()
    );
    log.outcome("/v1/chat/completions", "upstream_reset")
        .await?;
    let m = settled(relay.admin, true).await?;
    let resets = metric_or_zero(&m, "sse_edge_upstream_errors_total", &[("class", "reset")]);
    ensure!(
        resets == 1.0,
        "a mid-stream SSE reset counted {resets} times in sse_edge_upstream_errors_total{{class=\"reset\"}}"
    );
    stop_relay(relay).await;
    Ok(())
}

async fn upstream_ends_early() -> CaseResult {
    let up = Upstream::start(Mode::Http1, |_| async {
        let mut ev = sse_events(4);
        ev.pop(); // no [DONE]
        sse_response(stream_frames(ev, Duration::from_millis(10), None))
    })
    .await;
    let url = up.url();
    let (relay, mut log) = start_logged(&["--upstream", &url, "--heartbeat", HB]).await;
    let r = send(relay.listen, stream_post("/v1/chat/completions")).await?;
    expect_error_event(&r, "upstream_truncated")?;
    let events = whatwg::parse(&r.body);
    ensure!(
        events.len() == 4,
        "3 upstream events + 1 error event: {:?}",
        r.text()
    );
    log.outcome("/v1/chat/completions", "upstream_truncated")
        .await?;
    let m = settled(relay.admin, true).await?;
    let n = metric_or_zero(
        &m,
        "sse_edge_upstream_errors_total",
        &[("class", "truncated")],
    );
    ensure!(n == 1.0, "truncated errors counted: {n}");
    stop_relay(relay).await;
    Ok(())
}

async fn upstream_answers_garbage() -> CaseResult {
    let up = RawUpstream::start(|mut s, i| async move {
        read_head(&mut s).await;
        let junk: &[u8] = if i % 2 == 0 {
            b"SSH-2.0-OpenSSH_9.6\r\n\x00\x01\x02garbage\r\n\r\n"
        } else {
            b"HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok"
        };
        let _ = s.write_all(junk).await;
        sleep(50).await;
    })
    .await;
    let url = up.url();
    let (relay, mut log) = start_logged(&["--upstream", &url, "--heartbeat", HB]).await;
    for _ in 0..2 {
        let r = send(relay.listen, post("/v1/chat/completions", "{}")).await?;
        expect_error(&r, 502, "upstream_error")?;
    }
    let r = send(relay.listen, stream_post("/v1/chat/completions")).await?;
    expect_error(&r, 502, "upstream_error")?;
    log.outcome("/v1/chat/completions", "relay_error").await?;
    let m = settled(relay.admin, true).await?;
    let n = metric_or_zero(
        &m,
        "sse_edge_upstream_errors_total",
        &[("class", "protocol")],
    );
    ensure!(n == 3.0, "protocol errors counted: {n}");
    stop_relay(relay).await;
    Ok(())
}

async fn upstream_silent_mid_sse() -> CaseResult {
    let stops = Arc::new(Stops::default());
    let s = stops.clone();
    let up = Upstream::start(Mode::Http1, move |_| {
        let stops = s.clone();
        async move {
            let (tx, body) = channel_body();
            tokio::spawn(async move {
                let _ = tx
                    .send(Ok(Bytes::from_static(b"data: {\"i\":0}\n\n")))
                    .await;
                tx.closed().await; // silent until the relay goes away
                stops.stopped();
            });
            sse_response(body)
        }
    })
    .await;
    let url = up.url();
    let (relay, mut log) = start_logged(&[
        "--upstream",
        &url,
        "--heartbeat",
        HB,
        "--upstream-read-timeout",
        "1s",
    ])
    .await;
    let r = send(relay.listen, stream_post("/v1/chat/completions")).await?;
    let ended = Instant::now();
    expect_error_event(&r, "upstream_timeout")?;
    ensure!(
        r.text().contains(": keepalive"),
        "keepalives during the silence: {:?}",
        r.text()
    );
    ensure!(
        r.took >= Duration::from_millis(950) && r.took < Duration::from_millis(2500),
        "error event after {:?}, want ~1 s (read timeout + one heartbeat at most)",
        r.took
    );
    let stopped = stops.wait(1, Duration::from_secs(2)).await?;
    log.outcome("/v1/chat/completions", "upstream_timeout")
        .await?;
    note(format!(
        "error event after {} ms, upstream released {} ms later",
        ms(r.took),
        ms(stopped.saturating_duration_since(ended))
    ));
    settled(relay.admin, true).await?;
    stop_relay(relay).await;
    Ok(())
}

async fn upstream_silent_mid_json() -> CaseResult {
    let up = Upstream::start(Mode::Http1, |_| async {
        let (tx, body) = channel_body();
        tokio::spawn(async move {
            let _ = tx.send(Ok(Bytes::from(vec![b' '; 40]))).await;
            tx.closed().await;
        });
        response(
            200,
            &[
                ("content-type", "application/json"),
                ("content-length", "100"),
            ],
            body,
        )
    })
    .await;
    let url = up.url();
    let (relay, mut log) = start_logged(&[
        "--upstream",
        &url,
        "--heartbeat",
        HB,
        "--upstream-read-timeout",
        "1s",
    ])
    .await;
    let r = send(relay.listen, get("/v1/models")).await?;
    ensure!(r.status == 200, "status {}", r.status);
    ensure!(
        r.err.is_some(),
        "a body cut by the read timeout must not end cleanly ({} bytes)",
        r.body.len()
    );
    ensure!(
        r.body.len() == 40,
        "got {} of the 40 bytes sent",
        r.body.len()
    );
    ensure!(
        r.took >= Duration::from_millis(950) && r.took < Duration::from_millis(2500),
        "cut after {:?}, want ~1 s",
        r.took
    );
    note(format!("body cut after {} ms", ms(r.took)));
    log.outcome("/v1/models", "upstream_timeout").await?;
    settled(relay.admin, true).await?;
    stop_relay(relay).await;
    Ok(())
}

// ================================================================ client

/// Starts a stream, reads 3 frames, and leaves: the instant it left.
async fn abandon(addr: SocketAddr) -> Result<Instant, String> {
    let mut c = Client::h1(addr).await;
    let res = c
        .send(stream_post("/v1/chat/completions"))
        .await
        .map_err(|e| format!("send: {e}"))?;
    ensure!(res.status() == 200, "status {}", res.status());
    let mut body = res.into_body();
    frames(&mut body, 3).await?;
    drop(body);
    drop(c);
    Ok(Instant::now())
}

async fn client_disconnect_h1() -> CaseResult {
    let stops = Arc::new(Stops::default());
    let up = endless_upstream(Mode::Http1, Duration::from_millis(20), stops.clone()).await;
    let url = up.url();
    let (relay, mut log) = start_logged(&["--upstream", &url, "--heartbeat", HB]).await;
    let left = abandon(relay.listen).await?;
    let stopped = stops.wait(1, Duration::from_secs(3)).await?;
    let delay = stopped.saturating_duration_since(left);
    ensure!(
        delay < Duration::from_secs(1),
        "upstream connection closed {delay:?} after the client left"
    );
    note(format!("upstream closed {} ms after the client", ms(delay)));
    log.outcome("/v1/chat/completions", "client_disconnected")
        .await?;
    let m = settled(relay.admin, true).await?;
    let n = value(&m, "sse_edge_client_disconnects_total");
    ensure!(n == 1.0, "client disconnects counted: {n}");
    healthy(relay.listen, "/ok").await?;
    ensure!(up.connections() == 2, "the cut connection was not reused");
    stop_relay(relay).await;
    Ok(())
}

async fn client_disconnect_h2() -> CaseResult {
    let stops = Arc::new(Stops::default());
    let up = endless_upstream(Mode::H2c, Duration::from_millis(20), stops.clone()).await;
    let (relay, mut log) = start_logged_h2c(&up, &["--heartbeat", HB]).await;
    // An HTTP/2 client resets its stream and keeps its connection.
    let mut c = Client::h2(relay.listen).await;
    let res = c
        .send(stream_post("/v1/chat/completions"))
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut body = res.into_body();
    frames(&mut body, 3).await?;
    drop(body);
    let left = Instant::now();
    let stopped = stops.wait(1, Duration::from_secs(3)).await?;
    let delay = stopped.saturating_duration_since(left);
    ensure!(
        delay < Duration::from_secs(1),
        "upstream stream reset {delay:?} after the client left"
    );
    note(format!(
        "upstream stream reset {} ms after the client",
        ms(delay)
    ));
    log.outcome("/v1/chat/completions", "client_disconnected")
        .await?;
    // Both connections stay up for other streams.
    let r = c.get("/ok").await;
    ensure!(
        r.status == 200,
        "next stream on the client connection: {}",
        r.status
    );
    ensure!(
        up.connections() == 1,
        "the upstream HTTP/2 connection was replaced ({} connections)",
        up.connections()
    );
    let last = up.requests().pop().map(|r| r.conn);
    ensure!(last == Some(1), "second request on connection {last:?}");
    drop(c);
    let m = settled(relay.admin, false).await?;
    let n = value(&m, "sse_edge_client_disconnects_total");
    ensure!(n == 1.0, "client disconnects counted: {n}");
    stop_relay(relay).await;
    Ok(())
}

async fn client_disconnect_early_commit() -> CaseResult {
    // The upstream reads the request and stays silent; it records when the
    // relay closes the connection (the pending request cancelled).
    let closed: Arc<Mutex<Option<Instant>>> = Arc::default();
    let c2 = closed.clone();
    let up = RawUpstream::start(move |mut s, _| {
        let closed = c2.clone();
        async move {
            read_head(&mut s).await;
            let mut buf = [0u8; 1024];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
            *closed.lock().unwrap() = Some(Instant::now());
        }
    })
    .await;
    let url = up.url();
    let (relay, mut log) = start_logged(&["--upstream", &url, "--heartbeat", HB]).await;
    let mut c = Client::h1(relay.listen).await;
    let res = c
        .send(stream_post("/v1/chat/completions"))
        .await
        .map_err(|e| format!("send: {e}"))?;
    ensure!(
        res.headers().get("sse-edge-early-commit").is_some(),
        "no early commit"
    );
    let mut body = res.into_body();
    frames(&mut body, 1).await?; // one keepalive
    drop(body);
    drop(c);
    let left = Instant::now();
    let deadline = left + Duration::from_secs(3);
    let at = loop {
        if let Some(at) = *closed.lock().unwrap() {
            break at;
        }
        ensure!(
            Instant::now() < deadline,
            "the pending upstream request was not cancelled within 3 s"
        );
        sleep(5).await;
    };
    let delay = at.saturating_duration_since(left);
    ensure!(
        delay < Duration::from_secs(1),
        "upstream request cancelled {delay:?} after the client left"
    );
    note(format!(
        "upstream request cancelled {} ms after the client",
        ms(delay)
    ));
    log.outcome("/v1/chat/completions", "client_disconnected")
        .await?;
    let m = settled(relay.admin, true).await?;
    ensure!(
        value(&m, "sse_edge_client_disconnects_total") == 1.0,
        "client disconnects counted"
    );
    stop_relay(relay).await;
    Ok(())
}

async fn client_sequential_disconnects() -> CaseResult {
    const N: usize = 200;
    const WARM: usize = 10;
    let stops = Arc::new(Stops::default());
    let up = endless_upstream(Mode::Http1, Duration::from_millis(10), stops.clone()).await;
    let url = up.url();
    let relay = RelayProc::spawn(&[
        "--upstream",
        &url,
        "--heartbeat",
        HB,
        "--drain-timeout",
        "1s",
    ])
    .await;
    let pid = relay.pid();
    let mut worst = Duration::ZERO;
    let mut baseline = None;
    for i in 0..N {
        if i == WARM {
            stops.wait(WARM, Duration::from_secs(3)).await?;
            settled(relay.admin, true).await?;
            baseline = Some((fd_count(pid)?, proc_status(pid, "Threads:")?));
        }
        let left = abandon(relay.listen).await?;
        let stopped = stops.wait(i + 1, Duration::from_secs(3)).await?;
        worst = worst.max(stopped.saturating_duration_since(left));
    }
    let m = settled(relay.admin, true).await?;
    let n = value(&m, "sse_edge_client_disconnects_total");
    ensure!(n == N as f64, "client disconnects counted: {n}, want {N}");
    let (fd0, thr0) = baseline.unwrap();
    // Closed sockets may take a moment to leave the table.
    let deadline = Instant::now() + Duration::from_secs(3);
    let fds = loop {
        let fds = fd_count(pid)?;
        if fds <= fd0 || Instant::now() > deadline {
            break fds;
        }
        sleep(50).await;
    };
    let threads = proc_status(pid, "Threads:")?;
    ensure!(
        fds <= fd0,
        "relay fds {fd0} after warm-up, {fds} after {N} disconnects"
    );
    ensure!(
        threads <= thr0 + 2,
        "relay threads {thr0} after warm-up, {threads} after {N} disconnects"
    );
    ensure!(
        worst < Duration::from_secs(1),
        "slowest upstream cancel {worst:?}"
    );
    let lines = relay.stdout();
    let logged = lines.matches("\"outcome\":\"client_disconnected\"").count();
    ensure!(
        logged == N,
        "{logged} access-log lines say client_disconnected, want {N}"
    );
    note(format!(
        "{N} disconnects, slowest upstream cancel {} ms, fds {fd0}->{fds}, threads {thr0}->{threads}",
        ms(worst)
    ));
    stop_proc(relay).await;
    Ok(())
}

// ================================================================ slow

async fn slow_loris_head() -> CaseResult {
    let up = Upstream::ok(Mode::Http1).await;
    let url = up.url();
    let (relay, _log) =
        start_logged(&["--upstream", &url, "--server-header-read-timeout", "1s"]).await;
    let s = TcpStream::connect(relay.listen)
        .await
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let (r, mut w) = s.into_split();
    let writer = tokio::spawn(async move {
        let mut lines = 0;
        if w.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
            .await
            .is_err()
        {
            return lines;
        }
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if w.write_all(format!("X-Slow-{lines}: y\r\n").as_bytes())
                .await
                .is_err()
                || lines > 40
            {
                return lines;
            }
            lines += 1;
        }
    });
    let reader = tokio::spawn(read_until_close(r, start, Duration::from_secs(5)));
    sleep(500).await;
    let ok = healthy(relay.listen, "/ok").await?;
    let reply = reader.await.map_err(|e| e.to_string())?;
    writer.abort();
    let closed = reply
        .closed
        .ok_or("the slow head was still open after 5 s")?;
    ensure!(
        closed >= Duration::from_millis(900) && closed < Duration::from_millis(2500),
        "closed after {closed:?}, want ~1 s"
    );
    ensure!(
        reply.status().is_none_or(|s| s == 408),
        "answer to a slow head: {:?}",
        reply.text()
    );
    note(format!(
        "closed after {} ms with {}, healthy request {} ms",
        ms(closed),
        reply
            .status()
            .map_or_else(|| "no answer".to_owned(), |s| s.to_string()),
        ms(ok)
    ));
    ensure!(
        up.request_count() == 1,
        "only the healthy request reached the upstream"
    );
    settled(relay.admin, true).await?;
    stop_relay(relay).await;
    Ok(())
}

/// Connections that stop before (or between) requests: each must be closed
/// around `server.header_read_timeout`, or it holds a connection slot
/// (`server.max_connections`) for nothing.
async fn slow_idle_connections() -> CaseResult {
    let up = Upstream::ok(Mode::Http1).await;
    let url = up.url();
    let (relay, _log) = start_logged(&[
        "--upstream",
        &url,
        "--server-header-read-timeout",
        "1s",
        "--server-idle-timeout",
        "1s",
    ])
    .await;
    let addr = relay.listen;
    let limit = Duration::from_secs(4);
    let ka = format!("GET /ok HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes();
    let mut h2c = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    h2c.extend(h2_frame(0x4, 0, 0, &[]));
    let (nothing, partial, keepalive, h2c) = tokio::join!(
        raw_roundtrip(addr, Vec::new(), limit),
        raw_roundtrip(addr, b"PRI * HTTP/2".to_vec(), limit),
        raw_roundtrip(addr, ka, limit),
        raw_roundtrip(addr, h2c, limit),
    );
    let mut times = Vec::new();
    for (what, reply) in [
        ("sends nothing", nothing?),
        ("partial h2c preface", partial?),
        ("idle keep-alive", keepalive?),
    ] {
        let closed = reply.closed.ok_or(format!(
            "a connection that {what} is still open after {limit:?}"
        ))?;
        ensure!(
            closed >= Duration::from_millis(900) && closed < Duration::from_millis(2500),
            "{what}: closed after {closed:?}, want ~1 s"
        );
        times.push(format!("{what} {} ms", ms(closed)));
    }
    // server.idle_timeout (1 s here) is checked once per timeout: closed
    // between one and two timeouts after the connection went idle.
    let t = h2c?.closed.ok_or(format!(
        "an HTTP/2 connection idle after its preface is still open after {limit:?}"
    ))?;
    ensure!(
        t < Duration::from_millis(3000),
        "idle h2c closed after {t:?}"
    );
    times.push(format!("idle h2c {} ms", ms(t)));
    note(format!("closed: {}", times.join(", ")));
    healthy(addr, "/ok").await?;
    settled(relay.admin, true).await?;
    stop_relay(relay).await;
    Ok(())
}

async fn slow_body_case(content_type: &str) -> Result<(RawReply, Upstream), String> {
    let up = Upstream::ok(Mode::Http1).await;
    let url = up.url();
    let (relay, mut log) = start_logged(&["--upstream", &url, "--server-body-timeout", "1s"]).await;
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: 100\r\n\r\n{{\""
    );
    let addr = relay.listen;
    let reply = tokio::spawn(raw_roundtrip(
        addr,
        head.into_bytes(),
        Duration::from_secs(5),
    ));
    sleep(500).await;
    let ok = healthy(relay.listen, "/ok").await?;
    let reply = reply.await.map_err(|e| e.to_string())??;
    let closed = reply.closed.ok_or("still open after 5 s")?;
    ensure!(
        reply.status() == Some(408),
        "want 408 for a stalled body: {:?}",
        reply.text()
    );
    ensure!(
        closed >= Duration::from_millis(900) && closed < Duration::from_millis(2500),
        "closed after {closed:?}, want ~1 s"
    );
    let lower = reply.text().to_ascii_lowercase();
    ensure!(
        lower.contains("connection: close"),
        "408 must close: {lower}"
    );
    let body = reply.text();
    let json = body.split("\r\n\r\n").nth(1).unwrap_or("");
    let mut h = HeaderMap::new();
    h.insert("sse-edge-error", "request_timeout".parse().unwrap());
    dialect_error(408, &h, json.as_bytes(), "request_timeout")?;
    ensure!(lower.contains("sse-edge-error: request_timeout"), "{lower}");
    note(format!(
        "408 + close after {} ms, healthy {} ms",
        ms(closed),
        ms(ok)
    ));
    log.find("for the 408", |v| v["status"] == 408).await?;
    settled(relay.admin, true).await?;
    stop_relay(relay).await;
    Ok((reply, up))
}

async fn slow_body_json() -> CaseResult {
    let (_, up) = slow_body_case("application/json").await?;
    ensure!(
        up.request_count() == 1 && up.connections() == 1,
        "a buffered body that stalls never reaches the upstream ({} requests)",
        up.request_count()
    );
    Ok(())
}

async fn slow_body_streamed() -> CaseResult {
    let (_, up) = slow_body_case("text/plain").await?;
    ensure!(
        up.requests()
            .iter()
            .filter(|r| r.target == "/v1/chat/completions")
            .all(|r| !r.body_complete),
        "the upstream must not get a complete body: {:?}",
        up.requests()
    );
    Ok(())
}

/// Bytes an endless upstream managed to hand over, and when.
#[derive(Default)]
struct Pushes {
    bytes: AtomicU64,
    last: Mutex<Option<Instant>>,
    stopped: Mutex<Option<Instant>>,
}

async fn slow_never_reading_client() -> CaseResult {
    let pushes = Arc::new(Pushes::default());
    let p = pushes.clone();
    let up = Upstream::start(Mode::Http1, move |req: Recorded| {
        let p = p.clone();
        async move {
            if req.target == "/ok" {
                return json_response(200, r#"{"ok":true}"#);
            }
            let event = Bytes::from(format!("data: {}\n\n", "x".repeat(16 * 1024)));
            let (tx, body) = channel_body();
            tokio::spawn(async move {
                loop {
                    if tx.send(Ok(event.clone())).await.is_err() {
                        *p.stopped.lock().unwrap() = Some(Instant::now());
                        return;
                    }
                    p.bytes.fetch_add(event.len() as u64, Ordering::Relaxed);
                    *p.last.lock().unwrap() = Some(Instant::now());
                }
            });
            sse_response(body)
        }
    })
    .await;
    let url = up.url();
    let relay = RelayProc::spawn(&[
        "--upstream",
        &url,
        "--heartbeat",
        HB,
        "--server-write-timeout",
        "2s",
        "--drain-timeout",
        "1s",
    ])
    .await;
    let pid = relay.pid();
    for _ in 0..3 {
        healthy(relay.listen, "/ok").await?;
    }
    let rss0 = rss_kib(pid)?;

    // A client with a tiny receive buffer that reads the head and stops.
    let sock = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    sock.set_recv_buffer_size(4096).map_err(|e| e.to_string())?;
    let mut s = sock
        .connect(relay.listen)
        .await
        .map_err(|e| e.to_string())?;
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{STREAM_REQ}",
        STREAM_REQ.len()
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let head = read_head(&mut s).await;
    ensure!(
        head.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&head)
    );
    let stalled = Instant::now();

    let mut peak = rss0;
    let mut healthy_ms = None;
    let deadline = stalled + Duration::from_secs(10);
    let cancelled = loop {
        if let Some(at) = *pushes.stopped.lock().unwrap() {
            break at;
        }
        ensure!(
            Instant::now() < deadline,
            "the upstream was not cancelled within 10 s of the client stalling"
        );
        peak = peak.max(rss_kib(pid)?);
        if healthy_ms.is_none() && stalled.elapsed() > Duration::from_millis(1000) {
            healthy_ms = Some(healthy(relay.listen, "/ok").await?);
        }
        sleep(50).await;
    };
    let after_stall = cancelled.saturating_duration_since(stalled);
    let last_push = pushes.last.lock().unwrap().unwrap_or(stalled);
    let after_last_push = cancelled.saturating_duration_since(last_push);
    let pushed = pushes.bytes.load(Ordering::Relaxed);
    // The client's socket is closed by the relay: reading what is left ends.
    let mut rest = Vec::new();
    let drained = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    ensure!(
        drained.is_ok(),
        "the stalled client's connection was not closed"
    );
    ensure!(
        after_stall >= Duration::from_millis(1800) && after_stall < Duration::from_secs(4),
        "upstream cancelled {after_stall:?} after the client stopped reading, want ~2 s"
    );
    let growth = peak.saturating_sub(rss0);
    ensure!(
        growth < 8 * 1024,
        "relay RSS grew by {} while the client was stalled",
        mib(growth)
    );
    ensure!(
        pushed < 64 * 1024 * 1024,
        "the upstream pushed {pushed} bytes into a stalled client: no backpressure"
    );
    note(format!(
        "closed {} ms after the client stalled ({} ms after the last upstream push), upstream pushed {} KiB, RSS {} -> peak {}, healthy {} ms",
        ms(after_stall),
        ms(after_last_push),
        pushed / 1024,
        mib(rss0),
        mib(peak),
        healthy_ms.map_or(0, ms)
    ));
    drop(s);
    settled(relay.admin, true).await?;
    stop_proc(relay).await;
    Ok(())
}

// ================================================================ limits

async fn limits_relay() -> (Upstream, sse_edge::Running, Log) {
    let up = Upstream::ok(Mode::Http1).await;
    let url = up.url();
    let (relay, log) = start_logged(&["--upstream", &url]).await;
    (up, relay, log)
}

async fn expect_raw_status(
    addr: SocketAddr,
    raw: Vec<u8>,
    status: u16,
) -> Result<RawReply, String> {
    let reply = raw_roundtrip(addr, raw, Duration::from_secs(5)).await?;
    ensure!(
        reply.status() == Some(status),
        "want {status}, got {:?} (reset: {})",
        &reply.text().chars().take(300).collect::<String>(),
        reply.reset
    );
    Ok(reply)
}

async fn limits_big_header() -> CaseResult {
    let (up, relay, _log) = limits_relay().await;
    let mut raw = b"GET /ok HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    raw.extend(std::iter::repeat_n(b'a', 70 * 1024));
    raw.extend_from_slice(b"\r\n\r\n");
    expect_raw_status(relay.listen, raw, 431).await?;
    ensure!(up.request_count() == 0, "the upstream got the request");
    settled(relay.admin, true).await?;
    stop_relay(relay).await;
    Ok(())
}

async fn limits_many_headers() -> CaseResult {
    let (up, relay, _log) = limits_relay().await;
    let mut raw = String::from("GET /ok HTTP/1.1\r\nHost: x\r\n");
    for i in 0..150 {
        raw.push_str(&format!("X-H{i}: v\r\n"));
    }
    raw.push_str("\r\n");
    expect_raw_status(relay.listen, raw.into_bytes(), 431).await?;
    ensure!(up.request_count() == 0, "the upstream got the request");
    settled(relay.admin, true).await?;
    stop_relay(relay).await;
    Ok(())
}

async fn limits_long_uri() -> CaseResult {
    let (up, relay, mut log) = limits_relay().await;
    let path = format!("/v1/chat/completions?q={}", "a".repeat(9 * 1024));
    let r = send(relay.listen, post(&path, "{}")).await?;
    expect_error(&r, 414, "uri_too_long")?;
    ensure!(up.request_count() == 0, "the upstream got the request");
    log.find("for the 414", |v| v["status"] == 414).await?;
    settled(relay.admin, true).await?;
    stop_relay(relay).await;
    Ok(())
}

async fn limits_body() -> CaseResult {
    let up = Upstream::start(Mode::Http1, |req: Recorded| async move {
        json_response(200, format!(r#"{{"got":{}}}"#, req.body.len()))
    })
    .await;
    let url = up.url();
    let (relay, _log) =
        start_logged(&["--upstream", &url, "--server-max-request-body", "1KiB"]).await;

    // Announced too large: refused at once, before any body byte is sent.
    let head = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n";
    let s = TcpStream::connect(relay.listen)
        .await
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let (r, mut w) = s.into_split();
    w.write_all(head.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut r = r;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(2).any(|w| w == b"}}") {
        let n = tokio::time::timeout(Duration::from_secs(2), r.read(&mut buf))
            .await
            .map_err(|_| "no 413 before the body was sent")?
            .map_err(|e| e.to_string())?;
        ensure!(n > 0, "closed without an answer");
        got.extend_from_slice(&buf[..n]);
    }
    let fast = start.elapsed();
    let text = String::from_utf8_lossy(&got).into_owned();
    ensure!(text.starts_with("HTTP/1.1 413"), "{text}");
    ensure!(
        fast < Duration::from_millis(500),
        "413 took {fast:?} without the body"
    );
    drop((r, w));

    // Chunked, buffered (JSON): refused while reading, upstream untouched.
    for ct in ["application/json", "text/plain"] {
        let (tx, body) = channel_body();
        let feeder = tokio::spawn(async move {
            for _ in 0..8 {
                if tx.send(Ok(Bytes::from(vec![b'y'; 512]))).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        let req = Request::post("/v1/chat/completions")
            .header("content-type", ct)
            .body(body)
            .unwrap();
        let mut c = Client::h1(relay.listen).await;
        match c.send(req).await {
            Ok(res) => {
                let status = res.status().as_u16();
                let (frames, _) = read_frames(res.into_body()).await;
                ensure!(
                    status == 413,
                    "chunked {ct} over the limit: {status} {}",
                    String::from_utf8_lossy(&joined(&frames))
                );
            }
            Err(e) => note(format!("chunked {ct}: upload cut ({e})")),
        }
        feeder.abort();
        if ct == "application/json" {
            ensure!(
                up.connections() == 0,
                "a buffered oversized body reached the upstream"
            );
        }
    }
    sleep(200).await;
    ensure!(
        !up.requests()
            .iter()
            .any(|r| r.body_complete && r.body.len() > 1024),
        "the upstream received a whole oversized body"
    );
    note(format!("413 in {} ms without the body", ms(fast)));
    settled(relay.admin, true).await?;
    stop_relay(relay).await;
    Ok(())
}

async fn limits_max_connections() -> CaseResult {
    let stops = Arc::new(Stops::default());
    let up = endless_upstream(Mode::Http1, Duration::from_millis(50), stops).await;
    let url = up.url();
    let (relay, _log) = start_logged(&[
        "--upstream",
        &url,
        "--heartbeat",
        HB,
        "--server-max-connections",
        "4",
    ])
    .await;
    let mut live = Vec::new();
    for _ in 0..4 {
        let mut c = Client::h1(relay.listen).await;
        let res = c
            .send(stream_post("/v1/chat/completions"))
            .await
            .map_err(|e| format!("send: {e}"))?;
        let mut body = res.into_body();
        frames(&mut body, 1).await?;
        live.push((c, body));
    }
    let raw = format!("GET /ok HTTP/1.1\r\nHost: {}\r\n\r\n", relay.listen);
    let reply = expect_raw_status(relay.listen, raw.into_bytes(), 503).await?;
    let lower = reply.text().to_ascii_lowercase();
    ensure!(lower.contains("retry-after: 1"), "{lower}");
    ensure!(reply.closed.is_some(), "the refused connection stays open");
    for (_, body) in &mut live {
        frames(body, 3).await?;
    }
    let m = scrape(relay.admin).await?;
    ensure!(
        value(&m, "sse_edge_connections_refused_total") == 1.0,
        "refusals counted"
    );
    drop(live);
    settled(relay.admin, true).await?;
    healthy(relay.listen, "/ok").await?;
    stop_relay(relay).await;
    Ok(())
}

async fn limits_max_requests() -> CaseResult {
    let stops = Arc::new(Stops::default());
    let up = endless_upstream(Mode::Http1, Duration::from_millis(50), stops).await;
    let url = up.url();
    let (relay, _log) = start_logged(&[
        "--upstream",
        &url,
        "--heartbeat",
        HB,
        "--server-max-requests",
        "2",
    ])
    .await;
    let mut live = Vec::new();
    for _ in 0..2 {
        let mut c = Client::h1(relay.listen).await;
        let res = c
            .send(stream_post("/v1/chat/completions"))
            .await
            .map_err(|e| format!("send: {e}"))?;
        let mut body = res.into_body();
        frames(&mut body, 1).await?;
        live.push((c, body));
    }
    for (path, code) in [
        ("/v1/chat/completions", "overloaded"),
        ("/v1/messages", "overloaded"),
    ] {
        let r = send(relay.listen, post(path, "{}")).await?;
        expect_error(&r, 503, code)?;
        ensure!(r.header("retry-after") == Some("1"), "{:?}", r.headers);
        if path == "/v1/messages" {
            let v: Value = serde_json::from_slice(&r.body).map_err(|e| e.to_string())?;
            ensure!(
                v["error"]["type"] == "overloaded_error",
                "Anthropic shape: {v}"
            );
        }
    }
    for (_, body) in &mut live {
        frames(body, 2).await?;
    }
    drop(live);
    settled(relay.admin, true).await?;
    healthy(relay.listen, "/ok").await?;
    stop_relay(relay).await;
    Ok(())
}

// ================================================================ smuggling

async fn smuggling_relay() -> (Upstream, sse_edge::Running) {
    let up = Upstream::start(Mode::Http1, |req: Recorded| async move {
        json_response(200, format!(r#"{{"got":{}}}"#, req.body.len()))
    })
    .await;
    let relay = start_relay_to(&up, &[]).await;
    (up, relay)
}

/// Sends `raw`; wants one `status` answer, the connection closed, and no
/// request at the upstream.
async fn refused_raw(raw: &str, status: u16) -> CaseResult {
    let (up, relay) = smuggling_relay().await;
    let reply = expect_raw_status(relay.listen, raw.as_bytes().to_vec(), status).await?;
    ensure!(
        reply.closed.is_some(),
        "connection left open after {status}"
    );
    ensure!(
        reply.responses() == 1,
        "{} responses: {:?}",
        reply.responses(),
        reply.text()
    );
    sleep(100).await;
    ensure!(
        up.request_count() == 0,
        "the upstream saw {:?}",
        up.requests()
            .iter()
            .map(|r| r.target.clone())
            .collect::<Vec<_>>()
    );
    settled(relay.admin, true).await?;
    stop_relay(relay).await;
    Ok(())
}

const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";

/// CL + TE in both orders. RFC 9112 §6.1 lets a server either refuse such
/// a request or frame it by Transfer-Encoding alone, closing the connection
/// after its answer. Either way nothing after the chunked body may be read
/// as a request, and what the upstream gets is framed by TE only.
async fn smuggle_cl_te() -> CaseResult {
    let (up, relay) = smuggling_relay().await;
    let orders = [
        "Content-Length: 5\r\nTransfer-Encoding: chunked",
        "Transfer-Encoding: chunked\r\nContent-Length: 5",
    ];
    let mut statuses = Vec::new();
    for framing in orders {
        let before = up.request_count();
        let raw = format!(
            "POST /v1/x HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n{framing}\r\n\r\n0\r\n\r\n{SMUGGLED}"
        );
        let reply = raw_roundtrip(relay.listen, raw.into_bytes(), Duration::from_secs(3)).await?;
        ensure!(
            reply.closed.is_some(),
            "{framing:?}: connection left open after a CL+TE request"
        );
        ensure!(
            reply.responses() == 1,
            "{framing:?}: {} responses: {:?}",
            reply.responses(),
            reply.text()
        );
        sleep(100).await;
        let seen: Vec<Recorded> = up.requests().split_off(before);
        ensure!(
            !seen.iter().any(|r| r.target.contains("smuggled")),
            "{framing:?}: the smuggled request reached the upstream"
        );
        match reply.status() {
            Some(400) => ensure!(seen.is_empty(), "{framing:?}: 400, yet forwarded"),
            Some(200) => {
                ensure!(
                    seen.len() == 1 && seen[0].body.is_empty() && seen[0].body_complete,
                    "{framing:?}: the upstream got {:?}",
                    seen.iter()
                        .map(|r| (&r.target, r.body.len()))
                        .collect::<Vec<_>>()
                );
                ensure!(
                    seen[0].header("content-length").is_none_or(|v| v == "0"),
                    "{framing:?}: the client's Content-Length reached the upstream"
                );
                ensure!(
                    reply
                        .text()
                        .to_ascii_lowercase()
                        .contains("connection: close"),
                    "{framing:?}: answered without closing"
                );
            }
            other => return Err(format!("{framing:?}: status {other:?}")),
        }
        statuses.push(reply.status().unwrap_or(0));
    }
    // hyper frames CL+TE by Transfer-Encoding, drops Content-Length and
    // closes after the answer (RFC 9112 §6.1); the checks above show nothing
    // was smuggled either way.
    note(format!("CL+TE statuses {statuses:?}"));
    settled(relay.admin, true).await?;
    stop_relay(relay).await;
    Ok(())
}

async fn smuggle_duplicate_cl() -> CaseResult {
    let raw = format!(
        "POST /v1/x HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd{SMUGGLED}"
    );
    refused_raw(&raw, 400).await
}

async fn smuggle_te_not_chunked() -> CaseResult {
    for te in ["gzip", "chunked, gzip"] {
        let raw = format!(
            "POST /v1/x HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nTransfer-Encoding: {te}\r\n\r\n0\r\n\r\n{SMUGGLED}"
        );
        refused_raw(&raw, 400)
            .await
            .map_err(|e| format!("Transfer-Encoding: {te}: {e}"))?;
    }
    Ok(())
}

async fn smuggle_obs_fold() -> CaseResult {
    let raw = "GET /v1/x HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n  b\r\n\r\n";
    refused_raw(raw, 400).await
}

async fn smuggle_bare_lf() -> CaseResult {
    let (up, relay) = smuggling_relay().await;
    // Chunk lines ending in a bare LF; the chunk's data looks like a request.
    let inner = "GET /smuggled HTTP/1.1\r\n\r\n";
    let raw = format!(
        "POST /v1/x HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\n{inner}\n0\n\n{SMUGGLED}",
        inner.len()
    );
    let reply = raw_roundtrip(relay.listen, raw.into_bytes(), Duration::from_secs(3)).await?;
    sleep(200).await;
    let seen = up.requests();
    ensure!(
        !seen.iter().any(|r| r.target.contains("smuggled")),
        "a smuggled request reached the upstream: {:?}",
        seen.iter().map(|r| &r.target).collect::<Vec<_>>()
    );
    match reply.status() {
        Some(400) => {
            ensure!(
                seen.is_empty(),
                "400, yet the upstream saw {} request(s)",
                seen.len()
            );
            note("bare-LF chunks refused with 400");
        }
        Some(200) => {
            ensure!(seen.len() == 1, "upstream saw {} requests", seen.len());
            ensure!(
                seen[0].body == inner.as_bytes(),
                "the upstream body is not the decoded chunk: {:?}",
                seen[0].body
            );
            note("bare-LF chunks accepted; upstream got exactly the decoded body");
        }
        other => return Err(format!("status {other:?}: {:?}", reply.text())),
    }
    settled(relay.admin, true).await?;
    stop_relay(relay).await;
    Ok(())
}

async fn smuggle_upgrade_h2c() -> CaseResult {
    let (up, relay) = smuggling_relay().await;
    let settings = "AAMAAABkAARAAAAAAAIAAAAA";
    let compliant = format!(
        "GET /v1/a HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: {settings}\r\n\r\n"
    );
    let bare = format!(
        "GET /v1/b HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nHTTP2-Settings: {settings}\r\n\r\n"
    );
    for raw in [compliant, bare] {
        let mut s = TcpStream::connect(relay.listen)
            .await
            .map_err(|e| e.to_string())?;
        s.write_all(raw.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let head = tokio::time::timeout(Duration::from_secs(3), read_head(&mut s))
            .await
            .map_err(|_| "no answer to an Upgrade: h2c request")?;
        let text = String::from_utf8_lossy(&head).into_owned();
        ensure!(
            text.starts_with("HTTP/1.1 200"),
            "Upgrade: h2c must be answered as plain HTTP/1.1: {text}"
        );
        ensure!(
            !text.to_ascii_lowercase().contains("upgrade"),
            "the answer offers an upgrade: {text}"
        );
    }
    up.wait_requests(2).await;
    for r in up.requests() {
        ensure!(
            r.header("upgrade").is_none(),
            "{} reached the upstream with Upgrade",
            r.target
        );
        let settings = r.header("http2-settings").is_some();
        // RFC 7540 §3.2.1: a client sending HTTP2-Settings must list it in
        // Connection; when it does, the field is hop-by-hop and removed.
        ensure!(
            !(settings && r.target == "/v1/a"),
            "HTTP2-Settings listed in Connection reached the upstream"
        );
        ensure!(
            !settings,
            "HTTP2-Settings not listed in Connection reached the upstream ({})",
            r.target
        );
    }
    settled(relay.admin, true).await?;
    stop_relay(relay).await;
    Ok(())
}

async fn smuggle_connect() -> CaseResult {
    let (up, relay) = smuggling_relay().await;
    let reply = expect_raw_status(
        relay.listen,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nConnection: close\r\n\r\n"
            .to_vec(),
        405,
    )
    .await?;
    ensure!(
        reply.text().to_ascii_lowercase().contains("allow:"),
        "{:?}",
        reply.text()
    );
    // The same over HTTP/2 (CONNECT carries only :authority there).
    let tcp = TcpStream::connect(relay.listen)
        .await
        .map_err(|e| e.to_string())?;
    let (mut tx, conn) = h2::client::handshake(tcp)
        .await
        .map_err(|e| format!("h2 handshake: {e}"))?;
    let conn = tokio::spawn(conn);
    let req = Request::builder()
        .method(Method::CONNECT)
        .uri("example.com:443")
        .body(())
        .unwrap();
    let (res, _stream) = tx
        .send_request(req, false)
        .map_err(|e| format!("h2 CONNECT: {e}"))?;
    let res = tokio::time::timeout(Duration::from_secs(3), res)
        .await
        .map_err(|_| "no answer to h2 CONNECT")?
        .map_err(|e| format!("h2 CONNECT: {e}"))?;
    ensure!(res.status() == 405, "h2 CONNECT: {}", res.status());
    drop(tx);
    conn.abort();
    sleep(100).await;
    ensure!(up.request_count() == 0, "the upstream saw a CONNECT");
    settled(relay.admin, true).await?;
    stop_relay(relay).await;
    Ok(())
}

// ================================================================ h2

async fn sse_and_ok_upstream() -> Upstream {
    Upstream::start(Mode::Http1, |req: Recorded| async move {
        if req.target == "/ok" || req.target == "/v1/models" {
            return json_response(200, r#"{"ok":true}"#);
        }
        sse_response(stream_frames(
            sse_events(10),
            Duration::from_millis(50),
            None,
        ))
    })
    .await
}

/// A streaming request on its own HTTP/2 connection that must complete.
async fn healthy_h2_stream(addr: SocketAddr) -> Result<Duration, String> {
    let start = Instant::now();
    let mut c = Client::h2(addr).await;
    let res = c
        .send(stream_post("/v1/chat/completions"))
        .await
        .map_err(|e| format!("healthy h2 stream: {e}"))?;
    let (frames, err) = read_frames(res.into_body()).await;
    ensure!(err.is_none(), "healthy h2 stream failed: {err:?}");
    let body = joined(&frames);
    ensure!(
        body == concat(&sse_events(10)),
        "healthy h2 stream incomplete: {:?}",
        String::from_utf8_lossy(&body)
    );
    Ok(start.elapsed())
}

/// Requests the relay has answered (every status, every route).
fn requests_answered(m: &str) -> f64 {
    m.lines()
        .filter(|l| l.starts_with("sse_edge_requests_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// CPU time (user + system) this process has used so far.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    // After the command: field 3 (state) is index 0; utime and stime are
    // fields 14 and 15, in clock ticks (100 per second on Linux).
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((tick(11) + tick(12)) * 10)
}

/// Opens and resets `n` streams with the h2 crate's client, 100 at a time:
/// each batch's HEADERS are given 2 ms to reach the wire (h2 drops the
/// HEADERS of a stream reset before they were written, so nothing would
/// reach the server), then all of them are reset. Returns how many were
/// opened, and how the connection ended (GOAWAY or refused streams), if it
/// did.
async fn h2_client_open_and_reset(
    addr: SocketAddr,
    n: usize,
) -> Result<(usize, Option<String>), String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut tx, conn) = h2::client::handshake(tcp)
        .await
        .map_err(|e| format!("h2 handshake: {e}"))?;
    let conn = tokio::spawn(conn);
    let uri = format!("http://{addr}/ok");
    let mut opened = 0;
    let mut refused = None;
    'batches: while opened < n {
        let mut batch = Vec::new();
        for _ in 0..100 {
            if let Err(e) = std::future::poll_fn(|cx| tx.poll_ready(cx)).await {
                refused = Some(format!("stream refused: {e}"));
                break 'batches;
            }
            let req = Request::get(&uri).body(()).unwrap();
            match tx.send_request(req, false) {
                Ok(pair) => batch.push(pair),
                Err(e) => {
                    refused = Some(format!("stream refused: {e}"));
                    break 'batches;
                }
            }
        }
        sleep(2).await;
        for (_res, mut stream) in batch {
            stream.send_reset(h2::Reason::CANCEL);
            opened += 1;
        }
    }
    drop(tx);
    let ended = tokio::time::timeout(Duration::from_secs(10), conn)
        .await
        .map_err(|_| "the h2 client connection did not finish within 10 s")?
        .map_err(|e| e.to_string())?;
    Ok((opened, ended.err().map(|e| e.to_string()).or(refused)))
}

/// The same attack as raw frames, in batches: HEADERS (END_STREAM) +
/// RST_STREAM(CANCEL) pairs, so resets arrive before the server can accept
/// the streams. Returns the pairs written and the GOAWAY code, if any.
async fn raw_rapid_reset(addr: SocketAddr, n: usize) -> Result<(usize, Option<u32>), String> {
    let s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (r, mut w) = s.into_split();
    let goaway: GoawaySlot = Arc::default();
    let reader = tokio::spawn(read_until_goaway(r, goaway.clone()));
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(h2_frame(0x4, 0, 0, &[]));
    w.write_all(&out).await.map_err(|e| e.to_string())?;
    // :method GET, :scheme http, :path /ok (literal, not indexed).
    let block = [0x82, 0x86, 0x04, 0x03, b'/', b'o', b'k'];
    let mut sent = 0;
    while sent < n && goaway.lock().unwrap().is_none() {
        let mut batch = Vec::new();
        for _ in 0..100 {
            let id = u32::try_from(2 * sent + 1).unwrap();
            batch.extend(h2_frame(0x1, 0x5, id, &block));
            batch.extend(h2_frame(0x3, 0, id, &0x8u32.to_be_bytes()));
            sent += 1;
        }
        match tokio::time::timeout(Duration::from_secs(3), w.write_all(&batch)).await {
            Ok(Ok(())) => {}
            _ => break,
        }
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while goaway.lock().unwrap().is_none() && Instant::now() < deadline && !reader.is_finished() {
        sleep(10).await;
    }
    drop(w);
    reader.abort();
    let code = goaway.lock().unwrap().map(|(c, _)| c);
    Ok((sent, code))
}

async fn h2_rapid_reset() -> CaseResult {
    const STREAMS: usize = 2000;
    let up = sse_and_ok_upstream().await;
    let url = up.url();
    let (relay, _log) = start_logged(&["--upstream", &url, "--heartbeat", HB]).await;
    let healthy = tokio::spawn(healthy_h2_stream(relay.listen));
    let (cpu0, start) = (cpu_time(), Instant::now());
    let (opened, client_end) = h2_client_open_and_reset(relay.listen, STREAMS).await?;
    let client_took = start.elapsed();
    // Streams the relay's service saw, cancelled before an answer (499).
    let handled = metric_or_zero(
        &scrape(relay.admin).await?,
        "sse_edge_requests_total",
        &[("status", "499")],
    );
    let (pairs, code) = raw_rapid_reset(relay.listen, STREAMS).await?;
    let took = start.elapsed();
    let cpu = cpu_time().saturating_sub(cpu0);
    let healthy_took = healthy
        .await
        .map_err(|e| format!("healthy stream task: {e}"))??;
    ensure!(
        code.is_some() || client_end.is_some(),
        "{STREAMS} open+reset streams twice (h2 client, then batched raw frames) and the relay \
         neither sent GOAWAY nor refused a stream"
    );
    ensure!(
        took < Duration::from_secs(15),
        "the attack took {took:?}: the relay is not bounding its cost"
    );
    note(format!(
        "h2 client: {opened} streams opened+reset in {} ms ({handled} reached the relay's service and were cancelled there), {}; raw batches: GOAWAY {} after <= {pairs} pairs; \
         {} ms CPU in all, {} requests reached the upstream; healthy h2 stream {} ms",
        ms(client_took),
        client_end.unwrap_or_else(|| "no GOAWAY (each stream accepted, then cancelled)".to_owned()),
        code.map_or_else(|| "none".to_owned(), |c| format!("{c:#x}")),
        ms(cpu),
        up.request_count(),
        ms(healthy_took)
    ));
    settled(relay.admin, true).await?;
    stop_relay(relay).await;
    Ok(())
}

fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = Vec::with_capacity(9 + len);
    f.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// The GOAWAY error code a reader saw, and when.
type GoawaySlot = Arc<Mutex<Option<(u32, Instant)>>>;

/// Reads HTTP/2 frames until EOF, recording a GOAWAY in `slot` as soon as
/// it arrives; returns the GOAWAY code (if any) and when the socket closed.
async fn read_until_goaway(mut r: OwnedReadHalf, slot: GoawaySlot) -> (Option<u32>, Instant) {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                let code = slot.lock().unwrap().map(|(c, _)| c);
                return (code, Instant::now());
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        while buf.len() >= 9 {
            let len =
                (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            if buf[3] == 0x7 && len >= 8 {
                let c = &buf[9 + 4..9 + 8];
                let code = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
                slot.lock().unwrap().get_or_insert((code, Instant::now()));
            }
            buf.drain(..9 + len);
        }
    }
}

async fn h2_continuation_flood() -> CaseResult {
    const FRAMES: usize = 20_000;
    let up = sse_and_ok_upstream().await;
    let url = up.url();
    let relay = RelayProc::spawn(&[
        "--upstream",
        &url,
        "--heartbeat",
        HB,
        "--drain-timeout",
        "1s",
    ])
    .await;
    let pid = relay.pid();
    healthy(relay.listen, "/ok").await?;
    let rss0 = rss_kib(pid)?;

    let s = TcpStream::connect(relay.listen)
        .await
        .map_err(|e| e.to_string())?;
    let (r, mut w) = s.into_split();
    let reader = tokio::spawn(read_until_goaway(r, GoawaySlot::default()));
    let healthy_task = tokio::spawn(healthy_h2_stream(relay.listen));
    let start = Instant::now();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(h2_frame(0x4, 0, 0, &[])); // SETTINGS
    // HEADERS without END_HEADERS: :method GET, :scheme http, :path /.
    out.extend(h2_frame(0x1, 0x1, 1, &[0x82, 0x86, 0x84]));
    // Junk literal header fields, 1 KiB per CONTINUATION frame.
    let mut junk = Vec::with_capacity(1024);
    while junk.len() + 70 <= 1024 {
        junk.extend_from_slice(&[0x00, 0x03, b'x', b'-', b'j', 0x3f]);
        junk.extend(std::iter::repeat_n(b'j', 0x3f));
    }
    let cont = h2_frame(0x9, 0, 1, &junk);
    let mut sent = 0;
    let mut write_err = None;
    if let Err(e) = w.write_all(&out).await {
        write_err = Some(e.to_string());
    }
    let mut batch = Vec::with_capacity(cont.len() * 64);
    while write_err.is_none() && sent < FRAMES {
        batch.clear();
        for _ in 0..64 {
            batch.extend_from_slice(&cont);
        }
        match tokio::time::timeout(Duration::from_secs(3), w.write_all(&batch)).await {
            Ok(Ok(())) => sent += 64,
            Ok(Err(e)) => write_err = Some(e.to_string()),
            Err(_) => write_err = Some("write stalled 3 s".to_owned()),
        }
        if reader.is_finished() {
            break;
        }
    }
    let (goaway, closed_at) = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .map_err(|_| format!("connection still open after {sent} CONTINUATION frames"))?
        .map_err(|e| e.to_string())?;
    drop(w);
    let closed = closed_at.saturating_duration_since(start);
    let peak = rss_kib(pid)?;
    let healthy_took = healthy_task.await.map_err(|e| e.to_string())??;
    ensure!(
        closed < Duration::from_secs(2),
        "the flooding connection was closed only after {closed:?}"
    );
    ensure!(
        sent < FRAMES,
        "all {FRAMES} CONTINUATION frames ({} MiB) were accepted",
        FRAMES * cont.len() / (1024 * 1024)
    );
    let growth = peak.saturating_sub(rss0);
    ensure!(growth < 8 * 1024, "relay RSS grew by {}", mib(growth));
    note(format!(
        "closed after {} ms and <= {sent} frames ({}), GOAWAY {}, RSS {} -> {}, healthy h2 stream {} ms",
        ms(closed),
        write_err.unwrap_or_else(|| "writes ok".to_owned()),
        goaway.map_or_else(|| "none".to_owned(), |c| format!("code {c:#x}")),
        mib(rss0),
        mib(peak),
        ms(healthy_took)
    ));
    settled(relay.admin, true).await?;
    stop_proc(relay).await;
    Ok(())
}

// ================================================================ tls

struct TlsRelay {
    _files: TempDir,
    _up: Upstream,
    relay: sse_edge::Running,
}

async fn tls_relay() -> TlsRelay {
    let leaf = test_ca().leaf("relay.test");
    let files = TempDir::new("faults-tls");
    let cert = files.write("tls.crt", leaf.cert_pem.as_bytes());
    let key = files.write("tls.key", leaf.key_pem.as_bytes());
    let up = Upstream::ok(Mode::Http1).await;
    let relay = start_relay_to(
        &up,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--tls-handshake-timeout",
            "1s",
            "--server-header-read-timeout",
            "1s",
            "--server-idle-timeout",
            "1s",
        ],
    )
    .await;
    TlsRelay {
        _files: files,
        _up: up,
        relay,
    }
}

/// TLS requests in a loop until `stop`; the slowest one.
fn tls_prober(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Result<(usize, Duration), String>> {
    tokio::spawn(async move {
        let (mut n, mut worst) = (0, Duration::ZERO);
        while !stop.load(Ordering::Relaxed) {
            let start = Instant::now();
            let r = tokio::time::timeout(Duration::from_secs(3), async {
                let (mut c, _) = Client::tls(addr, &[b"h2", b"http/1.1"]).await;
                c.get("/ok").await
            })
            .await
            .map_err(|_| "a TLS client hung during the fault".to_owned())?;
            ensure!(r.status == 200, "TLS client got {}", r.status);
            worst = worst.max(start.elapsed());
            n += 1;
            sleep(50).await;
        }
        ensure!(n > 0, "no TLS request completed");
        ensure!(
            worst < Duration::from_secs(1),
            "slowest TLS request during the fault: {worst:?}"
        );
        Ok((n, worst))
    })
}

async fn handshake_errors(admin: SocketAddr, at_least: f64) -> Result<f64, String> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let m = scrape(admin).await?;
        let n = value(&m, "sse_edge_tls_handshake_errors_total");
        if n >= at_least {
            return Ok(n);
        }
        ensure!(
            Instant::now() < deadline,
            "sse_edge_tls_handshake_errors_total {n}, want >= {at_least}"
        );
        sleep(20).await;
    }
}

async fn finish_tls(
    t: TlsRelay,
    stop: Arc<AtomicBool>,
    prober: tokio::task::JoinHandle<Result<(usize, Duration), String>>,
) -> CaseResult {
    stop.store(true, Ordering::Relaxed);
    let (n, worst) = prober.await.map_err(|e| e.to_string())??;
    note(format!(
        "{n} TLS requests alongside, slowest {} ms",
        ms(worst)
    ));
    settled(t.relay.admin, true).await?;
    stop_relay(t.relay).await;
    Ok(())
}

/// A completed handshake, then silence: with ALPN `http/1.1` hyper's head
/// deadline applies; without ALPN (protocol sniffed) or with `h2` the relay
/// has no deadline of its own, which is reported.
async fn tls_idle_after_handshake() -> CaseResult {
    let t = tls_relay().await;
    let stop = Arc::new(AtomicBool::new(false));
    let prober = tls_prober(t.relay.listen, stop.clone());
    let addr = t.relay.listen;
    let idle = |alpn: &'static [&'static [u8]]| async move {
        let (mut tls, _) = tls_connect(addr, alpn).await;
        let start = Instant::now();
        let mut buf = [0u8; 1024];
        let read = tokio::time::timeout(Duration::from_secs(4), async {
            loop {
                match tls.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        read.ok().map(|()| start.elapsed())
    };
    let (h1, none, h2) = tokio::join!(idle(&[b"http/1.1"]), idle(&[]), idle(&[b"h2"]));
    let h1 = h1.ok_or("an idle TLS http/1.1 connection is still open after 4 s")?;
    ensure!(
        h1 >= Duration::from_millis(900) && h1 < Duration::from_millis(2500),
        "idle TLS http/1.1 connection closed after {h1:?}, want ~1 s"
    );
    let mut times = vec![format!("http/1.1 {} ms", ms(h1))];
    for (what, closed) in [("without ALPN", none), ("with ALPN h2", h2)] {
        let t = closed.ok_or(format!(
            "an idle TLS connection {what} is still open after 4 s"
        ))?;
        ensure!(
            t < Duration::from_millis(3000),
            "idle TLS {what} closed after {t:?}"
        );
        times.push(format!("{what} {} ms", ms(t)));
    }
    note(format!("closed: {}", times.join(", ")));
    finish_tls(t, stop, prober).await
}

async fn tls_alpn_h3_only() -> CaseResult {
    let t = tls_relay().await;
    let stop = Arc::new(AtomicBool::new(false));
    let prober = tls_prober(t.relay.listen, stop.clone());
    let tcp = TcpStream::connect(t.relay.listen)
        .await
        .map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(client_tls_config(&[b"h3"]));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    match connector.connect(name, tcp).await {
        Err(e) => {
            let text = format!("{e:?}");
            ensure!(
                text.contains("NoApplicationProtocol"),
                "refused, but not with no_application_protocol: {text}"
            );
            let n = handshake_errors(t.relay.admin, 1.0).await?;
            note(format!(
                "refused with no_application_protocol, counted ({n})"
            ));
        }
        Ok(tls) => {
            let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
            ensure!(alpn.is_none(), "negotiated {alpn:?} for an h3-only offer");
            let mut c = Client::over(tls, false, "localhost".into(), true).await;
            let r = c.get("/ok").await;
            ensure!(r.status == 200, "http/1.1 fallback: {}", r.status);
            note("completed without ALPN, served as HTTP/1.1");
        }
    }
    finish_tls(t, stop, prober).await
}

async fn tls_garbage_hello() -> CaseResult {
    let t = tls_relay().await;
    let stop = Arc::new(AtomicBool::new(false));
    let prober = tls_prober(t.relay.listen, stop.clone());
    let mut times = Vec::new();
    for raw in [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        pattern(600, 7),
    ] {
        let reply = raw_roundtrip(t.relay.listen, raw, Duration::from_secs(3)).await?;
        let closed = reply
            .closed
            .ok_or("garbage ClientHello: connection still open after 3 s")?;
        ensure!(
            closed < Duration::from_millis(500),
            "garbage ClientHello closed only after {closed:?}"
        );
        ensure!(
            reply.bytes.len() < 64,
            "the relay answered garbage with {} bytes",
            reply.bytes.len()
        );
        times.push(ms(closed));
    }
    let n = handshake_errors(t.relay.admin, 2.0).await?;
    note(format!("closed after {times:?} ms, counted ({n})"));
    finish_tls(t, stop, prober).await
}

async fn tls_stalled_handshake() -> CaseResult {
    let t = tls_relay().await;
    let stop = Arc::new(AtomicBool::new(false));
    let prober = tls_prober(t.relay.listen, stop.clone());
    // Nothing at all, and a record header promising a ClientHello that
    // never comes in full.
    let silent = raw_roundtrip(t.relay.listen, Vec::new(), Duration::from_secs(4));
    let partial = raw_roundtrip(
        t.relay.listen,
        vec![
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ],
        Duration::from_secs(4),
    );
    let (silent, partial) = tokio::join!(silent, partial);
    let mut times = Vec::new();
    for (what, reply) in [("silent", silent?), ("partial", partial?)] {
        let closed = reply
            .closed
            .ok_or(format!("{what} handshake still open after 4 s"))?;
        ensure!(
            closed >= Duration::from_millis(900) && closed < Duration::from_millis(2500),
            "{what} handshake closed after {closed:?}, want ~1 s"
        );
        times.push(format!("{what} {} ms", ms(closed)));
    }
    let n = handshake_errors(t.relay.admin, 2.0).await?;
    note(format!("closed: {}, counted ({n})", times.join(", ")));
    finish_tls(t, stop, prober).await
}

// ================================================================ soak

struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn seed_of(body: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(body);
    text.split("\"seed\":")
        .nth(1)
        .map(|rest| {
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|d| d.parse().ok())
        .unwrap_or(1)
}

fn tick(i: u64) -> Bytes {
    Bytes::from(format!("data: {{\"i\":{i}}}\n\n"))
}

/// The soak upstream: what it does with a request follows from the seed in
/// the request body.
async fn soak_upstream() -> Upstream {
    Upstream::start(Mode::Http1, |req: Recorded| async move {
        if req.target == "/ok" {
            return json_response(200, r#"{"ok":true}"#);
        }
        let mut rng = XorShift::new(seed_of(&req.body));
        let kind = rng.below(100);
        let n = 3 + rng.below(8);
        let (tx, body) = channel_body();
        if (84..92).contains(&kind) {
            return json_response(503, r#"{"error":{"message":"busy"}}"#);
        }
        if kind >= 92 {
            // Slow headers: the relay commits early.
            tokio::time::sleep(Duration::from_millis(350 + rng.below(200))).await;
        }
        let gaps: Vec<u64> = (0..n)
            .map(|_| {
                if (40..60).contains(&kind) {
                    50 + rng.below(300)
                } else {
                    rng.below(4)
                }
            })
            .collect();
        tokio::spawn(async move {
            for (i, gap) in gaps.into_iter().enumerate() {
                if tx.send(Ok(tick(i as u64))).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(gap)).await;
            }
            let last = match kind {
                60..72 => Err(std::io::Error::other("reset mid-stream")),
                72..84 => return, // ends without [DONE]
                _ => Ok(Bytes::from_static(b"data: [DONE]\n\n")),
            };
            let _ = tx.send(last).await;
        });
        sse_response(body)
    })
    .await
}

#[derive(Default)]
struct Tally {
    complete: AtomicUsize,
    error_event: AtomicUsize,
    error_status: AtomicUsize,
    cancelled: AtomicUsize,
    bad: Mutex<Vec<String>>,
}

impl Tally {
    fn total(&self) -> usize {
        self.complete.load(Ordering::Relaxed)
            + self.error_event.load(Ordering::Relaxed)
            + self.error_status.load(Ordering::Relaxed)
            + self.cancelled.load(Ordering::Relaxed)
            + self.bad.lock().unwrap().len()
    }

    fn bad(&self, what: String) {
        self.bad.lock().unwrap().push(what);
    }
}

/// One client's outcome, checked: a complete stream ends with [DONE] and
/// carries the upstream's events in order; otherwise its last event is an
/// error event.
fn judge(body: &[u8], tally: &Tally) {
    let events = whatwg::parse(body);
    let Some(last) = events.last() else {
        return tally.bad(format!(
            "no event at all: {:?}",
            String::from_utf8_lossy(body)
        ));
    };
    let ticks: Vec<&str> = events
        .iter()
        .map(|e| e.data.as_str())
        .filter(|d| d.starts_with("{\"i\""))
        .collect();
    for (i, d) in ticks.iter().enumerate() {
        if *d != format!("{{\"i\":{i}}}") {
            return tally.bad(format!("event {i} out of order or damaged: {d}"));
        }
    }
    if last.data == "[DONE]" {
        tally.complete.fetch_add(1, Ordering::Relaxed);
    } else if error_event_code(body).is_some() {
        tally.error_event.fetch_add(1, Ordering::Relaxed);
    } else {
        tally.bad(format!(
            "ended cleanly without its terminal event: {:?}",
            String::from_utf8_lossy(&body[body.len().saturating_sub(200)..])
        ));
    }
}

async fn soak_worker(addr: SocketAddr, seed: u64, until: Instant, tally: Arc<Tally>) {
    use http_body_util::BodyExt;
    let mut rng = XorShift::new(seed);
    let mut client: Option<Client> = None;
    while Instant::now() < until {
        let c = match &mut client {
            Some(c) => c,
            None => client.insert(Client::h1(addr).await),
        };
        let body = format!(
            r#"{{"model":"m","stream":true,"seed":{},"messages":[]}}"#,
            rng.next() >> 1
        );
        let cancel_after = (rng.below(100) < 15).then(|| 1 + rng.below(3) as usize);
        let res = match c.send(post("/v1/chat/completions", body)).await {
            Ok(res) => res,
            Err(e) => {
                tally.bad(format!("request failed: {e}"));
                client = None;
                continue;
            }
        };
        let status = res.status().as_u16();
        let mut body = res.into_body();
        if status != 200 {
            match body.collect().await.map(|b| b.to_bytes()) {
                Ok(b) if status == 503 && b.starts_with(b"{") => {
                    tally.error_status.fetch_add(1, Ordering::Relaxed);
                }
                other => tally.bad(format!("status {status}: {other:?}")),
            }
            continue;
        }
        let mut got = Vec::new();
        let mut ticks = 0;
        let mut cancelled = false;
        loop {
            match body.frame().await {
                None => break,
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        ticks += d.windows(5).filter(|w| *w == b"{\"i\":").count();
                        got.extend_from_slice(&d);
                    }
                    if cancel_after.is_some_and(|k| ticks >= k) {
                        cancelled = true;
                        break;
                    }
                }
                Some(Err(e)) => {
                    tally.bad(format!("body failed: {e}"));
                    client = None;
                    break;
                }
            }
        }
        if cancelled {
            // Leaves mid-stream: the connection goes with it.
            tally.cancelled.fetch_add(1, Ordering::Relaxed);
            client = None;
        } else if client.is_some() {
            judge(&got, &tally);
        }
    }
}

/// `workers` clients for `secs`, then all of them gone.
async fn soak_phase(addr: SocketAddr, workers: u64, secs: u64, seed: u64, tally: &Arc<Tally>) {
    let until = Instant::now() + Duration::from_secs(secs);
    let mut set = tokio::task::JoinSet::new();
    for w in 0..workers {
        set.spawn(soak_worker(addr, seed + w, until, tally.clone()));
    }
    while let Some(res) = set.join_next().await {
        if let Err(e) = res {
            tally.bad(format!("worker died: {e}"));
        }
    }
}

async fn soak_mixed() -> CaseResult {
    const WORKERS: u64 = 200;
    const MAX_IDLE: usize = 16;
    let up = soak_upstream().await;
    let url = up.url();
    let max_idle = MAX_IDLE.to_string();
    let relay = RelayProc::spawn(&[
        "--upstream",
        &url,
        "--heartbeat",
        HB,
        "--retry-attempts",
        "1",
        "--retry-backoff",
        "20ms",
        "--upstream-max-idle-per-origin",
        &max_idle,
        "--log-access-log",
        "false",
        "--drain-timeout",
        "1s",
    ])
    .await;
    let pid = relay.pid();

    let warm = Arc::new(Tally::default());
    soak_phase(relay.listen, WORKERS, 5, 1, &warm).await;
    settled(relay.admin, true).await?;
    let rss_warm = rss_kib(pid)?;

    // Two measured halves: a leak keeps growing, allocator warm-up does not.
    let tally = Arc::new(Tally::default());
    let sampler_stop = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn({
        let (admin, stop) = (relay.admin, sampler_stop.clone());
        async move {
            let mut peak = 0.0f64;
            while !stop.load(Ordering::Relaxed) {
                if let Ok(m) = scrape(admin).await {
                    for v in per_origin(&m, "sse_edge_upstream_connections") {
                        peak = peak.max(v);
                    }
                }
                sleep(250).await;
            }
            peak
        }
    });
    soak_phase(relay.listen, WORKERS, 8, 1_000_000, &tally).await;
    settled(relay.admin, true).await?;
    let rss_half = rss_kib(pid)?;
    soak_phase(relay.listen, WORKERS, 8, 2_000_000, &tally).await;
    sampler_stop.store(true, Ordering::Relaxed);
    let peak_conns = sampler.await.map_err(|e| e.to_string())?;
    let m = settled(relay.admin, true).await?;
    let rss_after = rss_kib(pid)?;

    let bad = tally.bad.lock().unwrap().clone();
    let warm_bad = warm.bad.lock().unwrap().clone();
    let total = tally.total() + warm.total();
    let answered = requests_answered(&m);
    let idle: f64 = per_origin(&m, "sse_edge_upstream_idle_connections")
        .into_iter()
        .sum();
    let summary = format!(
        "{total} streams ({} in the measured 16 s): {} complete, {} error event, {} 503, {} cancelled, {} bad; RSS warm {} -> half {} -> after {}; upstream conns peak {peak_conns}, idle {idle}",
        tally.total(),
        tally.complete.load(Ordering::Relaxed),
        tally.error_event.load(Ordering::Relaxed),
        tally.error_status.load(Ordering::Relaxed),
        tally.cancelled.load(Ordering::Relaxed),
        bad.len() + warm_bad.len(),
        mib(rss_warm),
        mib(rss_half),
        mib(rss_after)
    );
    note(summary.clone());
    ensure!(
        bad.is_empty() && warm_bad.is_empty(),
        "unexpected client outcomes ({summary}): {:?}",
        bad.iter().chain(&warm_bad).take(5).collect::<Vec<_>>()
    );
    ensure!(
        tally.total() >= 2000,
        "only {} streams: {summary}",
        tally.total()
    );
    ensure!(
        answered == total as f64,
        "the relay counted {answered} requests, the clients made {total}"
    );
    ensure!(
        idle <= MAX_IDLE as f64,
        "{idle} idle upstream connections > {MAX_IDLE}"
    );
    ensure!(
        peak_conns <= (WORKERS as f64) + MAX_IDLE as f64,
        "upstream connections peaked at {peak_conns}"
    );
    let growth = rss_after.saturating_sub(rss_warm);
    ensure!(
        growth < 8 * 1024,
        "relay RSS grew by {} over the soak ({summary})",
        mib(growth)
    );
    stop_proc(relay).await;
    Ok(())
}
