//! Helpers only the fault suite uses: the at-rest check run after every
//! case, a healthy request during a fault, reading a few frames, and
//! `/proc` figures of the relay binary. What the integration tests share
//! (the logged relay, one-shot requests with their whole outcome, error
//! checks, `/metrics` lookups, the endless upstream) is in `support`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::support::*;

pub(crate) const HB: &str = "300ms";

pub(crate) fn ms(d: Duration) -> u128 {
    d.as_millis()
}

pub(crate) fn sleep(ms: u64) -> tokio::time::Sleep {
    tokio::time::sleep(Duration::from_millis(ms))
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
        let v = metric_or_zero(m, g, &[]);
        if v != 0.0 {
            out.push(format!("{g} {v}"));
        }
    }
    for v in metric_values(m, "sse_edge_upstream_h2_streams", &[]) {
        if v != 0.0 {
            out.push(format!("sse_edge_upstream_h2_streams {v}"));
        }
    }
    if h1_pool {
        let open = metric_values(m, "sse_edge_upstream_connections", &[]);
        let idle = metric_values(m, "sse_edge_upstream_idle_connections", &[]);
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
        let m = try_metrics(admin).await?;
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
