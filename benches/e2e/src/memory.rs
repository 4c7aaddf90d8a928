//! Memory given back after load: the proxy's RSS read again a set time
//! after every stream or client has closed (the idle run and the upload
//! run both record it), and the upload run itself: one large JSON request
//! through the proxy to the upstream, which reads the body whole and
//! answers with a small JSON (a sink).
//!
//! What a figure means: `rss_close_<N>s_kib` is VmRSS N seconds after the
//! last client connection closed; `kept_<N>s_kib` is that minus the RSS
//! before the load (after the warm-up), so it is what the load left
//! resident. It can be negative: an allocator may also give back what the
//! warm-up left.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};

use crate::client::{self, Endpoint};
use crate::orchestrate::Sizes;
use crate::procs::Proxy;
use crate::report::Cell;
use crate::util::rss_kib;

/// One reading after close: how long after, and the names of its two
/// measurements.
#[derive(Clone, Debug)]
pub struct CloseWait {
    pub secs: u64,
    pub rss_key: &'static str,
    pub kept_key: &'static str,
}

impl CloseWait {
    /// `5,30`: whole seconds after close, ascending.
    pub fn list(s: &str) -> Result<Vec<CloseWait>, String> {
        let mut secs: Vec<u64> = s
            .split(',')
            .filter(|x| !x.is_empty())
            .map(|x| {
                x.trim()
                    .parse()
                    .map_err(|_| format!("--close-waits: cannot parse {x:?}"))
            })
            .collect::<Result<_, _>>()?;
        secs.sort_unstable();
        secs.dedup();
        // Metric names live for the whole run (a few per run).
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        Ok(secs
            .into_iter()
            .map(|secs| CloseWait {
                secs,
                rss_key: leak(format!("rss_close_{secs}s_kib")),
                kept_key: leak(format!("kept_{secs}s_kib")),
            })
            .collect())
    }
}

/// Reads the proxy's RSS at each wait after `closed`, and how far above
/// `before` it is.
pub async fn after_close(
    pid: u32,
    before: u64,
    closed: Instant,
    waits: &[CloseWait],
    m: &mut BTreeMap<&'static str, f64>,
) -> Result<(), String> {
    for w in waits {
        let at = closed + Duration::from_secs(w.secs);
        tokio::time::sleep_until(at.into()).await;
        let rss = rss_kib(pid).map_err(|e| format!("RSS {} s after close: {e}", w.secs))?;
        m.insert(w.rss_key, rss as f64);
        m.insert(w.kept_key, rss as f64 - before as f64);
    }
    Ok(())
}

/// A chat request carrying one image as a data URL, `size` bytes in all:
/// a large JSON body of the kind vision requests are, with the `model`
/// key that makes sse-edge read the body (`usage::request_info`).
pub fn upload_body(size: usize) -> Bytes {
    const HEAD: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":[{"type":"text","text":"What is in this image?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,"#;
    const TAIL: &str = r#""}}]}]}"#;
    let fill = size.saturating_sub(HEAD.len() + TAIL.len());
    let mut v = Vec::with_capacity(HEAD.len() + fill + TAIL.len());
    v.extend_from_slice(HEAD.as_bytes());
    v.extend(
        b"iVBORw0KGgoAAAANSUhEUgAAAQAAAAEACAIAAADT"
            .iter()
            .cycle()
            .take(fill),
    );
    v.extend_from_slice(TAIL.as_bytes());
    Bytes::from(v)
}

/// Sends `body` as one request on a new connection, reads the answer,
/// then closes the connection.
pub async fn upload(ep: &Endpoint, body: Bytes) -> Result<(), String> {
    let (mut s, conn) = client::connect(ep)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let req = Request::post("/v1/chat/completions")
        .header("host", ep.addr.to_string())
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header("authorization", "Bearer sk-bench")
        .header("user-agent", "e2e-bench")
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let resp = s
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = resp.status();
    let answer = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    drop(s);
    let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
    if status == StatusCode::OK {
        Ok(())
    } else {
        let shown = &answer[..answer.len().min(200)];
        Err(format!(
            "status {status}: {}",
            String::from_utf8_lossy(shown)
        ))
    }
}

/// The upload run: RSS before (after a warm-up of small JSON requests),
/// its peak during one upload of `sizes.upload_mib` MiB (read every 5 ms),
/// and at each of `sizes.close_waits` after the client closed.
pub async fn upload_cell(
    sizes: &Sizes,
    ep: &Endpoint,
    proxy: Option<&Proxy>,
    cell: &mut Cell,
) -> Result<(), String> {
    let proxy = proxy.ok_or("the upload run needs a proxy")?;
    let warm = client::json_closed(ep, 4, Duration::from_millis(300)).await;
    if warm.failed > 0 {
        return Err(format!(
            "warm-up: {} failed requests, first: {}",
            warm.failed,
            warm.first_error.unwrap_or_default()
        ));
    }
    let body = upload_body(sizes.upload_mib << 20);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(proxy.pid).map_err(|e| e.to_string())?;
    let peak = std::cell::Cell::new(before);
    let sample = async {
        loop {
            if let Ok(r) = rss_kib(proxy.pid) {
                peak.set(peak.get().max(r));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let t0 = Instant::now();
    let r = tokio::select! {
        r = upload(ep, body) => r,
        () = sample => Err("the RSS sampler stopped".to_string()),
    };
    let closed = Instant::now();
    let m = &mut cell.m;
    m.insert("upload_mib", sizes.upload_mib as f64);
    m.insert("upload_s", (closed - t0).as_secs_f64());
    m.insert("failed", if r.is_ok() { 0.0 } else { 1.0 });
    m.insert("rss_before_kib", before as f64);
    m.insert("rss_peak_kib", peak.get() as f64);
    m.insert("peak_above_kib", peak.get() as f64 - before as f64);
    r?;
    after_close(proxy.pid, before, closed, &sizes.close_waits, m).await
}

/// The summary rows of the main report about memory left after load
/// (label, scenario, metric), each compared with the best peer as a
/// difference in KiB.
pub fn summary_rows(s: &Sizes) -> Vec<(String, &'static str, &'static str)> {
    let mut v = Vec::new();
    for w in &s.close_waits {
        v.push((
            format!(
                "Idle streams: RSS {} s after all {} have closed, above the RSS before them",
                w.secs, s.idle_streams
            ),
            "idle",
            w.kept_key,
        ));
    }
    v.push((
        format!(
            "JSON upload of {} MiB (one request): peak RSS above the RSS before it",
            s.upload_mib
        ),
        "upload",
        "peak_above_kib",
    ));
    for w in &s.close_waits {
        v.push((
            format!(
                "JSON upload of {} MiB: RSS {} s after the client closed, above the RSS before it",
                s.upload_mib, w.secs
            ),
            "upload",
            w.kept_key,
        ));
    }
    v
}

/// `5 s and 30 s`.
pub fn close_waits_text(sizes: &Sizes) -> String {
    let w: Vec<String> = sizes
        .close_waits
        .iter()
        .map(|w| format!("{} s", w.secs))
        .collect();
    match w.split_last() {
        None => "never".into(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}
