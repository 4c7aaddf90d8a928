//! Helpers shared by several areas: the in-process relay with a captured
//! access log, `/metrics` scraping and the at-rest check run after every
//! case, one-shot requests with their whole outcome ([`Got`]), checks of
//! relay-made error answers and error events, an endless streaming upstream
//! that records cancellations ([`Stops`]), and `/proc` figures of the relay
//! binary.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderMap, Request};
use serde_json::Value;
use sse_edge::sse::whatwg;
use sse_edge::telemetry::AccessLog;

use crate::CaseResult;
use crate::support::*;

pub(crate) const STREAM_REQ: &str = r#"{"model":"m","stream":true,"messages":[]}"#;
pub(crate) const HB: &str = "300ms";

pub(crate) fn ms(d: Duration) -> u128 {
    d.as_millis()
}

pub(crate) fn sleep(ms: u64) -> tokio::time::Sleep {
    tokio::time::sleep(Duration::from_millis(ms))
}

/// The access log of an in-process relay.
pub(crate) struct Log {
    rx: Receiver<String>,
    seen: Vec<Value>,
}

impl Log {
    /// The first line (not yet taken) that satisfies `pred`, waiting up to 5 s.
    pub(crate) async fn find(
        &mut self,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value, String> {
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
    pub(crate) async fn outcome(&mut self, path: &str, outcome: &str) -> Result<Value, String> {
        self.find(&format!("for {path} with outcome {outcome}"), |v| {
            v["path"] == path && v["outcome"] == outcome
        })
        .await
    }
}

/// Starts the relay in-process with a captured access log.
pub(crate) async fn start_logged(args: &[&str]) -> (sse_edge::Running, Log) {
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
pub(crate) async fn start_logged_h2c(up: &Upstream, extra: &[&str]) -> (sse_edge::Running, Log) {
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

pub(crate) async fn scrape(admin: SocketAddr) -> Result<String, String> {
    let r = tokio::time::timeout(Duration::from_secs(5), try_fetch(admin, get("/metrics")))
        .await
        .map_err(|_| "GET /metrics hung".to_owned())??;
    ensure!(r.status == 200, "GET /metrics: {}", r.status);
    Ok(r.text())
}

pub(crate) fn value(m: &str, name: &str) -> f64 {
    metric_or_zero(m, name, &[])
}

/// Every `name{origin="..."}` value.
pub(crate) fn per_origin(m: &str, name: &str) -> Vec<f64> {
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
pub(crate) async fn settled(admin: SocketAddr, h1_pool: bool) -> Result<String, String> {
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
pub(crate) struct Got {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
    pub(crate) err: Option<String>,
    pub(crate) took: Duration,
}

impl Got {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One request on a fresh HTTP/1.1 connection; the body is read to its end
/// or its error.
pub(crate) async fn send(addr: SocketAddr, req: Request<TestBody>) -> Result<Got, String> {
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

pub(crate) fn stream_post(path: &str) -> Request<TestBody> {
    post(path, STREAM_REQ)
}

/// Checks a relay-made error answer: status, `sse-edge-error`, and the
/// dialect's JSON shape (OpenAI unless the body is Anthropic-shaped).
pub(crate) fn dialect_error(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    code: &str,
) -> CaseResult {
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

pub(crate) fn expect_error(r: &Got, status: u16, code: &str) -> CaseResult {
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
pub(crate) fn error_event_code(body: &[u8]) -> Option<String> {
    let events = whatwg::parse(body);
    let last = events.last()?;
    let v: Value = serde_json::from_str(&last.data).ok()?;
    v["error"]["code"]
        .as_str()
        .or_else(|| v["error"]["type"].as_str())
        .map(str::to_owned)
}

pub(crate) fn expect_error_event(r: &Got, code: &str) -> CaseResult {
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
pub(crate) async fn healthy(addr: SocketAddr, path: &str) -> Result<Duration, String> {
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

/// When an upstream stream noticed its reader was gone, and how often.
#[derive(Default)]
pub(crate) struct Stops {
    count: AtomicUsize,
    last: Mutex<Option<Instant>>,
}

impl Stops {
    pub(crate) fn stopped(&self) {
        *self.last.lock().unwrap() = Some(Instant::now());
        self.count.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn last(&self) -> Option<Instant> {
        *self.last.lock().unwrap()
    }

    /// Waits (up to `limit`) for `n` stops; the last one's instant.
    pub(crate) async fn wait(&self, n: usize, limit: Duration) -> Result<Instant, String> {
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
pub(crate) async fn endless_upstream(mode: Mode, gap: Duration, stops: Arc<Stops>) -> Upstream {
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
pub(crate) async fn frames(body: &mut hyper::body::Incoming, n: usize) -> Result<(), String> {
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

/// Requests the relay has answered (every status, every route).
pub(crate) fn requests_answered(m: &str) -> f64 {
    m.lines()
        .filter(|l| l.starts_with("sse_edge_requests_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

pub(crate) fn proc_status(pid: u32, key: &str) -> Result<u64, String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no {key} in /proc/{pid}/status"))
}

pub(crate) fn rss_kib(pid: u32) -> Result<u64, String> {
    proc_status(pid, "VmRSS:")
}

pub(crate) fn fd_count(pid: u32) -> Result<usize, String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(Iterator::count)
        .map_err(|e| format!("/proc/{pid}/fd: {e}"))
}

pub(crate) fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

pub(crate) async fn stop_proc(mut p: RelayProc) {
    p.sigterm();
    p.wait_exit(Duration::from_secs(10)).await;
}
