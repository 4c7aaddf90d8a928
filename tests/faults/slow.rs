//! Area `slow`: slowloris heads, idle connections, request bodies that
//! trickle in, and a client that never reads its stream. Each must be cut
//! off by its timeout without holding resources or blocking others.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{HB, healthy, mib, ms, rss_kib, settled, sleep, stop_proc};
use crate::raw::{RawReply, h2_frame, raw_roundtrip, read_until_close};
use crate::support::*;
use crate::{CaseResult, note};

pub(crate) async fn slow_loris_head() -> CaseResult {
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
pub(crate) async fn slow_idle_connections() -> CaseResult {
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
    // server.idle_timeout (1 s here): GOAWAY after 1 to 1.125 s idle, then
    // up to 1 s more for the PING this raw client never acknowledges.
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

pub(crate) async fn slow_body_json() -> CaseResult {
    let (_, up) = slow_body_case("application/json").await?;
    ensure!(
        up.request_count() == 1 && up.connections() == 1,
        "a buffered body that stalls never reaches the upstream ({} requests)",
        up.request_count()
    );
    Ok(())
}

pub(crate) async fn slow_body_streamed() -> CaseResult {
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

pub(crate) async fn slow_never_reading_client() -> CaseResult {
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
    let relay = RelayProc::spawn_to(
        &up.url(),
        &[
            "--heartbeat",
            HB,
            "--server-write-timeout",
            "2s",
            "--drain-timeout",
            "1s",
        ],
    )
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
