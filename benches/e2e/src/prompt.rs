//! The long-prompt run (issue 18): streaming chat requests whose JSON body
//! carries a long conversation, per request.
//!
//! Model-API requests carry long contexts, and a relay that reads the
//! request JSON (sse-edge reads `model` and `stream`) pays for it on every
//! request. The body is laid out as OpenAI's Python SDK sends it: `messages`
//! first, then `model`, then `stream`, so the keys the relay reads come
//! after the whole prompt. The prompt is prose with the escapes JSON text
//! has (`\n`, `\"`), split over user and assistant turns.
//!
//! One keep-alive connection sends the next request as soon as the previous
//! stream is complete (closed loop, c=1); the upstream answers each with
//! [`EVENTS`] events back to back. Per request: the proxy's CPU (kernel and
//! user) and the time from sending the request to its first event at the
//! client, whose "added" value subtracts the direct run of the same round.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};

use crate::client::{self, Endpoint, ReqStats, Scan, Sender};
use crate::orchestrate::{Ctx, common, snap};
use crate::procs::Proxy;
use crate::report::Cell;
use crate::util::percentile;

/// Events of each answer (`data: [DONE]` included).
pub const EVENTS: u32 = 5;

/// One turn of the conversation: about 1 KB of prose with JSON escapes.
const TURN: &str = r#"The relay reads the request before it forwards it, so a long context costs it something on every request.\nIt has to find \"model\" and \"stream\", which clients often send after the messages.\nHere is the part of the document the user pasted: section 4.2 describes the retry policy, section 4.3 the timeouts, and the appendix lists every error code with its meaning and what a client should do about it.\n"#;

/// A streaming chat request of about `size` bytes (at least one turn).
pub fn body(size: usize) -> Bytes {
    const TAIL: &str =
        r#"],"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true}}"#;
    let mut v = Vec::with_capacity(size + 2 * TURN.len());
    v.extend_from_slice(
        br#"{"messages":[{"role":"system","content":"You are a helpful assistant."}"#,
    );
    let mut i = 0u32;
    while v.len() + TAIL.len() < size || i == 0 {
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        v.extend_from_slice(format!(r#",{{"role":"{role}","content":"Turn {i}. "#).as_bytes());
        v.extend_from_slice(TURN.as_bytes());
        v.extend_from_slice(br#""}"#);
        i += 1;
    }
    v.extend_from_slice(TAIL.as_bytes());
    Bytes::from(v)
}

/// The request's `content-type`: JSON, or (`--content-type` of `e2e-bench
/// load`, to measure a relay that does not read the body) anything else.
pub type ContentType = &'static str;

fn request(ep: &Endpoint, body: Bytes, kind: ContentType) -> Result<Request<Full<Bytes>>, String> {
    Request::post(format!(
        "/v1/chat/completions?events={EVENTS}&interval_us=0&hold=0"
    ))
    .header("host", ep.addr.to_string())
    .header("content-type", kind)
    .header("accept", "text/event-stream")
    .header("authorization", "Bearer sk-bench")
    .header("user-agent", "e2e-bench")
    .body(Full::new(body))
    .map_err(|e| e.to_string())
}

/// Sends one request and reads its stream whole; returns the time from the
/// send to the first event, in ns.
async fn one(
    ep: &Endpoint,
    sender: &mut Option<Sender>,
    body: Bytes,
    kind: ContentType,
) -> Result<u32, String> {
    client::ready_sender(ep, sender)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let s = sender.as_mut().ok_or("no connection")?;
    let req = request(ep, body, kind)?;
    let t0 = Instant::now();
    let resp = s
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    if resp.status() != StatusCode::OK {
        return Err(format!("status {}", resp.status()));
    }
    let mut rb = resp.into_body();
    let mut scan = Scan::default();
    let mut first = None;
    while let Some(f) = rb.frame().await {
        let f = f.map_err(|e| format!("body after {} events: {e}", scan.events))?;
        if let Some(d) = f.data_ref() {
            scan.feed(d, 0, &mut None);
            if first.is_none() && scan.events > 0 {
                first = Some(t0.elapsed());
            }
        }
    }
    match first {
        Some(t) if scan.done && scan.events == u64::from(EVENTS) && scan.errors == 0 => {
            Ok(t.as_nanos().min(u128::from(u32::MAX)) as u32)
        }
        _ => Err(format!(
            "incomplete stream: {} of {EVENTS} events, [DONE] {}, {} relay error events",
            scan.events, scan.done, scan.errors
        )),
    }
}

/// Closed loop on `conns` keep-alive connections for `duration`: each sends
/// the next request as soon as the previous stream is complete.
pub async fn closed(
    ep: &Endpoint,
    conns: usize,
    duration: Duration,
    body: Bytes,
    kind: ContentType,
) -> ReqStats {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let ep = ep.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let mut st = ReqStats::default();
            let mut sender = None;
            while Instant::now() < deadline {
                match one(&ep, &mut sender, body.clone(), kind).await {
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

/// The `prompt` measurement: warm-up, then `json_secs` of the closed loop.
pub async fn cell(
    ctx: &Ctx,
    ep: &Endpoint,
    proxy: Option<&Proxy>,
    cell: &mut Cell,
) -> Result<(), String> {
    let s = &ctx.sizes;
    let body = body(s.prompt_kib * 1000);
    let json = "application/json";
    let warm = closed(ep, 1, Duration::from_millis(300), body.clone(), json).await;
    if warm.failed > 0 {
        return Err(format!(
            "warm-up: {} failed requests, first: {}",
            warm.failed,
            warm.first_error.unwrap_or_default()
        ));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let a = snap(ctx, proxy.map(|p| p.pid));
    let d = Duration::from_secs_f64(s.json_secs);
    let mut st = closed(ep, 1, d, body.clone(), json).await;
    let b = snap(ctx, proxy.map(|p| p.pid));
    let m: &mut BTreeMap<&'static str, f64> = &mut cell.m;
    let (wall, cpu) = common(ctx, &a, &b, m);
    m.insert("body_bytes", body.len() as f64);
    m.insert("requests", st.ok as f64);
    m.insert("failed", st.failed as f64);
    m.insert("req_per_s", st.ok as f64 / wall);
    if proxy.is_some() && st.ok > 0 {
        m.insert("cpu_us_per_req", cpu * 1e6 / st.ok as f64);
        m.insert("sys_us_per_req", m["proxy_sys_s"] * 1e6 / st.ok as f64);
        m.insert("sched_us_per_req", m["proxy_sched_s"] * 1e6 / st.ok as f64);
    }
    st.lat_ns.sort_unstable();
    m.insert("ttfe_p50_us", percentile(&st.lat_ns, 50.0) / 1000.0);
    m.insert("ttfe_p99_us", percentile(&st.lat_ns, 99.0) / 1000.0);
    if st.failed == 0 {
        Ok(())
    } else {
        Err(format!(
            "{} failed requests, first: {}",
            st.failed,
            st.first_error.unwrap_or_default()
        ))
    }
}

/// The row labels' common part.
pub fn label(kib: usize) -> String {
    format!("Streaming request with a {kib} KB prompt ({EVENTS} events back to back), c=1")
}

/// Columns of the detail table.
pub const DETAIL: &[(&str, &str)] = &[
    ("body_bytes", "body bytes"),
    ("requests", "requests"),
    ("failed", "failed"),
    ("req_per_s", "req/s"),
    ("cpu_us_per_req", "CPU us/req"),
    ("sys_us_per_req", "of which kernel"),
    ("ttfe_p50_us", "to first event p50 us"),
    ("ttfe_p99_us", "to first event p99 us"),
    ("proxy_core_util", "proxy core busy"),
    ("load_core_util", "load core busy"),
];
