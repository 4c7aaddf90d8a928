//! Area `h2`: HTTP/2 attacks on the client side (rapid reset, CONTINUATION
//! flood). The relay must shed them with bounded CPU and memory while
//! streams on other connections keep flowing.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::Request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;

use crate::common::{HB, healthy, mib, ms, rss_kib, settled, sleep, stop_proc};
use crate::raw::h2_frame;
use crate::support::*;
use crate::{CaseResult, note};

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

pub(crate) async fn h2_rapid_reset() -> CaseResult {
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
        &try_metrics(relay.admin).await?,
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

pub(crate) async fn h2_continuation_flood() -> CaseResult {
    const FRAMES: usize = 20_000;
    let up = sse_and_ok_upstream().await;
    let relay = RelayProc::spawn_to(&up.url(), &["--heartbeat", HB, "--drain-timeout", "1s"]).await;
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
