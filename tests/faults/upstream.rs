//! Area `upstream`: upstreams that refuse connections, stall or reset
//! before their headers, reset or end a stream early, answer garbage, or go
//! silent mid-body. Clients must get the dialect's error answer (or error
//! event once the stream is committed) on time.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sse_edge::internals::whatwg;
use tokio::io::AsyncWriteExt;

use crate::common::{HB, ms, settled, sleep};
use crate::support::*;
use crate::{CaseResult, note};

pub(crate) async fn upstream_refuses_connections() -> CaseResult {
    let (_reserved, dead) = refusing_port();
    let url = format!("http://{dead}");
    let (relay, mut log) = start_logged(&[
        "--upstream",
        &url,
        "--heartbeat",
        HB,
        "--retry-backoff",
        "200ms",
    ])
    .await;

    let r = send(relay.listen, post("/v1/chat/completions", "{}")).await?;
    expect_error(&r, 502, "upstream_unreachable")?;
    let r = send(relay.listen, post("/v1/messages", "{}")).await?;
    expect_error(&r, 502, "upstream_unreachable")?;
    log.outcome("/v1/chat/completions", "relay_error").await?;

    // A streaming request is retried (3 x 200 ms backoff, doubled): longer
    // than the heartbeat, so it is committed and ends in one error event.
    let r = send(relay.listen, stream_post("/v1/chat/completions")).await?;
    ensure!(
        r.header("sse-edge-early-commit") == Some("1"),
        "no early commit: {:?}",
        r.headers
    );
    expect_error_event(&r, "upstream_unreachable")?;
    let line = log
        .outcome("/v1/chat/completions", "upstream_connect")
        .await?;
    ensure!(
        line["upstream_attempts"] == 4,
        "access log says upstream_attempts {} for a committed stream whose 4 connects failed",
        line["upstream_attempts"]
    );
    note(format!("streamed error after {} ms", ms(r.took)));
    let m = settled(relay.admin, true).await?;
    let connect = metric_or_zero(
        &m,
        "sse_edge_upstream_errors_total",
        &[("class", "connect")],
    );
    ensure!(connect >= 3.0, "connect errors counted: {connect}");
    stop_relay(relay).await;
    Ok(())
}

pub(crate) async fn upstream_stalls_before_headers() -> CaseResult {
    let silent = SilentListener::start().await;
    let url = format!("http://{}", silent.addr);
    let (relay, mut log) = start_logged(&[
        "--upstream",
        &url,
        "--heartbeat",
        HB,
        "--upstream-first-byte-timeout",
        "500ms",
    ])
    .await;
    let r = send(relay.listen, post("/v1/chat/completions", "{}")).await?;
    expect_error(&r, 504, "upstream_timeout")?;
    ensure!(
        r.took >= Duration::from_millis(450) && r.took < Duration::from_secs(2),
        "504 after {:?}, want ~500 ms",
        r.took
    );
    let plain = r.took;

    // Streaming: committed at the heartbeat, then the deadline passes.
    let r = send(relay.listen, stream_post("/v1/chat/completions")).await?;
    ensure!(
        r.header("sse-edge-early-commit") == Some("1"),
        "no early commit"
    );
    expect_error_event(&r, "upstream_timeout")?;
    ensure!(
        r.took >= Duration::from_millis(450) && r.took < Duration::from_secs(2),
        "error event after {:?}, want ~500 ms",
        r.took
    );
    log.outcome("/v1/chat/completions", "upstream_timeout")
        .await?;
    note(format!(
        "504 after {} ms, error event after {} ms",
        ms(plain),
        ms(r.took)
    ));
    ensure!(
        silent.accepted.load(Ordering::SeqCst) >= 2,
        "the upstream was contacted"
    );
    // The abandoned upstream connections are closed, not kept checked out.
    settled(relay.admin, true).await?;
    stop_relay(relay).await;
    Ok(())
}

pub(crate) async fn upstream_resets_before_headers() -> CaseResult {
    let up = RawUpstream::start(|mut s, _| async move {
        read_head(&mut s).await;
        reset(s);
    })
    .await;
    let url = up.url();
    // With `retry_on_reset` off, a reset after the request was written is
    // not retried: each request is sent once.
    for (retry_on_reset, sends) in [("false", 1), ("true", 3)] {
        let before = up.accepted.load(Ordering::SeqCst);
        let args = [
            "--upstream",
            &url,
            "--heartbeat",
            HB,
            "--retry-on-reset",
            retry_on_reset,
            "--retry-attempts",
            "2",
            "--retry-backoff",
            "50ms",
        ];
        let (relay, mut log) = start_logged(&args).await;
        let r = send(relay.listen, post("/v1/chat/completions", "{}")).await?;
        expect_error(&r, 502, "upstream_error")?;
        let r = send(relay.listen, stream_post("/v1/messages")).await?;
        if r.status == 200 {
            expect_error_event(&r, "api_error")?;
        } else {
            expect_error(&r, 502, "upstream_error")?;
        }
        let line = log.outcome("/v1/chat/completions", "relay_error").await?;
        ensure!(
            line["upstream_attempts"] == sends,
            "retry_on_reset {retry_on_reset}: access log {line}"
        );
        let got = up.accepted.load(Ordering::SeqCst) - before;
        ensure!(
            got == 2 * sends,
            "retry_on_reset {retry_on_reset}: each request sent {sends} time(s), got {got} connections"
        );
        let m = settled(relay.admin, true).await?;
        let resets = metric_or_zero(&m, "sse_edge_upstream_errors_total", &[("class", "reset")]);
        ensure!(
            resets == 2.0,
            "reset errors counted once per request: {resets}"
        );
        stop_relay(relay).await;
    }
    Ok(())
}

const SSE_HEAD: &str =
    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";

fn chunk(data: &str) -> String {
    format!("{:x}\r\n{data}\r\n", data.len())
}

pub(crate) async fn upstream_resets_mid_stream() -> CaseResult {
    let up = RawUpstream::start(|mut s, _| async move {
        read_head(&mut s).await;
        let mut out = String::from(SSE_HEAD);
        out.push_str(&chunk("data: {\"i\":0}\n\ndata: {\"i\":1}\n\n"));
        out.push_str(&chunk("data: {\"i\":2,\"cut"));
        let _ = s.write_all(out.as_bytes()).await;
        sleep(100).await;
        reset(s);
    })
    .await;
    let url = up.url();
    let (relay, mut log) = start_logged(&["--upstream", &url, "--heartbeat", HB]).await;
    let r = send(relay.listen, stream_post("/v1/chat/completions")).await?;
    expect_error_event(&r, "upstream_reset")?;
    let events = whatwg::parse(&r.body);
    ensure!(
        events.len() >= 3 && events[0].data == r#"{"i":0}"# && events[1].data == r#"{"i":1}"#,
        "the events before the reset must arrive intact: {:?}",
        r.text()
    );
    log.outcome("/v1/chat/completions", "upstream_reset")
        .await?;
    let m = settled(relay.admin, true).await?;
    let resets = metric_or_zero(&m, "sse_edge_upstream_errors_total", &[("class", "reset")]);
    ensure!(
        resets == 1.0,
        "a mid-stream SSE reset counted {resets} times in sse_edge_upstream_errors_total{{class=\"reset\"}}"
    );
    stop_relay(relay).await;
    Ok(())
}

pub(crate) async fn upstream_ends_early() -> CaseResult {
    let up = Upstream::start(Mode::Http1, |_| async {
        let mut ev = sse_events(4);
        ev.pop(); // no [DONE]
        sse_response(stream_frames(ev, Duration::from_millis(10), None))
    })
    .await;
    let url = up.url();
    let (relay, mut log) = start_logged(&["--upstream", &url, "--heartbeat", HB]).await;
    let r = send(relay.listen, stream_post("/v1/chat/completions")).await?;
    expect_error_event(&r, "upstream_truncated")?;
    let events = whatwg::parse(&r.body);
    ensure!(
        events.len() == 4,
        "3 upstream events + 1 error event: {:?}",
        r.text()
    );
    let line = log
        .outcome("/v1/chat/completions", "upstream_truncated")
        .await?;
    ensure!(
        line["ending"] == "truncated",
        "access log says ending {}: {line}",
        line["ending"]
    );
    let m = settled(relay.admin, true).await?;
    let n = metric_or_zero(
        &m,
        "sse_edge_upstream_errors_total",
        &[("class", "truncated")],
    );
    ensure!(n == 1.0, "truncated errors counted: {n}");
    stop_relay(relay).await;
    Ok(())
}

pub(crate) async fn upstream_answers_garbage() -> CaseResult {
    let up = RawUpstream::start(|mut s, i| async move {
        read_head(&mut s).await;
        let junk: &[u8] = if i % 2 == 0 {
            b"SSH-2.0-OpenSSH_9.6\r\n\x00\x01\x02garbage\r\n\r\n"
        } else {
            b"HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok"
        };
        let _ = s.write_all(junk).await;
        sleep(50).await;
    })
    .await;
    let url = up.url();
    let (relay, mut log) = start_logged(&["--upstream", &url, "--heartbeat", HB]).await;
    for _ in 0..2 {
        let r = send(relay.listen, post("/v1/chat/completions", "{}")).await?;
        expect_error(&r, 502, "upstream_error")?;
    }
    let r = send(relay.listen, stream_post("/v1/chat/completions")).await?;
    expect_error(&r, 502, "upstream_error")?;
    log.outcome("/v1/chat/completions", "relay_error").await?;
    let m = settled(relay.admin, true).await?;
    let n = metric_or_zero(
        &m,
        "sse_edge_upstream_errors_total",
        &[("class", "protocol")],
    );
    ensure!(n == 3.0, "protocol errors counted: {n}");
    stop_relay(relay).await;
    Ok(())
}

pub(crate) async fn upstream_silent_mid_sse() -> CaseResult {
    let stops = Arc::new(Stops::default());
    let s = stops.clone();
    let up = Upstream::start(Mode::Http1, move |_| {
        let stops = s.clone();
        async move {
            let (tx, body) = channel_body();
            tokio::spawn(async move {
                let _ = tx
                    .send(Ok(Bytes::from_static(b"data: {\"i\":0}\n\n")))
                    .await;
                tx.closed().await; // silent until the relay goes away
                stops.stopped();
            });
            sse_response(body)
        }
    })
    .await;
    let url = up.url();
    let (relay, mut log) = start_logged(&[
        "--upstream",
        &url,
        "--heartbeat",
        HB,
        "--upstream-read-timeout",
        "1s",
    ])
    .await;
    let r = send(relay.listen, stream_post("/v1/chat/completions")).await?;
    let ended = Instant::now();
    expect_error_event(&r, "upstream_timeout")?;
    ensure!(
        r.text().contains(": keepalive"),
        "keepalives during the silence: {:?}",
        r.text()
    );
    ensure!(
        r.took >= Duration::from_millis(950) && r.took < Duration::from_millis(2500),
        "error event after {:?}, want ~1 s (read timeout + one heartbeat at most)",
        r.took
    );
    let stopped = stops.wait(1, Duration::from_secs(2)).await?;
    log.outcome("/v1/chat/completions", "upstream_timeout")
        .await?;
    note(format!(
        "error event after {} ms, upstream released {} ms later",
        ms(r.took),
        ms(stopped.saturating_duration_since(ended))
    ));
    settled(relay.admin, true).await?;
    stop_relay(relay).await;
    Ok(())
}

pub(crate) async fn upstream_silent_mid_json() -> CaseResult {
    let up = Upstream::start(Mode::Http1, |_| async {
        let (tx, body) = channel_body();
        tokio::spawn(async move {
            let _ = tx.send(Ok(Bytes::from(vec![b' '; 40]))).await;
            tx.closed().await;
        });
        response(
            200,
            &[
                ("content-type", "application/json"),
                ("content-length", "100"),
            ],
            body,
        )
    })
    .await;
    let url = up.url();
    let (relay, mut log) = start_logged(&[
        "--upstream",
        &url,
        "--heartbeat",
        HB,
        "--upstream-read-timeout",
        "1s",
    ])
    .await;
    let r = send(relay.listen, get("/v1/models")).await?;
    ensure!(r.status == 200, "status {}", r.status);
    ensure!(
        r.err.is_some(),
        "a body cut by the read timeout must not end cleanly ({} bytes)",
        r.body.len()
    );
    ensure!(
        r.body.len() == 40,
        "got {} of the 40 bytes sent",
        r.body.len()
    );
    ensure!(
        r.took >= Duration::from_millis(950) && r.took < Duration::from_millis(2500),
        "cut after {:?}, want ~1 s",
        r.took
    );
    note(format!("body cut after {} ms", ms(r.took)));
    log.outcome("/v1/models", "upstream_timeout").await?;
    settled(relay.admin, true).await?;
    stop_relay(relay).await;
    Ok(())
}
