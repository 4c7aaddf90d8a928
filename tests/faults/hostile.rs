//! Area `hostile`: upstream answers that try to make the relay lie to its
//! client (a length the relay's own bytes would break, headers posing as
//! the relay's, framing fields smuggled in trailers, a body that fails
//! before its first byte), request shapes the relay cannot forward
//! faithfully, and what the logs may reveal. Each case writes the exact
//! upstream bytes and checks exactly what the client receives, over
//! HTTP/1.1 and HTTP/2.

use std::time::{Duration, Instant};

use http::Request;
use http_body_util::BodyExt;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncWriteExt;

use crate::common::{HB, settled, sleep};
use crate::raw::raw_roundtrip;
use crate::support::*;
use crate::{CaseResult, note};

/// `200 text/event-stream` with a `Content-Length` that fits the upstream's
/// bytes exactly, but not the stream the relay sends: the heartbeats it
/// writes while the upstream pauses, and the error event it appends because
/// no `[DONE]` came. The client must get every byte of that, not a stream
/// cut at the upstream's length that looks complete.
pub(crate) async fn event_stream_with_content_length() -> CaseResult {
    const EVENT: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n";
    let up = RawUpstream::start(|mut s, _| async move {
        read_head(&mut s).await;
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n",
            EVENT.len() * 2
        );
        let _ = s.write_all(head.as_bytes()).await;
        let _ = s.write_all(EVENT.as_bytes()).await;
        sleep(800).await; // two heartbeats' worth of silence
        let _ = s.write_all(EVENT.as_bytes()).await;
        sleep(50).await;
    })
    .await;
    let url = up.url();
    let (relay, mut log) = start_logged(&["--upstream", &url, "--heartbeat", HB]).await;
    for (proto, r) in [
        (
            "HTTP/1.1",
            send(relay.listen, stream_post("/v1/chat/completions")).await?,
        ),
        (
            "HTTP/2",
            send_h2(relay.listen, stream_post("/v1/chat/completions")).await?,
        ),
    ] {
        ensure!(
            r.header("content-length").is_none(),
            "{proto}: the upstream's content-length reached the client: {:?}",
            r.headers
        );
        expect_error_event(&r, "upstream_truncated").map_err(|e| format!("{proto}: {e}"))?;
        let text = r.text();
        ensure!(
            text.matches(EVENT).count() == 2 && text.contains(": keepalive"),
            "{proto}: want both events and the keepalives between them: {text:?}"
        );
        log.outcome("/v1/chat/completions", "upstream_truncated")
            .await?;
    }
    settled(relay.admin, false).await?;
    stop_relay(relay).await;
    Ok(())
}

/// A non-streaming answer whose body breaks before its first byte (a chunk
/// size that is not hex): until the client has a status this is still a
/// `502` in the dialect's shape, not an empty reply (HTTP/1.1) or a reset
/// stream (HTTP/2) logged as `200`.
pub(crate) async fn body_fails_before_first_byte() -> CaseResult {
    let up = RawOrigin::answering(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
        Then::Close,
    )
    .await;
    let url = up.url();
    let (relay, mut log) = start_logged(&["--upstream", &url]).await;
    for (proto, path, r) in [
        (
            "HTTP/1.1",
            "/v1/chat/completions",
            send(relay.listen, post("/v1/chat/completions", "{}")).await?,
        ),
        (
            "HTTP/2",
            "/v1/messages",
            send_h2(relay.listen, post("/v1/messages", "{}")).await?,
        ),
    ] {
        expect_error(&r, 502, "upstream_error").map_err(|e| format!("{proto}: {e}"))?;
        let line = log.outcome(path, "relay_error").await?;
        ensure!(
            line["status"] == 502
                && line["upstream_status"] == 200
                && line["failed_attempts"][0]["class"] == "protocol",
            "{proto}: access log: {line}"
        );
    }
    let m = settled(relay.admin, true).await?;
    let n = metric_or_zero(
        &m,
        "sse_edge_upstream_errors_total",
        &[("class", "protocol")],
    );
    ensure!(n == 2.0, "protocol errors counted: {n}");
    stop_relay(relay).await;
    Ok(())
}

/// `sse-edge-*` fields are the relay's word to its client; an upstream
/// that sends them (a stream id a client would resume with, an error code,
/// an early-commit mark) must not be believed.
pub(crate) async fn spoofed_relay_headers() -> CaseResult {
    let up = RawUpstream::start(|mut s, _| async move {
        let head = String::from_utf8_lossy(&read_head(&mut s).await).into_owned();
        let spoof = "sse-edge-stream-id: 00000000000000000000000000000000\r\n\
                     sse-edge-early-commit: 1\r\nSSE-Edge-Error: upstream_timeout\r\n\
                     sse-edge-anything: x\r\nx-upstream: kept\r\n";
        let answer = if head.contains("\"stream\":true") {
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n{spoof}\
                 content-length: 14\r\n\r\ndata: [DONE]\n\n"
            )
        } else {
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{spoof}\
                 content-length: 2\r\n\r\n{{}}"
            )
        };
        let _ = s.write_all(answer.as_bytes()).await;
        let _ = s.shutdown().await;
    })
    .await;
    let url = up.url();
    let (relay, _log) = start_logged(&["--upstream", &url, "--heartbeat", HB]).await;
    for (what, r) in [
        (
            "JSON",
            send(relay.listen, post("/v1/chat/completions", "{}")).await?,
        ),
        (
            "event stream",
            send(relay.listen, stream_post("/v1/chat/completions")).await?,
        ),
        (
            "JSON over HTTP/2",
            send_h2(relay.listen, post("/v1/chat/completions", "{}")).await?,
        ),
    ] {
        ensure!(
            r.status == 200 && r.err.is_none(),
            "{what}: {} {:?}",
            r.status,
            r.err
        );
        let leaked: Vec<&str> = r
            .headers
            .keys()
            .map(http::HeaderName::as_str)
            .filter(|k| k.starts_with("sse-edge-"))
            .collect();
        ensure!(
            leaked.is_empty(),
            "{what}: upstream's {leaked:?} reached the client"
        );
        ensure!(
            r.header("x-upstream") == Some("kept"),
            "{what}: the upstream's own fields must pass: {:?}",
            r.headers
        );
    }
    settled(relay.admin, true).await?;
    stop_relay(relay).await;
    Ok(())
}

/// Trailers obey the rules heads do: no hop-by-hop or framing field, and
/// the `Trailer` declaration names only what may follow.
pub(crate) async fn trailers_lose_hop_by_hop_fields() -> CaseResult {
    let up = RawOrigin::answering(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\
          trailer: Connection, Transfer-Encoding, Content-Length, X-Checksum, Keep-Alive, sse-edge-error\r\n\r\n\
          2\r\n{}\r\n0\r\nConnection: close\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\
          Keep-Alive: timeout=1\r\nX-Checksum: abc\r\nsse-edge-error: upstream_timeout\r\n\r\n",
        Then::Close,
    )
    .await;
    let url = up.url();
    let (relay, _log) = start_logged(&["--upstream", &url]).await;
    let raw = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {}\r\nTE: trailers\r\nConnection: TE, close\r\n\
         Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}",
        relay.listen
    );
    let reply = raw_roundtrip(relay.listen, raw.into_bytes(), Duration::from_secs(5)).await?;
    let text = reply.text().to_ascii_lowercase();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or(format!("no response head: {text:?}"))?;
    ensure!(reply.status() == Some(200), "want 200: {text:?}");
    let declared = head
        .lines()
        .find_map(|l| l.strip_prefix("trailer: "))
        .ok_or(format!(
            "the Trailer declaration of x-checksum is gone: {head:?}"
        ))?;
    ensure!(
        declared == "x-checksum",
        "Trailer must declare only x-checksum, got {declared:?}"
    );
    let trailers = body
        .split_once("\r\n0\r\n")
        .ok_or(format!("no last chunk: {body:?}"))?
        .1;
    ensure!(
        trailers.contains("x-checksum: abc"),
        "the end-to-end trailer is lost: {trailers:?}"
    );
    for banned in [
        "connection:",
        "transfer-encoding:",
        "content-length:",
        "keep-alive:",
        "sse-edge-",
    ] {
        ensure!(
            !trailers.contains(banned),
            "trailer {banned} reached the client: {trailers:?}"
        );
    }
    // HTTP/2 carries trailers as a HEADERS frame; the same rules apply.
    let mut c = Client::h2(relay.listen).await;
    let res = c
        .send(post("/v1/chat/completions", "{}"))
        .await
        .map_err(|e| format!("h2: {e}"))?;
    let collected = res
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("h2 body: {e}"))?;
    let t = collected.trailers().cloned().unwrap_or_default();
    let names: Vec<&str> = t.keys().map(http::HeaderName::as_str).collect();
    ensure!(names == ["x-checksum"], "HTTP/2 trailers: {names:?}");
    drop(c);
    settled(relay.admin, true).await?;
    stop_relay(relay).await;
    Ok(())
}

/// A request body in a transfer coding the relay does not decode: `501`,
/// as nginx answers, and nothing reaches the upstream (forwarding it
/// without its coding would hand the upstream bytes it cannot read).
pub(crate) async fn request_transfer_coding_refused() -> CaseResult {
    let up = Upstream::ok(Mode::Http1).await;
    let url = up.url();
    let (relay, mut log) = start_logged(&["--upstream", &url]).await;
    for coding in [
        "gzip, chunked",
        "deflate,chunked",
        "chunked\r\nTransfer-Encoding: br, chunked",
    ] {
        let raw = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: {coding}\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n"
        );
        let reply = raw_roundtrip(relay.listen, raw.into_bytes(), Duration::from_secs(5)).await?;
        let text = reply.text();
        ensure!(
            reply.status() == Some(501),
            "{coding:?}: want 501, got {text:?}"
        );
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut headers = http::HeaderMap::new();
        for (k, v) in head.lines().skip(1).filter_map(|l| l.split_once(": ")) {
            headers.append(
                http::HeaderName::from_bytes(k.as_bytes()).map_err(|e| e.to_string())?,
                http::HeaderValue::from_str(v).map_err(|e| e.to_string())?,
            );
        }
        dialect_error(501, &headers, body.as_bytes(), "not_implemented")?;
        ensure!(
            reply.closed.is_some() && reply.responses() == 1,
            "{coding:?}: the connection must close after the 501"
        );
    }
    log.outcome("/v1/chat/completions", "relay_error").await?;
    ensure!(
        up.request_count() == 0,
        "{} request(s) reached the upstream",
        up.request_count()
    );
    // A plain chunked upload still works.
    let raw = "POST /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n";
    let reply = raw_roundtrip(
        relay.listen,
        raw.as_bytes().to_vec(),
        Duration::from_secs(5),
    )
    .await?;
    ensure!(
        reply.status() == Some(200),
        "chunked upload: {:?}",
        reply.text()
    );
    settled(relay.admin, true).await?;
    stop_relay(relay).await;
    Ok(())
}

/// On the resume endpoint the path is the stream's credential: the access
/// log keeps only the token's first digits.
pub(crate) async fn resume_token_not_logged() -> CaseResult {
    let up = Upstream::ok(Mode::Http1).await;
    let url = up.url();
    let (relay, mut log) = start_logged(&["--upstream", &url]).await;
    let token = "0123456789abcdef0123456789abcdef";
    let r = send(relay.listen, get(&format!("/sse-edge/streams/{token}"))).await?;
    expect_error(&r, 404, "resume_unknown")?;
    let line = log
        .find("for the resume endpoint", |v| {
            v["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("/sse-edge/streams/"))
        })
        .await?;
    ensure!(
        line["path"] == "/sse-edge/streams/0123..",
        "access log path {} (the token must not be logged)",
        line["path"]
    );
    ensure!(
        !line.to_string().contains(token),
        "token in the access log: {line}"
    );
    settled(relay.admin, true).await?;
    stop_relay(relay).await;
    Ok(())
}

/// `server.idle_timeout` closes an HTTP/2 connection about one timeout
/// after its last request ended, not up to two.
pub(crate) async fn h2_idle_closes_on_time() -> CaseResult {
    let up = Upstream::ok(Mode::Http1).await;
    let url = up.url();
    let (relay, _log) = start_logged(&["--upstream", &url, "--server-idle-timeout", "1s"]).await;
    let tcp = tokio::net::TcpStream::connect(relay.listen)
        .await
        .map_err(|e| e.to_string())?;
    let (mut tx, conn) = http2::Builder::new(TokioExecutor::new())
        .handshake::<_, TestBody>(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("h2 handshake: {e}"))?;
    let closed = tokio::spawn(async move {
        let _ = conn.await;
        Instant::now()
    });
    // A request half a timeout into the connection's life: a check made
    // once per timeout from the connection's start would miss a whole one.
    sleep(500).await;
    let req = Request::get(format!("http://{}/ok", relay.listen))
        .body(empty())
        .map_err(|e| e.to_string())?;
    let res = tx.send_request(req).await.map_err(|e| e.to_string())?;
    res.into_body().collect().await.map_err(|e| e.to_string())?;
    let idle_from = Instant::now();
    let at = tokio::time::timeout(Duration::from_secs(4), closed)
        .await
        .map_err(|_| "the idle HTTP/2 connection is still open after 4 s".to_owned())?
        .map_err(|e| e.to_string())?;
    let after = at - idle_from;
    ensure!(
        after >= Duration::from_millis(950) && after < Duration::from_millis(1400),
        "closed {after:?} after its last request, want 1 s (+1/8)"
    );
    note(format!(
        "closed {} ms after the last request",
        after.as_millis()
    ));
    stop_relay(relay).await;
    Ok(())
}
