//! Area `soak`: many clients against an upstream that mixes every fault,
//! checked per stream (complete and in order, or ended by an error event),
//! with the relay's memory, pool and request counts checked afterwards.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sse_edge::internals::whatwg;

use crate::common::{HB, mib, rss_kib, settled, sleep, stop_proc};
use crate::support::*;
use crate::{CaseResult, note};

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

pub(crate) async fn soak_mixed() -> CaseResult {
    const WORKERS: u64 = 200;
    const MAX_IDLE: usize = 16;
    let up = soak_upstream().await;
    let max_idle = MAX_IDLE.to_string();
    let relay = RelayProc::spawn_to(
        &up.url(),
        &[
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
        ],
    )
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
                if let Ok(m) = try_metrics(admin).await {
                    for v in metric_values(&m, "sse_edge_upstream_connections", &[]) {
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
    let answered = metric_sum(&m, "sse_edge_requests_total", &[]);
    let idle: f64 = metric_values(&m, "sse_edge_upstream_idle_connections", &[])
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
    // The idle list keeps what was in use at once lately (one connection
    // per worker at most), never more.
    ensure!(
        idle <= WORKERS as f64,
        "{idle} idle upstream connections > {WORKERS} workers"
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
