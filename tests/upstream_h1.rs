//! The relay's HTTP/1.1 client codec against upstreams that write raw
//! bytes: every framing RFC 9112 allows a response, transfer codings the
//! relay does not decode, status codes out of range, interim answers,
//! malformed heads, early answers to uploads, and when a connection may
//! (and may not) serve the next request.
// Test code: an unwrap is an assertion, and helpers are `pub` for the
// files that share them.
#![allow(clippy::unwrap_used, unreachable_pub)]

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use support::*;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn chunked_extensions_and_trailers_then_the_connection_is_reused() {
    within(async {
        let origin = RawOrigin::start(|_, _| {
            let body = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n\
                5;name=\"v\"\r\nhello\r\n1\r\n,\r\n6 ; x\r\n world\r\n0\r\nx-trailer: t\r\n\r\n";
            (body.to_vec(), Then::KeepOpen)
        })
        .await;
        let relay = relay_to(&origin).await;
        let mut c = Client::h1(relay.listen).await;
        for _ in 0..3 {
            let r = c.fetch(plain_get("/v1/models")).await;
            assert_eq!(r.status, 200);
            assert_eq!(r.text(), "hello, world");
        }
        assert_eq!(origin.connections(), 1, "one upstream connection for all");
        assert_eq!(origin.requests().len(), 3);
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test]
async fn close_delimited_body_is_relayed_whole_and_the_connection_dropped() {
    within(async {
        let origin = RawOrigin::start(|_, _| {
            let mut out =
                b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n\r\n".to_vec();
            out.extend_from_slice(&pattern(100_000, 3));
            (out, Then::Close)
        })
        .await;
        let relay = relay_to(&origin).await;
        let mut c = Client::h1(relay.listen).await;
        for _ in 0..2 {
            let r = c.fetch(plain_get("/v1/files/x")).await;
            assert_eq!(r.status, 200);
            assert_same(&r.body, &pattern(100_000, 3), "close-delimited body");
        }
        assert_eq!(
            origin.connections(),
            2,
            "a close-delimited answer ends its connection"
        );
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test]
async fn transfer_encoding_overrides_content_length() {
    within(async {
        let origin = RawOrigin::start(|_, _| {
            let body =
                b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n\
                a\r\n0123456789\r\n0\r\n\r\n";
            (body.to_vec(), Then::KeepOpen)
        })
        .await;
        let relay = relay_to(&origin).await;
        let mut c = Client::h1(relay.listen).await;
        let r = c.fetch(plain_get("/v1/models")).await;
        assert_eq!(r.text(), "0123456789");
        assert_ne!(r.header("content-length"), Some("3"));
        let r = c.fetch(plain_get("/v1/models")).await;
        assert_eq!(r.text(), "0123456789");
        assert_eq!(
            origin.connections(),
            2,
            "an ambiguous answer's connection is not reused"
        );
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test]
async fn interim_answers_are_skipped() {
    within(async {
        let origin = RawOrigin::start(|_, _| {
            let body = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>; rel=preload\r\n\r\n\
                HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok";
            (body.to_vec(), Then::KeepOpen)
        })
        .await;
        let relay = relay_to(&origin).await;
        let r = fetch_once(relay.listen, post("/v1/chat/completions", "{}")).await;
        assert_eq!(r.status, 201);
        assert_eq!(r.text(), "ok");
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test]
async fn malformed_answers_become_502_and_the_relay_goes_on() {
    within(async {
        let origin = RawOrigin::start(|req, _| {
            let bad: Vec<u8> = match req.split(' ').nth(1).unwrap() {
                "/conflicting-length" => {
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok".to_vec()
                }
                "/folded" => {
                    b"HTTP/1.1 200 OK\r\nx-a: b\r\n c\r\ncontent-length: 0\r\n\r\n".to_vec()
                }
                "/switching" => b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n".to_vec(),
                "/huge-head" => {
                    let mut h = b"HTTP/1.1 200 OK\r\n".to_vec();
                    for i in 0..2000 {
                        h.extend_from_slice(format!("x-{i}: {}\r\n", "v".repeat(40)).as_bytes());
                    }
                    h.extend_from_slice(b"\r\n");
                    h
                }
                "/bad-chunk" => {
                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n".to_vec()
                }
                "/bad-later" => {
                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n"
                        .to_vec()
                }
                _ => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
            };
            (bad, Then::KeepOpen)
        })
        .await;
        let relay = relay_to(&origin).await;
        // A broken first chunk: no byte has gone out, so still a 502.
        for path in [
            "/conflicting-length",
            "/folded",
            "/switching",
            "/huge-head",
            "/bad-chunk",
        ] {
            let r = fetch_once(relay.listen, plain_get(path)).await;
            assert_eq!(r.status, 502, "{path}: {}", r.text());
            assert_eq!(r.json()["error"]["code"], "upstream_error", "{path}");
        }
        // A broken chunk after the first: the client's body fails instead
        // of ending as if complete.
        let mut c = Client::h1(relay.listen).await;
        match c.send(plain_get("/bad-later")).await {
            Err(e) => assert!(e.is_incomplete_message(), "{e}"),
            Ok(res) => assert!(res.into_body().collect().await.is_err()),
        }
        let r = fetch_once(relay.listen, plain_get("/fine")).await;
        assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "ok"));
        let m = metrics(relay.admin).await;
        let protocol = metric_or_zero(
            &m,
            "sse_edge_upstream_errors_total",
            &[("class", "protocol")],
        );
        assert_eq!(protocol, 6.0, "{m}");
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test]
async fn bytes_after_an_answer_keep_its_connection_out_of_the_pool() {
    within(async {
        let origin = RawOrigin::start(|_, _| {
            let out = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nstray";
            (out.to_vec(), Then::KeepOpen)
        })
        .await;
        let relay = relay_to(&origin).await;
        let mut c = Client::h1(relay.listen).await;
        for _ in 0..3 {
            let r = c.fetch(plain_get("/v1/models")).await;
            assert_eq!(r.text(), "ok", "never the stray answer");
        }
        assert_eq!(origin.connections(), 3);
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test]
async fn truncated_length_body_fails_the_client_body() {
    within(async {
        let origin = RawOrigin::start(|_, _| {
            let out = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"partial\":";
            (out.to_vec(), Then::Close)
        })
        .await;
        let relay = relay_to(&origin).await;
        let mut c = Client::h1(relay.listen).await;
        // Either the head had not left when the upstream failed (the
        // exchange fails) or the body fails: never a complete-looking 200.
        match c.send(post("/v1/chat/completions", "{}")).await {
            Err(e) => assert!(e.is_incomplete_message(), "{e}"),
            Ok(res) => assert!(res.into_body().collect().await.is_err()),
        }
        let m = metrics(relay.admin).await;
        let reset = metric_or_zero(&m, "sse_edge_upstream_errors_total", &[("class", "reset")]);
        assert_eq!(reset, 1.0, "{m}");
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test]
async fn streamed_uploads_are_framed_by_the_relay() {
    within(async {
        let origin = RawOrigin::start(|_, _| {
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
                Then::KeepOpen,
            )
        })
        .await;
        let relay = relay_to(&origin).await;
        let mut c = Client::h1(relay.listen).await;
        // Unknown length: chunked upstream, each frame its own chunk.
        let frames = vec![
            Bytes::from_static(b"part one,"),
            Bytes::from_static(b"part two"),
        ];
        let body = stream_frames(frames, Duration::from_millis(30), None);
        let req = Request::put("/v1/files/a").body(body).unwrap();
        assert_eq!(c.fetch(req).await.text(), "ok");
        // Known length: Content-Length upstream.
        let req = Request::put("/v1/files/b")
            .header("content-type", "text/plain")
            .body(full("twelve bytes"))
            .unwrap();
        assert_eq!(c.fetch(req).await.text(), "ok");
        // Nothing to send: no framing field on a GET.
        assert_eq!(c.fetch(plain_get("/v1/files/c")).await.text(), "ok");
        let seen = origin.requests();
        assert_eq!(seen.len(), 3);
        assert!(
            seen[0].starts_with("PUT /v1/files/a HTTP/1.1\r\n"),
            "{}",
            seen[0]
        );
        assert!(
            seen[0].contains("\r\ntransfer-encoding: chunked\r\n"),
            "{}",
            seen[0]
        );
        assert!(
            seen[0].ends_with("\r\n\r\n9\r\npart one,\r\n8\r\npart two\r\n0\r\n\r\n"),
            "{:?}",
            seen[0]
        );
        assert!(
            seen[1].contains("\r\ncontent-length: 12\r\n"),
            "{}",
            seen[1]
        );
        assert!(seen[1].ends_with("\r\n\r\ntwelve bytes"), "{}", seen[1]);
        assert!(!seen[2].contains("content-length") && !seen[2].contains("transfer-encoding"));
        assert_eq!(origin.connections(), 1);
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test]
async fn an_early_answer_ends_the_upload_and_its_connection() {
    within(async {
        // Answers as soon as the head is in (the reader stops at the head
        // when there is no Content-Length it understands: chunked bodies
        // are read to their end, so this origin refuses by closing).
        let origin = RawUpstream::start(|mut s, _| async move {
            let mut buf = Vec::new();
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                if read_more(&mut s, &mut buf).await.is_none() {
                    return;
                }
            }
            let out = b"HTTP/1.1 413 Payload Too Large\r\ncontent-type: application/json\r\ncontent-length: 15\r\n\r\n{\"error\":\"big\"}";
            let _ = s.write_all(out).await;
            // Keep reading whatever comes, as a server draining.
            while read_more(&mut s, &mut buf).await.is_some() {}
        })
        .await;
        let accepted = &origin.accepted;
        let relay = start_relay(&["--upstream", &origin.url()]).await;
        let (tx, body) = channel_body();
        tx.send(Ok(Bytes::from_static(b"first"))).await.unwrap();
        let req = Request::put("/v1/files/up").body(body).unwrap();
        let mut c = Client::h1(relay.listen).await;
        let res = within(c.send(req)).await.unwrap();
        assert_eq!(res.status(), 413);
        let got = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&got[..], b"{\"error\":\"big\"}");
        drop(tx);
        let r = fetch_once(relay.listen, plain_get("/v1/models")).await;
        assert_eq!(r.status, 413);
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "the cut-short upload's connection is not reused");
        stop_relay(relay).await;
    })
    .await;
}

/// The relay's error answer for an invalid upstream response, in the
/// OpenAI and Anthropic shapes, with `why` as the cause.
fn protocol_error(dialect_path: &str, why: &str) -> serde_json::Value {
    let message = format!("upstream sent an invalid response: {why}");
    if dialect_path.starts_with("/v1/messages") {
        serde_json::json!({"type":"error","error":{"type":"api_error","message":message}})
    } else {
        serde_json::json!({"error":{"message":message,"type":"server_error","param":null,"code":"upstream_error"}})
    }
}

#[track_caller]
fn assert_protocol_502(r: &Resp, path: &str, why: &str) {
    assert_eq!(r.status, 502, "{path}: {}", r.text());
    assert_eq!(r.header("sse-edge-error"), Some("upstream_error"), "{path}");
    assert_eq!(r.json(), protocol_error(path, why), "{path}");
}

/// Codings the relay does not decode: the client never gets compressed
/// bytes as if they were the content, nor chunk framing as event data.
#[tokio::test]
async fn transfer_codings_other_than_chunked_become_502() {
    within(async {
        let origin = RawOrigin::start(|req, _| {
            let sse = "content-type: text/event-stream\r\n";
            // The first byte of a gzip stream, then some: never decoded.
            let gz = "\x1f\u{8b}\x08\x00compressed";
            let out = match req.split(' ').nth(1).unwrap() {
                "/gzip" => format!("HTTP/1.1 200 OK\r\n{sse}transfer-encoding: gzip\r\n\r\n{gz}"),
                "/gzip-chunked" | "/v1/messages" => format!(
                    "HTTP/1.1 200 OK\r\n{sse}transfer-encoding: gzip, chunked\r\n\r\n{:x}\r\n{gz}\r\n0\r\n\r\n",
                    gz.len()
                ),
                "/chunked-gzip" => format!(
                    "HTTP/1.1 200 OK\r\n{sse}Transfer-Encoding: chunked\r\nTransfer-Encoding: GZIP\r\n\r\n{gz}"
                ),
                "/twice" => format!(
                    "HTTP/1.1 200 OK\r\n{sse}transfer-encoding: chunked, chunked\r\n\r\n14\r\n5\r\ndata: x\n\n\r\n0\r\n\r\n\r\n0\r\n\r\n"
                ),
                // Exactly chunked, however spelled: decoded.
                "/chunked" => format!(
                    "HTTP/1.1 200 OK\r\n{sse}Transfer-Encoding: , CHUNKED \r\n\r\n9\r\ndata: x\n\n\r\n0\r\n\r\n"
                ),
                // No coding at all: the content as sent, up to the close.
                "/identity" => {
                    let out = "HTTP/1.1 200 OK\r\ncontent-length: 99\r\ntransfer-encoding: identity\r\n\r\nplain";
                    return (out.as_bytes().to_vec(), Then::Close);
                }
                _ => "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_owned(),
            };
            (out.into_bytes(), Then::KeepOpen)
        })
        .await;
        let relay = relay_to(&origin).await;
        let refused = [
            ("/gzip", "gzip"),
            ("/gzip-chunked", "gzip, chunked"),
            ("/chunked-gzip", "chunked, GZIP"),
            ("/twice", "chunked, chunked"),
            ("/v1/messages", "gzip, chunked"),
        ];
        for (path, codings) in refused {
            let r = fetch_once(relay.listen, plain_get(path)).await;
            let why =
                format!("upstream sent Transfer-Encoding {codings}, which the relay does not decode");
            assert_protocol_502(&r, path, &why);
        }
        assert_eq!(
            origin.connections(),
            refused.len(),
            "a refused answer's connection is not reused"
        );
        let mut c = Client::h1(relay.listen).await;
        for _ in 0..2 {
            let r = c.fetch(plain_get("/chunked")).await;
            assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "data: x\n\n"));
        }
        let r = c.fetch(plain_get("/identity")).await;
        assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "plain"));
        assert_ne!(r.header("content-length"), Some("99"), "a length the coding voided");
        let m = metrics(relay.admin).await;
        let protocol = metric_or_zero(&m, "sse_edge_upstream_errors_total", &[("class", "protocol")]);
        assert_eq!(protocol, refused.len() as f64, "{m}");
        assert_eq!(
            origin.connections(),
            refused.len() + 1,
            "chunked answers share one connection; identity's ends with its close"
        );
        stop_relay(relay).await;
    })
    .await;
}

/// The relay binary names the refused coding in its log line.
#[tokio::test]
async fn a_refused_transfer_coding_is_named_in_the_log() {
    within(async {
        let origin = RawOrigin::start(|_, _| {
            let out = b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n";
            (out.to_vec(), Then::KeepOpen)
        })
        .await;
        let mut relay = RelayProc::spawn(&["--upstream", &origin.url()]).await;
        let r = fetch_once(relay.listen, post("/v1/chat/completions", "{}")).await;
        assert_eq!(r.status, 502);
        relay.sigterm();
        relay.wait_exit(Duration::from_secs(10)).await;
        let want = "upstream sent Transfer-Encoding gzip, chunked, which the relay does not decode";
        let line = relay
            .stderr()
            .lines()
            .find(|l| l.contains(want))
            .map(str::to_owned);
        let line =
            line.unwrap_or_else(|| panic!("no log line names the coding: {}", relay.stderr()));
        assert!(line.contains("WARN"), "{line}");
    })
    .await;
}

#[tokio::test]
async fn status_codes_outside_100_to_599_become_502() {
    within(async {
        let origin = RawOrigin::start(|req, _| {
            let out: &[u8] = match req.split(' ').nth(1).unwrap() {
                "/999" => b"HTTP/1.1 999 Odd\r\ncontent-length: 2\r\n\r\nok",
                "/600" => b"HTTP/1.1 600 \r\ncontent-length: 0\r\n\r\n",
                "/599" => b"HTTP/1.1 599 Last\r\ncontent-length: 2\r\n\r\nok",
                _ => {
                    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 700 After\r\ncontent-length: 0\r\n\r\n"
                }
            };
            (out.to_vec(), Then::KeepOpen)
        })
        .await;
        let relay = relay_to(&origin).await;
        let why = "status code outside 100..=599";
        for path in ["/999", "/600", "/after-interim"] {
            let r = fetch_once(relay.listen, plain_get(path)).await;
            assert_protocol_502(&r, path, why);
        }
        let r = fetch_once(relay.listen, post("/v1/messages", "{}")).await;
        assert_protocol_502(&r, "/v1/messages", why);
        let r = fetch_once(relay.listen, plain_get("/599")).await;
        assert_eq!((r.status.as_u16(), r.text().as_str()), (599, "ok"));
        let m = metrics(relay.admin).await;
        let protocol = metric_or_zero(
            &m,
            "sse_edge_upstream_errors_total",
            &[("class", "protocol")],
        );
        assert_eq!(protocol, 4.0, "{m}");
        stop_relay(relay).await;
    })
    .await;
}
