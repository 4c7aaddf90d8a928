//! The mock model upstream: a hand-written HTTP/1.1 server on a
//! current-thread tokio runtime, so every write it makes is exactly one
//! `write(2)` of a known size.
//!
//! - `POST /v1/chat/completions` with `"stream": true`: `200
//!   text/event-stream`, chunked, OpenAI chat-completion chunk events, each
//!   event one chunk and one write. Query parameters: `events` (default 300,
//!   the last is `data: [DONE]`), `interval_us` (pause between events; 0
//!   writes them back to back, yielding between streams) and `hold=1` (send
//!   the first event, then stay silent until the peer closes or `/_release`).
//!   Each event's `id` is `chatcmpl-<unix ns at send>`, which the client
//!   subtracts from its receive time.
//! - `POST /v1/chat/completions` without it: a small `chat.completion` JSON
//!   answer with `content-length` (one write).
//! - `GET /v1/models`: a small JSON answer (used by the TLS handshake run).
//! - `POST /_release`: every held stream is closed by the upstream.
//!
//! Two more listeners serve the failover runs (`--flaky`, `--switchable`),
//! as primaries in front of this one:
//! - *flaky*: the same answers, except that a request with `x-bench-fail:
//!   503` gets `503` at once (OpenAI's "overloaded" body, keep-alive). Its
//!   send time is kept under the request's `x-bench-req` number; when the
//!   fallback (this main listener) then streams that request, its head
//!   carries `x-bench-failed-at: <unix ns>`, so the client can time the
//!   failover from the primary's failure, and `x-bench-primary-got-at`,
//!   when the primary had read the request. Any stream of a request with
//!   `x-bench-req` carries `x-bench-got-at`, when its server had read it.
//! - *switchable*: the same answers with `connection: close`; `POST
//!   /_switch?on=0` (on the main listener) closes its listening socket, so a
//!   connect is refused, and `on=1` listens again. Every answer closing its
//!   connection, no proxy holds a pooled one that would hide the refusal.
//!
//! `GET /_stats` (main listener): connections the flaky listener accepted
//! and `503`s it sent, one `name value` line each.
//!
//! Connections are kept alive (except on the switchable listener); request
//! bodies may be `content-length` or chunked.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::util::{Args, now_ns};

const JSON_ANSWER: &str = r#"{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion","created":1741569952,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I assist you today?","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29},"service_tier":"default","system_fingerprint":"fp_06737a9306"}"#;

const OVERLOADED_ANSWER: &str = r#"{"error":{"message":"The server is overloaded or not ready yet.","type":"server_error","param":null,"code":null}}"#;

const MODELS_ANSWER: &str = r#"{"object":"list","data":[{"id":"gpt-4o-mini","object":"model","created":1721172741,"owned_by":"system"}]}"#;

const CHUNK_HEAD: &str = r#"{"id":"chatcmpl-"#;
const CHUNK_MID: &str = r#"","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_06737a9306","choices":[{"index":0,"delta":"#;

/// `e2e-bench upstream --listen ADDR [--flaky ADDR] [--switchable ADDR]`
pub fn main(args: &[String]) -> Result<(), String> {
    let a = Args::parse(args, &[])?;
    let addr = |name: &str| -> Result<Option<SocketAddr>, String> {
        a.opt(name)
            .map(|v| v.parse().map_err(|e| format!("--{name}: {e}")))
            .transpose()
    };
    let listen = addr("listen")?.ok_or("--listen is required")?;
    let (flaky, switchable) = (addr("flaky")?, addr("switchable")?);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(serve(listen, flaky, switchable))
        .map_err(|e| e.to_string())
}

/// Which listener a connection came in on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Main,
    Flaky,
    Switchable,
}

/// The switchable listener's accept task, while it listens.
type AcceptTask = Arc<Mutex<Option<JoinHandle<()>>>>;

/// What the listeners of one upstream process share.
#[derive(Clone)]
struct Shared {
    release: watch::Sender<u64>,
    /// The flaky listener's `503`s by `x-bench-req`: when it had read the
    /// request and when it sent the `503` (unix ns).
    failed_at: Arc<Mutex<HashMap<u64, (u64, u64)>>>,
    flaky_conns: Arc<AtomicU64>,
    flaky_503s: Arc<AtomicU64>,
    /// The switchable listener's address and, while it listens, its accept task.
    switch: Option<(SocketAddr, AcceptTask)>,
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    sock.set_reuse_address(true)?;
    sock.bind(&addr.into())?;
    sock.listen(8192)?;
    sock.set_nonblocking(true)?;
    TcpListener::from_std(sock.into())
}

async fn serve(
    listen: SocketAddr,
    flaky: Option<SocketAddr>,
    switchable: Option<SocketAddr>,
) -> io::Result<()> {
    let listener = bind(listen)?;
    let (release, _) = watch::channel(0u64);
    let shared = Shared {
        release,
        failed_at: Arc::new(Mutex::new(HashMap::new())),
        flaky_conns: Arc::new(AtomicU64::new(0)),
        flaky_503s: Arc::new(AtomicU64::new(0)),
        switch: switchable.map(|a| (a, Arc::new(Mutex::new(None)))),
    };
    if let Some(addr) = flaky {
        let l = bind(addr)?;
        tokio::spawn(accept_loop(l, shared.clone(), Role::Flaky));
    }
    switch_on(&shared)?;
    eprintln!("upstream listening on {listen} (flaky {flaky:?}, switchable {switchable:?})");
    accept_loop(listener, shared, Role::Main).await;
    Ok(())
}

async fn accept_loop(listener: TcpListener, shared: Shared, role: Role) {
    loop {
        match listener.accept().await {
            Ok((s, _)) => {
                if role == Role::Flaky {
                    shared.flaky_conns.fetch_add(1, Ordering::Relaxed);
                }
                let shared = shared.clone();
                tokio::spawn(async move {
                    let _ = connection(s, shared, role).await;
                });
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("upstream accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The switchable listener listens (again), if there is one and it does not.
fn switch_on(shared: &Shared) -> io::Result<()> {
    let Some((addr, task)) = &shared.switch else {
        return Ok(());
    };
    let mut task = task.lock().map_err(|_| io::Error::other("poisoned"))?;
    if task.is_none() {
        let l = bind(*addr)?;
        *task = Some(tokio::spawn(accept_loop(
            l,
            shared.clone(),
            Role::Switchable,
        )));
    }
    Ok(())
}

/// Closes the switchable listener's socket: connects are refused from the
/// moment this returns.
async fn switch_off(shared: &Shared) {
    let Some((_, task)) = &shared.switch else {
        return;
    };
    let handle = task.lock().ok().and_then(|mut t| t.take());
    if let Some(h) = handle {
        h.abort();
        // Resolves once the task, and the listener with it, is dropped.
        let _ = h.await;
    }
}

struct Request {
    method: String,
    path: String,
    query: String,
    body: Vec<u8>,
    close: bool,
    /// `x-bench-fail: 503`.
    fail: bool,
    /// `x-bench-req`.
    id: Option<u64>,
}

impl Request {
    fn param(&self, name: &str, default: u64) -> u64 {
        self.query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(default)
    }
}

async fn connection(mut s: TcpStream, shared: Shared, role: Role) -> io::Result<()> {
    s.set_nodelay(true)?;
    let mut buf = BytesMut::with_capacity(4096);
    let mut out = Vec::with_capacity(1024);
    while let Some(req) = read_request(&mut s, &mut buf).await? {
        // Timed requests (the failover runs) only.
        let got = req.id.map(|_| now_ns());
        let close = req.close || role == Role::Switchable;
        match (req.method.as_str(), req.path.as_str()) {
            ("POST", "/v1/chat/completions") if req.fail && role == Role::Flaky => {
                let at = now_ns();
                if let (Some(id), Ok(mut map)) = (req.id, shared.failed_at.lock()) {
                    map.insert(id, (got.unwrap_or(at), at));
                }
                shared.flaky_503s.fetch_add(1, Ordering::Relaxed);
                let status = "503 Service Unavailable";
                respond(&mut s, &mut out, status, OVERLOADED_ANSWER, close).await?;
            }
            ("POST", "/v1/chat/completions") => {
                if memchr::memmem::find(&req.body, b"\"stream\":true").is_some()
                    || memchr::memmem::find(&req.body, b"\"stream\": true").is_some()
                {
                    let failed_at = req
                        .id
                        .and_then(|id| shared.failed_at.lock().ok()?.remove(&id));
                    let head = StreamHead {
                        close,
                        got,
                        failed_at,
                    };
                    let held = stream(&mut s, &req, &mut out, &shared.release, head).await?;
                    if held {
                        return Ok(());
                    }
                } else {
                    respond(&mut s, &mut out, "200 OK", JSON_ANSWER, close).await?;
                }
            }
            ("GET", "/v1/models") => {
                respond(&mut s, &mut out, "200 OK", MODELS_ANSWER, close).await?
            }
            ("POST", "/_release") => {
                shared.release.send_modify(|g| *g += 1);
                respond(&mut s, &mut out, "200 OK", "{}", close).await?
            }
            ("POST", "/_switch") => {
                if req.param("on", 1) == 0 {
                    switch_off(&shared).await;
                } else {
                    switch_on(&shared)?;
                }
                respond(&mut s, &mut out, "200 OK", "{}", close).await?
            }
            ("GET", "/_stats") => {
                let body = format!(
                    "flaky_conns {}\nflaky_503s {}\n",
                    shared.flaky_conns.load(Ordering::Relaxed),
                    shared.flaky_503s.load(Ordering::Relaxed)
                );
                respond(&mut s, &mut out, "200 OK", &body, close).await?
            }
            _ => {
                respond(
                    &mut s,
                    &mut out,
                    "404 Not Found",
                    r#"{"error":{"message":"not found"}}"#,
                    close,
                )
                .await?
            }
        }
        if close {
            return Ok(());
        }
    }
    Ok(())
}

async fn respond(
    s: &mut TcpStream,
    out: &mut Vec<u8>,
    status: &str,
    body: &str,
    close: bool,
) -> io::Result<()> {
    use std::io::Write;
    out.clear();
    let conn = if close { "connection: close\r\n" } else { "" };
    write!(
        out,
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{conn}\r\n{body}",
        body.len()
    )?;
    s.write_all(out).await
}

/// What a stream's response head adds to the usual fields.
struct StreamHead {
    /// `connection: close` (the switchable listener).
    close: bool,
    /// `x-bench-got-at`: when this listener had read the request.
    got: Option<u64>,
    /// `x-bench-primary-got-at` and `x-bench-failed-at`: when the flaky
    /// primary had read this request and when it sent its `503`.
    failed_at: Option<(u64, u64)>,
}

const STREAM_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n";
/// [`STREAM_HEAD`] ended: the usual head, in one write as before.
const STREAM_HEAD_END: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n";

/// Writes one SSE stream; returns true when it was a held stream that has
/// now been released or abandoned (the connection is then closed).
async fn stream(
    s: &mut TcpStream,
    req: &Request,
    out: &mut Vec<u8>,
    release: &watch::Sender<u64>,
    head: StreamHead,
) -> io::Result<bool> {
    let events = req.param("events", 300).max(1);
    let interval = Duration::from_micros(req.param("interval_us", 0));
    let hold = req.param("hold", 0) == 1;
    let mut rel = release.subscribe();
    if !head.close && head.got.is_none() {
        s.write_all(STREAM_HEAD_END).await?;
    } else {
        use std::io::Write;
        out.clear();
        out.extend_from_slice(STREAM_HEAD);
        if head.close {
            out.extend_from_slice(b"connection: close\r\n");
        }
        if let Some(got) = head.got {
            write!(out, "x-bench-got-at: {got}\r\n")?;
        }
        if let Some((got, at)) = head.failed_at {
            write!(
                out,
                "x-bench-primary-got-at: {got}\r\nx-bench-failed-at: {at}\r\n"
            )?;
        }
        out.extend_from_slice(b"\r\n");
        s.write_all(out).await?;
    }
    let mut ticker = (!interval.is_zero()).then(|| {
        let mut t = tokio::time::interval(interval);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let mut event = Vec::with_capacity(512);
    for i in 0..events {
        match ticker.as_mut() {
            Some(t) => {
                t.tick().await;
            }
            None if i > 0 => tokio::task::yield_now().await,
            None => {}
        }
        make_event(&mut event, i, events);
        out.clear();
        use std::io::Write;
        write!(out, "{:x}\r\n", event.len())?;
        out.extend_from_slice(&event);
        out.extend_from_slice(b"\r\n");
        s.write_all(out).await?;
        if hold && i == 0 {
            // Silent until the peer goes away or the run releases us.
            let mut scratch = [0u8; 512];
            loop {
                tokio::select! {
                    r = s.read(&mut scratch) => match r {
                        Ok(0) | Err(_) => return Ok(true),
                        Ok(_) => {}
                    },
                    _ = rel.changed() => return Ok(true),
                }
            }
        }
    }
    s.write_all(b"0\r\n\r\n").await?;
    Ok(false)
}

/// Event `i` of `n`: a role delta, content deltas, a finish chunk, `[DONE]`.
fn make_event(ev: &mut Vec<u8>, i: u64, n: u64) {
    use std::io::Write;
    ev.clear();
    if i + 1 == n {
        ev.extend_from_slice(b"data: [DONE]\n\n");
        return;
    }
    let ts = now_ns();
    let _ = write!(ev, "data: {CHUNK_HEAD}{ts}{CHUNK_MID}");
    if i == 0 {
        ev.extend_from_slice(
            br#"{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        );
    } else if i + 2 == n {
        ev.extend_from_slice(br#"{},"logprobs":null,"finish_reason":"stop"}],"usage":null}"#);
    } else {
        ev.extend_from_slice(
            br#"{"content":" token"},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        );
    }
    ev.extend_from_slice(b"\n\n");
}

/// Reads one request (head and body) from `s`; `None` at a clean EOF.
async fn read_request(s: &mut TcpStream, buf: &mut BytesMut) -> io::Result<Option<Request>> {
    loop {
        if !buf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Request::new(&mut headers);
            match r.parse(buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let target = r.path.unwrap_or("/");
                    let (path, query) = target.split_once('?').unwrap_or((target, ""));
                    let mut req = Request {
                        method: r.method.unwrap_or("GET").to_string(),
                        path: path.to_string(),
                        query: query.to_string(),
                        body: Vec::new(),
                        close: r.version == Some(0),
                        fail: false,
                        id: None,
                    };
                    let mut length = 0usize;
                    let mut chunked = false;
                    for h in r.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            length = std::str::from_utf8(h.value)
                                .ok()
                                .and_then(|v| v.trim().parse().ok())
                                .unwrap_or(0);
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            chunked = h.value.eq_ignore_ascii_case(b"chunked");
                        } else if h.name.eq_ignore_ascii_case("connection") {
                            req.close = h.value.eq_ignore_ascii_case(b"close");
                        } else if h.name.eq_ignore_ascii_case("x-bench-fail") {
                            req.fail = h.value == b"503";
                        } else if h.name.eq_ignore_ascii_case("x-bench-req") {
                            req.id = std::str::from_utf8(h.value)
                                .ok()
                                .and_then(|v| v.trim().parse().ok());
                        }
                    }
                    buf.advance(n);
                    if chunked {
                        read_chunked(s, buf, &mut req.body).await?;
                    } else {
                        while buf.len() < length {
                            if s.read_buf(buf).await? == 0 {
                                return Err(io::ErrorKind::UnexpectedEof.into());
                            }
                        }
                        req.body = buf.split_to(length).to_vec();
                    }
                    return Ok(Some(req));
                }
                Ok(httparse::Status::Partial) => {}
                Err(e) => return Err(io::Error::other(e)),
            }
        }
        if s.read_buf(buf).await? == 0 {
            return Ok(None);
        }
    }
}

async fn read_line(s: &mut TcpStream, buf: &mut BytesMut) -> io::Result<Vec<u8>> {
    loop {
        if let Some(i) = memchr::memmem::find(buf, b"\r\n") {
            let line = buf.split_to(i).to_vec();
            buf.advance(2);
            return Ok(line);
        }
        if s.read_buf(buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

async fn read_chunked(s: &mut TcpStream, buf: &mut BytesMut, body: &mut Vec<u8>) -> io::Result<()> {
    loop {
        let line = read_line(s, buf).await?;
        let hex = line.split(|&b| b == b';').next().unwrap_or(&[]);
        let size = usize::from_str_radix(std::str::from_utf8(hex).unwrap_or("0").trim(), 16)
            .map_err(io::Error::other)?;
        if size == 0 {
            // Trailers until the blank line.
            while !read_line(s, buf).await?.is_empty() {}
            return Ok(());
        }
        while buf.len() < size + 2 {
            if s.read_buf(buf).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        body.extend_from_slice(&buf[..size]);
        buf.advance(size + 2);
    }
}
