//! The failover runs: how long a streaming request takes to its first
//! event when its primary fails and a fallback serves it, against the same
//! request through a healthy primary.
//!
//! Both run against one proxy started with the failover routes
//! (`procs::failover_toml`, nginx's `backup` servers): `/` goes to the
//! upstream's flaky listener, whose fallback is the upstream's main
//! listener; `/refused/` goes to its switchable listener, with the same
//! fallback. Every request is a short stream (a few events back to back)
//! timed from its send to its first event at the client.
//!
//! - `failover_c1`, one keep-alive connection, requests one after another
//!   in rotating order: *healthy* (the flaky primary serves it), *503* (the
//!   primary answers `503` at once and the fallback serves it), and
//!   *refused* (the switchable primary is closed first, so the connect is
//!   refused and the fallback serves it; then it listens again and one
//!   request it serves, not timed, ends the primary's run of failures).
//!   sse-edge ejects an endpoint after three failures in a row; this order
//!   never makes more than two, so every 503 and refused request meets its
//!   primary (the `/metrics` failover count checks it).
//! - `failover_c32`: 32 connections that each start a stream at the same
//!   instant every 5 ms (as `json_c32` does with its requests; a connection
//!   still busy skips the wave), for a fixed time; one of them sends only
//!   requests the primary answers with `503`, the 31 others healthy ones:
//!   the failover under load, the same load for every proxy.
//!
//! For a `503`, the upstream also records when it sent it, and the
//! fallback's answer carries that time (`x-bench-failed-at`): "since 503"
//! is the first event's arrival at the client minus it, the time from the
//! primary's failure to the fallback's first event reaching the client.
//! "To primary" is the time from the client's send to the primary having
//! read the request (healthy and 503 requests alike), which takes in the
//! proxy's connect when it has no idle connection to the primary.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};

use crate::client::{self, Endpoint, Scan, Sender};
use crate::orchestrate::{Ctx, common, snap};
use crate::procs::Proxy;
use crate::report::Cell;
use crate::util::{now_ns, percentile};

/// Events per timed stream (the last is `[DONE]`).
const EVENTS: u32 = 5;

const BODY: &str =
    r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Say hello."}]}"#;

/// The way a request goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Via {
    Healthy,
    Fail503,
    Refused,
}

const VIAS: [Via; 3] = [Via::Healthy, Via::Fail503, Via::Refused];

/// One stream's timing.
struct Timed {
    /// Request sent to first event received.
    ttfe_ns: u32,
    /// First event received minus the primary's `503` (when there was one).
    since_fail_ns: Option<u32>,
    /// Request sent to read by the first server it reached (the primary,
    /// for a `503`; for a refused one, the fallback).
    to_server_ns: Option<u32>,
}

/// Latencies of one run, by way.
#[derive(Default)]
struct Lat {
    healthy: Vec<u32>,
    f503: Vec<u32>,
    since503: Vec<u32>,
    refused: Vec<u32>,
    /// Sent to read by the server: healthy (the primary), 503 (the primary).
    healthy_to: Vec<u32>,
    f503_to: Vec<u32>,
    /// `503` requests the fallback served without a `503` first (the
    /// primary ejected): left out of the latencies.
    not_failed_over: u64,
    failed: u64,
    first_error: Option<String>,
}

impl Lat {
    fn record(&mut self, via: Via, r: Result<Timed, String>) {
        match r {
            Err(e) => {
                self.failed += 1;
                self.first_error.get_or_insert(e);
            }
            Ok(t) => match via {
                Via::Healthy => {
                    self.healthy.push(t.ttfe_ns);
                    self.healthy_to.extend(t.to_server_ns);
                }
                Via::Refused => self.refused.push(t.ttfe_ns),
                Via::Fail503 => match t.since_fail_ns {
                    Some(since) => {
                        self.f503.push(t.ttfe_ns);
                        self.since503.push(since);
                        self.f503_to.extend(t.to_server_ns);
                    }
                    None => self.not_failed_over += 1,
                },
            },
        }
    }

    fn merge(&mut self, o: Lat) {
        self.healthy.extend(o.healthy);
        self.f503.extend(o.f503);
        self.since503.extend(o.since503);
        self.refused.extend(o.refused);
        self.healthy_to.extend(o.healthy_to);
        self.f503_to.extend(o.f503_to);
        self.not_failed_over += o.not_failed_over;
        self.failed += o.failed;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
    }

    /// Percentiles (us) into the cell: `NAME_p50_us`, `NAME_p99_us`, and
    /// for the failing ways `NAME_added_p50_us`/`_p99_us` over healthy.
    fn metrics(mut self, m: &mut BTreeMap<&'static str, f64>) {
        let mut pct = |v: &mut Vec<u32>, p50: &'static str, p99: &'static str| {
            if v.is_empty() {
                return (f64::NAN, f64::NAN);
            }
            v.sort_unstable();
            let (a, b) = (percentile(v, 50.0) / 1e3, percentile(v, 99.0) / 1e3);
            m.insert(p50, a);
            m.insert(p99, b);
            (a, b)
        };
        let h = pct(&mut self.healthy, "healthy_p50_us", "healthy_p99_us");
        let f = pct(&mut self.f503, "f503_p50_us", "f503_p99_us");
        pct(&mut self.since503, "since503_p50_us", "since503_p99_us");
        let r = pct(&mut self.refused, "refused_p50_us", "refused_p99_us");
        pct(
            &mut self.healthy_to,
            "healthy_to_primary_p50_us",
            "healthy_to_primary_p99_us",
        );
        pct(
            &mut self.f503_to,
            "f503_to_primary_p50_us",
            "f503_to_primary_p99_us",
        );
        let counts = [
            ("healthy_requests", self.healthy.len()),
            ("f503_requests", self.f503.len()),
            ("refused_requests", self.refused.len()),
        ];
        for (k, n) in counts {
            m.insert(k, n as f64);
        }
        for (k, v) in [
            ("f503_added_p50_us", f.0 - h.0),
            ("f503_added_p99_us", f.1 - h.1),
            ("refused_added_p50_us", r.0 - h.0),
            ("refused_added_p99_us", r.1 - h.1),
        ] {
            if v.is_finite() {
                m.insert(k, v);
            }
        }
        m.insert("not_failed_over", self.not_failed_over as f64);
        m.insert("failed", self.failed as f64);
    }
}

fn request(ep: &Endpoint, via: Via, id: u64) -> Request<Full<Bytes>> {
    let prefix = if via == Via::Refused { "/refused" } else { "" };
    let mut r = Request::post(format!(
        "{prefix}/v1/chat/completions?events={EVENTS}&interval_us=0&hold=0"
    ))
    .header("host", ep.addr.to_string())
    .header("content-type", "application/json")
    .header("accept", "text/event-stream")
    .header("authorization", "Bearer sk-bench")
    .header("user-agent", "e2e-bench")
    .header("x-bench-req", id.to_string());
    if via == Via::Fail503 {
        r = r.header("x-bench-fail", "503");
    }
    r.body(Full::new(Bytes::from_static(BODY.as_bytes())))
        .expect("request")
}

/// Sends one stream and reads it whole, timing its first event.
async fn timed(
    ep: &Endpoint,
    sender: &mut Option<Sender>,
    via: Via,
    id: u64,
) -> Result<Timed, String> {
    client::ready_sender(ep, sender)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let s = sender.as_mut().expect("sender");
    let req = request(ep, via, id);
    let sent_ns = now_ns();
    let t0 = Instant::now();
    let resp = s
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    if resp.status() != StatusCode::OK {
        return Err(format!("{via:?}: status {}", resp.status()));
    }
    let stamp = |name: &str| -> Option<u64> {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok()?.parse().ok())
    };
    let failed_at = stamp("x-bench-failed-at");
    let got_at = stamp("x-bench-primary-got-at").or(stamp("x-bench-got-at"));
    let ns = |from: u64, to: u64| to.saturating_sub(from).min(u64::from(u32::MAX)) as u32;
    let mut body = resp.into_body();
    let mut scan = Scan::default();
    let mut first: Option<(Duration, u64)> = None;
    while let Some(f) = body.frame().await {
        let f = f.map_err(|e| format!("{via:?}: body after {} events: {e}", scan.events))?;
        if let Some(d) = f.data_ref() {
            scan.feed(d, 0, &mut None);
            if first.is_none() && scan.events > 0 {
                first = Some((t0.elapsed(), now_ns()));
            }
        }
    }
    let complete = scan.done && scan.events == u64::from(EVENTS) && scan.errors == 0;
    match first {
        Some((ttfe, at)) if complete => Ok(Timed {
            ttfe_ns: ttfe.as_nanos().min(u128::from(u32::MAX)) as u32,
            since_fail_ns: failed_at.map(|f| ns(f, at)),
            to_server_ns: got_at.map(|g| ns(sent_ns, g)),
        }),
        _ => Err(format!(
            "{via:?}: incomplete stream: {} of {EVENTS} events, [DONE] {}, {} relay error events",
            scan.events, scan.done, scan.errors
        )),
    }
}

/// A request to the upstream's control paths over a kept connection.
async fn control(
    up: &Endpoint,
    sender: &mut Option<Sender>,
    method: &str,
    path: &str,
) -> Result<String, String> {
    client::ready_sender(up, sender)
        .await
        .map_err(|e| format!("upstream control: {e}"))?;
    let s = sender.as_mut().expect("sender");
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", up.addr.to_string())
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = s
        .send_request(req)
        .await
        .map_err(|e| format!("upstream control {path}: {e}"))?;
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("upstream control {path}: {e}"))?
        .to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Counters of the upstream's flaky listener.
async fn upstream_stats(up: &Endpoint, ctl: &mut Option<Sender>) -> Result<(f64, f64), String> {
    let text = control(up, ctl, "GET", "/_stats").await?;
    let get = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    Ok((get("flaky_conns "), get("flaky_503s ")))
}

/// sse-edge's failovers and ejections so far (NaN for the peers).
async fn proxy_counts(proxy: Option<&Proxy>) -> (f64, f64) {
    let Some(admin) = proxy.and_then(|p| p.admin) else {
        return (f64::NAN, f64::NAN);
    };
    let Ok(text) = client::simple(admin, "GET", "/metrics").await else {
        return (f64::NAN, f64::NAN);
    };
    let sum = |name: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    (
        sum("sse_edge_failovers_total{"),
        sum("sse_edge_endpoint_ejections_total{"),
    )
}

/// One request the way `via` says, on the client's connection; a refused
/// one closes the switchable primary first and opens it again after, with
/// one untimed request it serves.
async fn one(
    ep: &Endpoint,
    up: &Endpoint,
    sender: &mut Option<Sender>,
    ctl: &mut Option<Sender>,
    via: Via,
    next_id: &AtomicU64,
) -> Result<Timed, String> {
    let id = next_id.fetch_add(1, Ordering::Relaxed);
    if via != Via::Refused {
        return timed(ep, sender, via, id).await;
    }
    control(up, ctl, "POST", "/_switch?on=0").await?;
    let r = timed(ep, sender, via, id).await;
    control(up, ctl, "POST", "/_switch?on=1").await?;
    let reset = timed(ep, sender, via, next_id.fetch_add(1, Ordering::Relaxed)).await;
    let r = r?;
    reset.map_err(|e| format!("after a refused request: {e}"))?;
    Ok(r)
}

/// The counters every failover cell records around its window.
struct Counters {
    conns: f64,
    f503s: f64,
    failovers: f64,
    ejections: f64,
}

async fn counters(
    up: &Endpoint,
    ctl: &mut Option<Sender>,
    proxy: Option<&Proxy>,
) -> Result<Counters, String> {
    let (conns, f503s) = upstream_stats(up, ctl).await?;
    let (failovers, ejections) = proxy_counts(proxy).await;
    Ok(Counters {
        conns,
        f503s,
        failovers,
        ejections,
    })
}

fn counter_metrics(a: &Counters, b: &Counters, m: &mut BTreeMap<&'static str, f64>) {
    let f503s = b.f503s - a.f503s;
    m.insert("primary_503s", f503s);
    if f503s > 0.0 {
        m.insert("primary_conns_per_503", (b.conns - a.conns) / f503s);
    }
    if b.failovers.is_finite() {
        m.insert("failovers_metric", b.failovers - a.failovers);
        m.insert("ejections_metric", b.ejections - a.ejections);
    }
}

/// `failover_c1`: see the module docs.
pub async fn c1(
    ctx: &Ctx,
    ep: &Endpoint,
    proxy: Option<&Proxy>,
    cell: &mut Cell,
) -> Result<(), String> {
    let up = Endpoint::plain(ctx.env.upstream);
    let (mut sender, mut ctl) = (None, None);
    let ids = AtomicU64::new(1);
    for i in 0..10 {
        for via in VIAS {
            one(ep, &up, &mut sender, &mut ctl, via, &ids)
                .await
                .map_err(|e| format!("warm-up {i}: {e}"))?;
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let a = counters(&up, &mut ctl, proxy).await?;
    let mut lat = Lat::default();
    let s0 = snap(ctx, proxy.map(|p| p.pid));
    for i in 0..ctx.sizes.fo_requests as usize {
        for k in 0..VIAS.len() {
            let via = VIAS[(i + k) % VIAS.len()];
            let r = one(ep, &up, &mut sender, &mut ctl, via, &ids).await;
            if r.is_err() {
                sender = None;
            }
            lat.record(via, r);
        }
    }
    let s1 = snap(ctx, proxy.map(|p| p.pid));
    let b = counters(&up, &mut ctl, proxy).await?;
    let m = &mut cell.m;
    common(ctx, &s0, &s1, m);
    counter_metrics(&a, &b, m);
    finish(lat, m)
}

/// `failover_c32`: see the module docs.
pub async fn c32(
    ctx: &Ctx,
    ep: &Endpoint,
    proxy: Option<&Proxy>,
    cell: &mut Cell,
) -> Result<(), String> {
    let sizes = &ctx.sizes;
    let up = Endpoint::plain(ctx.env.upstream);
    let mut ctl = None;
    let ids = Arc::new(AtomicU64::new(1));
    // Warm-up: every connection once, the failing way on one.
    let mut warm = None;
    for via in [Via::Healthy, Via::Fail503, Via::Healthy] {
        let id = ids.fetch_add(1, Ordering::Relaxed);
        timed(ep, &mut warm, via, id)
            .await
            .map_err(|e| format!("warm-up: {e}"))?;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let a = counters(&up, &mut ctl, proxy).await?;
    let s0 = snap(ctx, proxy.map(|p| p.pid));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(sizes.fo_secs);
    let first = tokio::time::Instant::now() + Duration::from_millis(20);
    let period = Duration::from_millis(sizes.wave_ms);
    let mut tasks = Vec::new();
    for c in 0..sizes.clients {
        let ep = ep.clone();
        let ids = ids.clone();
        let via = if c == 0 { Via::Fail503 } else { Via::Healthy };
        tasks.push(tokio::spawn(async move {
            let mut lat = Lat::default();
            let mut sender = None;
            // Connected before the first wave, so waves time streams.
            let _ = client::ready_sender(&ep, &mut sender).await;
            let mut tick = tokio::time::interval_at(first, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                if Instant::now() >= deadline {
                    break;
                }
                let id = ids.fetch_add(1, Ordering::Relaxed);
                let r = timed(&ep, &mut sender, via, id).await;
                if r.is_err() {
                    sender = None;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                lat.record(via, r);
            }
            lat
        }));
    }
    let mut lat = Lat::default();
    for t in tasks {
        if let Ok(l) = t.await {
            lat.merge(l);
        }
    }
    let s1 = snap(ctx, proxy.map(|p| p.pid));
    let b = counters(&up, &mut ctl, proxy).await?;
    let m = &mut cell.m;
    common(ctx, &s0, &s1, m);
    counter_metrics(&a, &b, m);
    finish(lat, m)
}

fn finish(lat: Lat, m: &mut BTreeMap<&'static str, f64>) -> Result<(), String> {
    let (failed, first) = (lat.failed, lat.first_error.clone());
    lat.metrics(m);
    if failed == 0 {
        Ok(())
    } else {
        Err(format!(
            "{failed} failed requests, first: {}",
            first.unwrap_or_default()
        ))
    }
}
