//! Area `client`: clients that leave mid-stream (HTTP/1.1 and HTTP/2
//! upstreams, during an early commit, and many times in a row). The relay
//! must cancel the upstream stream promptly and leak nothing.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

use crate::common::{HB, fd_count, frames, healthy, ms, proc_status, settled, sleep, stop_proc};
use crate::support::*;
use crate::{CaseResult, note};

/// Starts a stream, reads 3 frames, and leaves: the instant it left.
async fn abandon(addr: SocketAddr) -> Result<Instant, String> {
    let mut c = Client::h1(addr).await;
    let res = c
        .send(stream_post("/v1/chat/completions"))
        .await
        .map_err(|e| format!("send: {e}"))?;
    ensure!(res.status() == 200, "status {}", res.status());
    let mut body = res.into_body();
    frames(&mut body, 3).await?;
    drop(body);
    drop(c);
    Ok(Instant::now())
}

pub(crate) async fn client_disconnect_h1() -> CaseResult {
    let stops = Arc::new(Stops::default());
    let up = Upstream::endless(Mode::Http1, Duration::from_millis(20), stops.clone()).await;
    let url = up.url();
    let (relay, mut log) = start_logged(&["--upstream", &url, "--heartbeat", HB]).await;
    let left = abandon(relay.listen).await?;
    let stopped = stops.wait(1, Duration::from_secs(3)).await?;
    let delay = stopped.saturating_duration_since(left);
    ensure!(
        delay < Duration::from_secs(1),
        "upstream connection closed {delay:?} after the client left"
    );
    note(format!("upstream closed {} ms after the client", ms(delay)));
    log.outcome("/v1/chat/completions", "client_disconnected")
        .await?;
    let m = settled(relay.admin, true).await?;
    let n = metric_or_zero(&m, "sse_edge_client_disconnects_total", &[]);
    ensure!(n == 1.0, "client disconnects counted: {n}");
    healthy(relay.listen, "/ok").await?;
    ensure!(up.connections() == 2, "the cut connection was not reused");
    stop_relay(relay).await;
    Ok(())
}

pub(crate) async fn client_disconnect_h2() -> CaseResult {
    let stops = Arc::new(Stops::default());
    let up = Upstream::endless(Mode::H2c, Duration::from_millis(20), stops.clone()).await;
    let (relay, mut log) = start_logged_h2c(&up, &["--heartbeat", HB]).await;
    // An HTTP/2 client resets its stream and keeps its connection.
    let mut c = Client::h2(relay.listen).await;
    let res = c
        .send(stream_post("/v1/chat/completions"))
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut body = res.into_body();
    frames(&mut body, 3).await?;
    drop(body);
    let left = Instant::now();
    let stopped = stops.wait(1, Duration::from_secs(3)).await?;
    let delay = stopped.saturating_duration_since(left);
    ensure!(
        delay < Duration::from_secs(1),
        "upstream stream reset {delay:?} after the client left"
    );
    note(format!(
        "upstream stream reset {} ms after the client",
        ms(delay)
    ));
    log.outcome("/v1/chat/completions", "client_disconnected")
        .await?;
    // Both connections stay up for other streams.
    let r = c.get("/ok").await;
    ensure!(
        r.status == 200,
        "next stream on the client connection: {}",
        r.status
    );
    ensure!(
        up.connections() == 1,
        "the upstream HTTP/2 connection was replaced ({} connections)",
        up.connections()
    );
    let last = up.requests().pop().map(|r| r.conn);
    ensure!(last == Some(1), "second request on connection {last:?}");
    drop(c);
    let m = settled(relay.admin, false).await?;
    let n = metric_or_zero(&m, "sse_edge_client_disconnects_total", &[]);
    ensure!(n == 1.0, "client disconnects counted: {n}");
    stop_relay(relay).await;
    Ok(())
}

pub(crate) async fn client_disconnect_early_commit() -> CaseResult {
    // The upstream reads the request and stays silent; it records when the
    // relay closes the connection (the pending request cancelled).
    let closed: Arc<Mutex<Option<Instant>>> = Arc::default();
    let c2 = closed.clone();
    let up = RawUpstream::start(move |mut s, _| {
        let closed = c2.clone();
        async move {
            read_head(&mut s).await;
            let mut buf = [0u8; 1024];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
            *closed.lock().unwrap() = Some(Instant::now());
        }
    })
    .await;
    let url = up.url();
    let (relay, mut log) = start_logged(&["--upstream", &url, "--heartbeat", HB]).await;
    let mut c = Client::h1(relay.listen).await;
    let res = c
        .send(stream_post("/v1/chat/completions"))
        .await
        .map_err(|e| format!("send: {e}"))?;
    ensure!(
        res.headers().get("sse-edge-early-commit").is_some(),
        "no early commit"
    );
    let mut body = res.into_body();
    frames(&mut body, 1).await?; // one keepalive
    drop(body);
    drop(c);
    let left = Instant::now();
    let deadline = left + Duration::from_secs(3);
    let at = loop {
        if let Some(at) = *closed.lock().unwrap() {
            break at;
        }
        ensure!(
            Instant::now() < deadline,
            "the pending upstream request was not cancelled within 3 s"
        );
        sleep(5).await;
    };
    let delay = at.saturating_duration_since(left);
    ensure!(
        delay < Duration::from_secs(1),
        "upstream request cancelled {delay:?} after the client left"
    );
    note(format!(
        "upstream request cancelled {} ms after the client",
        ms(delay)
    ));
    log.outcome("/v1/chat/completions", "client_disconnected")
        .await?;
    let m = settled(relay.admin, true).await?;
    ensure!(
        metric_or_zero(&m, "sse_edge_client_disconnects_total", &[]) == 1.0,
        "client disconnects counted"
    );
    stop_relay(relay).await;
    Ok(())
}

pub(crate) async fn client_sequential_disconnects() -> CaseResult {
    const N: usize = 200;
    const WARM: usize = 10;
    let stops = Arc::new(Stops::default());
    let up = Upstream::endless(Mode::Http1, Duration::from_millis(10), stops.clone()).await;
    let relay = RelayProc::spawn_to(&up.url(), &["--heartbeat", HB, "--drain-timeout", "1s"]).await;
    let pid = relay.pid();
    let mut worst = Duration::ZERO;
    let mut baseline = None;
    for i in 0..N {
        if i == WARM {
            stops.wait(WARM, Duration::from_secs(3)).await?;
            settled(relay.admin, true).await?;
            baseline = Some((fd_count(pid)?, proc_status(pid, "Threads:")?));
        }
        let left = abandon(relay.listen).await?;
        let stopped = stops.wait(i + 1, Duration::from_secs(3)).await?;
        worst = worst.max(stopped.saturating_duration_since(left));
    }
    let m = settled(relay.admin, true).await?;
    let n = metric_or_zero(&m, "sse_edge_client_disconnects_total", &[]);
    ensure!(n == N as f64, "client disconnects counted: {n}, want {N}");
    let (fd0, thr0) = baseline.unwrap();
    // Closed sockets may take a moment to leave the table.
    let deadline = Instant::now() + Duration::from_secs(3);
    let fds = loop {
        let fds = fd_count(pid)?;
        if fds <= fd0 || Instant::now() > deadline {
            break fds;
        }
        sleep(50).await;
    };
    let threads = proc_status(pid, "Threads:")?;
    ensure!(
        fds <= fd0,
        "relay fds {fd0} after warm-up, {fds} after {N} disconnects"
    );
    ensure!(
        threads <= thr0 + 2,
        "relay threads {thr0} after warm-up, {threads} after {N} disconnects"
    );
    ensure!(
        worst < Duration::from_secs(1),
        "slowest upstream cancel {worst:?}"
    );
    let lines = relay.stdout();
    let logged = lines.matches("\"outcome\":\"client_disconnected\"").count();
    ensure!(
        logged == N,
        "{logged} access-log lines say client_disconnected, want {N}"
    );
    note(format!(
        "{N} disconnects, slowest upstream cancel {} ms, fds {fd0}->{fds}, threads {thr0}->{threads}",
        ms(worst)
    ));
    stop_proc(relay).await;
    Ok(())
}
