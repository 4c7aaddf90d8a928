//! The `resume` workload: streams cut on one relay after a few events and
//! resumed (the original request again, with `Last-Event-ID`) on the same
//! relay or on another replica of a cluster (`benches/e2e/cluster.sh`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::StatusCode;

use crate::client::{Endpoint, Scan, connect, stream_request};
use crate::util::now_ns;

/// Result of a resume run: streams cut on one relay and resumed on another.
#[derive(Default)]
pub struct ResumeStats {
    pub streams: u64,
    /// Events read, on both connections of every stream.
    pub events: u64,
    pub failed: u64,
    pub first_error: Option<String>,
    /// From sending the reconnect to its first event, ns.
    pub reconnect_ns: Vec<u32>,
    pub wall: Duration,
}

/// `total` streams of `events` events, `clients` at a time: each is read
/// on `first` for `cut_after` events, cut, and resumed on `then` (the
/// original request again, with `Last-Event-ID`) to its end. `first` and
/// `then` may be the same relay (resumption on one replica) or two
/// replicas of one cluster.
pub async fn resumes(
    first: &Endpoint,
    then: &Endpoint,
    clients: usize,
    total: u64,
    events: u32,
    interval_us: u32,
    cut_after: u64,
) -> ResumeStats {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (first, then, next) = (first.clone(), then.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut st = ResumeStats::default();
            while next.fetch_add(1, Ordering::Relaxed) < total {
                match one_resume(&first, &then, events, interval_us, cut_after, &mut st).await {
                    Ok(()) => st.streams += 1,
                    Err(e) => {
                        st.failed += 1;
                        st.first_error.get_or_insert(e);
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
            }
            st
        }));
    }
    let mut all = ResumeStats::default();
    for t in tasks {
        if let Ok(st) = t.await {
            all.streams += st.streams;
            all.events += st.events;
            all.failed += st.failed;
            if all.first_error.is_none() {
                all.first_error = st.first_error;
            }
            all.reconnect_ns.extend_from_slice(&st.reconnect_ns);
        }
    }
    all.wall = start.elapsed();
    all
}

async fn one_resume(
    first: &Endpoint,
    then: &Endpoint,
    events: u32,
    interval_us: u32,
    cut_after: u64,
    st: &mut ResumeStats,
) -> Result<(), String> {
    // The original request: read `cut_after` events whole, then drop the
    // connection, as a client losing its network does.
    let (mut s, conn) = connect(first).await.map_err(|e| format!("connect: {e}"))?;
    let resp = s
        .send_request(stream_request(first, events, interval_us, false))
        .await
        .map_err(|e| format!("request: {e}"))?;
    if resp.status() != StatusCode::OK {
        return Err(format!("status {}", resp.status()));
    }
    let mut body = resp.into_body();
    let mut raw = Vec::new();
    let (seen, last_id) = loop {
        let f = body
            .frame()
            .await
            .ok_or("stream ended before the cut")?
            .map_err(|e| format!("body: {e}"))?;
        if let Some(d) = f.data_ref() {
            raw.extend_from_slice(d);
        }
        let (n, id) = whole_events(&raw);
        if n >= cut_after {
            break (n, id.ok_or("no id: on a resumable stream")?);
        }
    };
    drop(body);
    drop(s);
    conn.abort();
    // The reconnect.
    let (mut s, conn) = connect(then).await.map_err(|e| format!("connect: {e}"))?;
    let mut req = stream_request(then, events, interval_us, false);
    req.headers_mut().insert(
        "last-event-id",
        last_id.parse().map_err(|_| "bad id".to_owned())?,
    );
    let sent = Instant::now();
    let resp = s
        .send_request(req)
        .await
        .map_err(|e| format!("reconnect: {e}"))?;
    if resp.status() != StatusCode::OK {
        return Err(format!("reconnect status {}", resp.status()));
    }
    let mut body = resp.into_body();
    let mut scan = Scan::default();
    let mut timed = false;
    while let Some(f) = body.frame().await {
        let f = f.map_err(|e| format!("resumed body after {} events: {e}", scan.events))?;
        if let Some(d) = f.data_ref() {
            scan.feed(d, now_ns(), &mut None);
            if !timed && scan.events > 0 {
                timed = true;
                st.reconnect_ns
                    .push(sent.elapsed().as_nanos().min(u128::from(u32::MAX)) as u32);
            }
        }
    }
    conn.abort();
    st.events += seen + scan.events;
    if scan.done && seen + scan.events == u64::from(events) && scan.errors == 0 {
        Ok(())
    } else {
        Err(format!(
            "incomplete: {seen} events before the cut, {} after of {events}, [DONE] {}, {} error events",
            scan.events, scan.done, scan.errors
        ))
    }
}

/// Whole events in `raw` and the `id:` of the last one.
fn whole_events(raw: &[u8]) -> (u64, Option<String>) {
    let mut n = 0;
    let mut id = None;
    let mut start = 0;
    while let Some(i) = memchr::memmem::find(&raw[start..], b"\n\n") {
        let ev = &raw[start..start + i];
        start += i + 2;
        if ev.starts_with(b":") || ev.is_empty() {
            continue;
        }
        n += 1;
        for line in ev.split(|&b| b == b'\n') {
            if let Some(v) = line.strip_prefix(b"id: ") {
                id = Some(String::from_utf8_lossy(v).into_owned());
            }
        }
    }
    (n, id)
}
