//! Area `limits`: oversized headers, too many headers, long URIs, bodies
//! over the limit, and the connection and in-flight request caps. Each must
//! get its status code and leave the relay healthy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{HB, frames, healthy, ms, settled, sleep};
use crate::raw::expect_raw_status;
use crate::support::*;
use crate::{CaseResult, note};

async fn limits_relay() -> (Upstream, sse_edge::Running, CapturedLog) {
    let up = Upstream::ok(Mode::Http1).await;
    let url = up.url();
    let (relay, log) = start_logged(&["--upstream", &url]).await;
    (up, relay, log)
}

pub(crate) async fn limits_big_header() -> CaseResult {
    let (up, relay, _log) = limits_relay().await;
    let mut raw = b"GET /ok HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    raw.extend(std::iter::repeat_n(b'a', 70 * 1024));
    raw.extend_from_slice(b"\r\n\r\n");
    expect_raw_status(relay.listen, raw, 431).await?;
    ensure!(up.request_count() == 0, "the upstream got the request");
    settled(relay.admin, true).await?;
    stop_relay(relay).await;
    Ok(())
}

pub(crate) async fn limits_many_headers() -> CaseResult {
    let (up, relay, _log) = limits_relay().await;
    let mut raw = String::from("GET /ok HTTP/1.1\r\nHost: x\r\n");
    for i in 0..150 {
        raw.push_str(&format!("X-H{i}: v\r\n"));
    }
    raw.push_str("\r\n");
    expect_raw_status(relay.listen, raw.into_bytes(), 431).await?;
    ensure!(up.request_count() == 0, "the upstream got the request");
    settled(relay.admin, true).await?;
    stop_relay(relay).await;
    Ok(())
}

pub(crate) async fn limits_long_uri() -> CaseResult {
    let (up, relay, mut log) = limits_relay().await;
    let path = format!("/v1/chat/completions?q={}", "a".repeat(9 * 1024));
    let r = send(relay.listen, post(&path, "{}")).await?;
    expect_error(&r, 414, "uri_too_long")?;
    ensure!(up.request_count() == 0, "the upstream got the request");
    log.find("for the 414", |v| v["status"] == 414).await?;
    settled(relay.admin, true).await?;
    stop_relay(relay).await;
    Ok(())
}

pub(crate) async fn limits_body() -> CaseResult {
    let up = Upstream::start(Mode::Http1, |req: Recorded| async move {
        json_response(200, format!(r#"{{"got":{}}}"#, req.body.len()))
    })
    .await;
    let url = up.url();
    let (relay, _log) =
        start_logged(&["--upstream", &url, "--server-max-request-body", "1KiB"]).await;

    // Announced too large: refused at once, before any body byte is sent.
    let head = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n";
    let s = TcpStream::connect(relay.listen)
        .await
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let (r, mut w) = s.into_split();
    w.write_all(head.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut r = r;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(2).any(|w| w == b"}}") {
        let n = tokio::time::timeout(Duration::from_secs(2), r.read(&mut buf))
            .await
            .map_err(|_| "no 413 before the body was sent")?
            .map_err(|e| e.to_string())?;
        ensure!(n > 0, "closed without an answer");
        got.extend_from_slice(&buf[..n]);
    }
    let fast = start.elapsed();
    let text = String::from_utf8_lossy(&got).into_owned();
    ensure!(text.starts_with("HTTP/1.1 413"), "{text}");
    ensure!(
        fast < Duration::from_millis(500),
        "413 took {fast:?} without the body"
    );
    drop((r, w));

    // Chunked, buffered (JSON): refused while reading, upstream untouched.
    for ct in ["application/json", "text/plain"] {
        let (tx, body) = channel_body();
        let feeder = tokio::spawn(async move {
            for _ in 0..8 {
                if tx.send(Ok(Bytes::from(vec![b'y'; 512]))).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        let req = Request::post("/v1/chat/completions")
            .header("content-type", ct)
            .body(body)
            .unwrap();
        let mut c = Client::h1(relay.listen).await;
        match c.send(req).await {
            Ok(res) => {
                let status = res.status().as_u16();
                let (frames, _) = read_frames(res.into_body()).await;
                ensure!(
                    status == 413,
                    "chunked {ct} over the limit: {status} {}",
                    String::from_utf8_lossy(&joined(&frames))
                );
            }
            Err(e) => note(format!("chunked {ct}: upload cut ({e})")),
        }
        feeder.abort();
        if ct == "application/json" {
            ensure!(
                up.connections() == 0,
                "a buffered oversized body reached the upstream"
            );
        }
    }
    sleep(200).await;
    ensure!(
        !up.requests()
            .iter()
            .any(|r| r.body_complete && r.body.len() > 1024),
        "the upstream received a whole oversized body"
    );
    note(format!("413 in {} ms without the body", ms(fast)));
    settled(relay.admin, true).await?;
    stop_relay(relay).await;
    Ok(())
}

pub(crate) async fn limits_max_connections() -> CaseResult {
    let stops = Arc::new(Stops::default());
    let up = Upstream::endless(Mode::Http1, Duration::from_millis(50), stops).await;
    let url = up.url();
    let (relay, _log) = start_logged(&[
        "--upstream",
        &url,
        "--heartbeat",
        HB,
        "--server-max-connections",
        "4",
    ])
    .await;
    let mut live = Vec::new();
    for _ in 0..4 {
        let mut c = Client::h1(relay.listen).await;
        let res = c
            .send(stream_post("/v1/chat/completions"))
            .await
            .map_err(|e| format!("send: {e}"))?;
        let mut body = res.into_body();
        frames(&mut body, 1).await?;
        live.push((c, body));
    }
    let raw = format!("GET /ok HTTP/1.1\r\nHost: {}\r\n\r\n", relay.listen);
    let reply = expect_raw_status(relay.listen, raw.into_bytes(), 503).await?;
    let lower = reply.text().to_ascii_lowercase();
    ensure!(lower.contains("retry-after: 1"), "{lower}");
    ensure!(reply.closed.is_some(), "the refused connection stays open");
    for (_, body) in &mut live {
        frames(body, 3).await?;
    }
    let m = try_metrics(relay.admin).await?;
    ensure!(
        metric_or_zero(&m, "sse_edge_connections_refused_total", &[]) == 1.0,
        "refusals counted"
    );
    drop(live);
    settled(relay.admin, true).await?;
    healthy(relay.listen, "/ok").await?;
    stop_relay(relay).await;
    Ok(())
}

pub(crate) async fn limits_max_requests() -> CaseResult {
    let stops = Arc::new(Stops::default());
    let up = Upstream::endless(Mode::Http1, Duration::from_millis(50), stops).await;
    let url = up.url();
    let (relay, _log) = start_logged(&[
        "--upstream",
        &url,
        "--heartbeat",
        HB,
        "--server-max-requests",
        "2",
    ])
    .await;
    let mut live = Vec::new();
    for _ in 0..2 {
        let mut c = Client::h1(relay.listen).await;
        let res = c
            .send(stream_post("/v1/chat/completions"))
            .await
            .map_err(|e| format!("send: {e}"))?;
        let mut body = res.into_body();
        frames(&mut body, 1).await?;
        live.push((c, body));
    }
    for (path, code) in [
        ("/v1/chat/completions", "overloaded"),
        ("/v1/messages", "overloaded"),
    ] {
        let r = send(relay.listen, post(path, "{}")).await?;
        expect_error(&r, 503, code)?;
        ensure!(r.header("retry-after") == Some("1"), "{:?}", r.headers);
        if path == "/v1/messages" {
            let v: Value = serde_json::from_slice(&r.body).map_err(|e| e.to_string())?;
            ensure!(
                v["error"]["type"] == "overloaded_error",
                "Anthropic shape: {v}"
            );
        }
    }
    for (_, body) in &mut live {
        frames(body, 2).await?;
    }
    drop(live);
    settled(relay.admin, true).await?;
    healthy(relay.listen, "/ok").await?;
    stop_relay(relay).await;
    Ok(())
}
