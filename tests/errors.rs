//! Relay-made answers: upstream failures, timeouts, refusals, limits.
// Test code: an unwrap is an assertion, and helpers are `pub` for the
// files that share them.
#![allow(clippy::unwrap_used, unreachable_pub)]

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use support::*;

fn assert_openai_error(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "body: {}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("sse-edge-error"), Some(code));
    let v = r.json();
    let e = v["error"].as_object().expect("error object");
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(e["type"].is_string());
    assert!(e["param"].is_null(), "param must be null: {v}");
    assert_eq!(e["code"], code);
    assert_eq!(v.as_object().unwrap().len(), 1, "only `error`: {v}");
}

fn assert_anthropic_error(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "body: {}", r.text());
    assert_eq!(r.header("sse-edge-error"), Some(code));
    let v = r.json();
    assert_eq!(v["type"], "error");
    assert!(v["error"]["type"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_upstream_is_502_in_the_dialect_shape() {
    within(async {
        let dead = closed_port_addr();
        let url = format!("http://{dead}");
        let relay = start_relay(&["--upstream", &url]).await;

        let r = fetch_once(relay.listen, post("/v1/chat/completions", "{}")).await;
        assert_openai_error(&r, 502, "upstream_unreachable");
        assert_eq!(r.json()["error"]["type"], "server_error");

        let r = fetch_once(relay.listen, post("/v1/messages", "{}")).await;
        assert_anthropic_error(&r, 502, "upstream_unreachable");
        assert_eq!(r.json()["error"]["type"], "api_error");

        let m = metrics(relay.admin).await;
        assert_eq!(
            metric(
                &m,
                "sse_edge_upstream_errors_total",
                &[("route", "default"), ("class", "connect")]
            ),
            Some(2.0),
            "{m}"
        );
        assert_eq!(
            metric(
                &m,
                "sse_edge_requests_total",
                &[("route", "default"), ("status", "502")]
            ),
            Some(2.0)
        );
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_timeout_is_504() {
    within(async {
        // TLS towards a listener that accepts and never answers: the TLS
        // handshake runs inside the connect timeout.
        let silent = SilentListener::start().await;
        let relay = start_relay_to_url(
            &silent.https_url(),
            &["--upstream-connect-timeout", "300ms"],
        )
        .await;
        let start = Instant::now();
        let r = fetch_once(relay.listen, post("/v1/chat/completions", "{}")).await;
        let took = start.elapsed();
        assert_openai_error(&r, 504, "upstream_connect_timeout");
        assert!(
            took >= Duration::from_millis(250),
            "answered after {took:?}, before the timeout"
        );
        assert!(took < Duration::from_secs(5), "took {took:?}");
        assert!(silent.accepted.load(std::sync::atomic::Ordering::SeqCst) >= 1);

        let m = metrics(relay.admin).await;
        assert_eq!(
            metric(
                &m,
                "sse_edge_upstream_errors_total",
                &[("route", "default"), ("class", "timeout")]
            ),
            Some(1.0)
        );
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_a_failing_connect() {
    within(async {
        // A cold TLS origin (protocol auto) serializes its first connects
        // so a burst can share one HTTP/2 connection; requests queued
        // behind a connect that times out must not each wait out their own
        // timeout in turn (10 x 300 ms).
        let silent = SilentListener::start().await;
        let relay = start_relay_to_url(
            &silent.https_url(),
            &["--upstream-connect-timeout", "300ms"],
        )
        .await;
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let addr = relay.listen;
            tasks.push(tokio::spawn(async move {
                fetch_once(addr, post("/v1/chat/completions", "{}")).await
            }));
        }
        for t in tasks {
            let r = t.await.unwrap();
            assert_openai_error(&r, 504, "upstream_connect_timeout");
        }
        let took = start.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "10 queued requests took {took:?}: connect timeouts were served one after another"
        );
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_byte_timeout_is_504() {
    within(async {
        let up = Upstream::start(Mode::Http1, |_| std::future::pending()).await;
        let relay = start_relay_to(&up, &["--upstream-first-byte-timeout", "300ms"]).await;
        let start = Instant::now();
        let r = fetch_once(relay.listen, post("/v1/messages", "{}")).await;
        let took = start.elapsed();
        assert_anthropic_error(&r, 504, "upstream_timeout");
        assert!(took >= Duration::from_millis(250), "took {took:?}");
        assert!(took < Duration::from_secs(5), "took {took:?}");
        assert_eq!(up.request_count(), 1, "the upstream got the request");
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_is_404() {
    within(async {
        let up = Upstream::ok(Mode::Http1).await;
        let dir = TempDir::new("noroute");
        let toml = format!("[[route]]\nprefix = \"/a\"\nupstream = \"{}\"\n", up.url());
        let file = dir.write("relay.toml", toml.as_bytes());
        let relay = start_relay(&["--config", file.to_str().unwrap()]).await;

        let r = fetch_once(relay.listen, get("/b/v1/chat/completions")).await;
        assert_openai_error(&r, 404, "no_route");
        let r = fetch_once(relay.listen, get("/ab")).await;
        assert_eq!(r.status, 404);
        let r = fetch_once(relay.listen, get("/a/x")).await;
        assert_eq!(r.status, 200);
        assert_eq!(up.request_count(), 1);

        let m = metrics(relay.admin).await;
        assert_eq!(
            metric(
                &m,
                "sse_edge_requests_total",
                &[("route", "-"), ("status", "404")]
            ),
            Some(2.0)
        );
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_413() {
    within(async {
        let up = Upstream::start(Mode::Http1, |req: Recorded| async move {
            json_response(200, format!(r#"{{"got":{}}}"#, req.body.len()))
        })
        .await;
        let relay = start_relay_to(&up, &["--server-max-request-body", "1KiB"]).await;

        // At the limit: fine.
        let r = fetch_once(relay.listen, post("/v1/chat/completions", vec![b'x'; 1024])).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), r#"{"got":1024}"#);
        let conns_before = up.connections();
        let reqs_before = up.request_count();

        // Announced with Content-Length: refused before any upstream contact.
        let r = fetch_once(relay.listen, post("/v1/chat/completions", vec![b'x'; 2048])).await;
        assert_openai_error(&r, 413, "request_too_large");
        let r = fetch_once(relay.listen, post("/v1/messages", vec![b'x'; 1025])).await;
        assert_anthropic_error(&r, 413, "request_too_large");
        assert_eq!(r.json()["error"]["type"], "request_too_large");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(up.request_count(), reqs_before);
        assert_eq!(up.connections(), conns_before);

        // Chunked: the limit trips while streaming.
        let (tx, body) = channel_body();
        let feeder = tokio::spawn(async move {
            for _ in 0..8 {
                if tx.send(Ok(Bytes::from(vec![b'y'; 512]))).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let req = Request::post("/v1/chat/completions").body(body).unwrap();
        let mut c = Client::h1(relay.listen).await;
        match c.send(req).await {
            Ok(res) => {
                let r = collect_lossy(res).await;
                assert_eq!(r.0, 413, "chunked over the limit: {}", r.1);
            }
            Err(e) => eprintln!("chunked upload over the limit failed outright: {e}"),
        }
        feeder.abort();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !up.requests()
                .iter()
                .any(|r| r.body_complete && r.body.len() > 1024),
            "the upstream received the whole oversized body"
        );
        stop_relay(relay).await;
    })
    .await;
}

/// Status and body text; a body error is tolerated (the relay may close
/// early while the client is still uploading).
async fn collect_lossy(res: http::Response<hyper::body::Incoming>) -> (u16, String) {
    let status = res.status().as_u16();
    let (frames, _) = read_frames(res.into_body()).await;
    (
        status,
        String::from_utf8_lossy(&joined(&frames)).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_proxy_requests_are_refused() {
    within(async {
        let up = Upstream::ok(Mode::Http1).await;
        let relay = start_relay_to(&up, &[]).await;

        let r = raw_exchange(
            relay.listen,
            b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(raw_status(&r), 400, "{r}");
        assert!(r.to_ascii_lowercase().contains("sse-edge-error: bad_request"));

        let r = raw_exchange(
            relay.listen,
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(raw_status(&r), 405, "{r}");
        assert!(r.to_ascii_lowercase().contains("allow:"));

        let r = raw_exchange(relay.listen, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").await;
        assert_eq!(raw_status(&r), 400, "{r}");

        let r = raw_exchange(
            relay.listen,
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(raw_status(&r), 400, "two Host headers: {r}");

        // The relay's own address in absolute form is fine.
        let own = format!(
            "GET http://{0}/ok HTTP/1.1\r\nHost: {0}\r\nConnection: close\r\n\r\n",
            relay.listen
        );
        let r = raw_exchange(relay.listen, own.as_bytes()).await;
        assert_eq!(raw_status(&r), 200, "{r}");

        assert_eq!(up.request_count(), 1, "only the own-authority request");
        assert_eq!(up.requests()[0].target, "/ok");
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failure_mid_body_is_not_a_clean_end() {
    within(async {
        let up = Upstream::start(Mode::Http1, |_| async {
            let (tx, body) = channel_body();
            tokio::spawn(async move {
                for i in 0..3 {
                    let _ = tx.send(Ok(Bytes::from(format!("part {i}\n")))).await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let _ = tx
                    .send(Err(std::io::Error::other("upstream blew up")))
                    .await;
            });
            response(200, &[("content-type", "application/octet-stream")], body)
        })
        .await;
        let relay = start_relay_to(&up, &[]).await;
        let mut c = Client::h1(relay.listen).await;
        let res = c.send(get("/download")).await.unwrap();
        assert_eq!(res.status(), 200);
        let (frames, err) = read_frames(res.into_body()).await;
        assert!(
            err.is_some(),
            "a body cut upstream must not end cleanly downstream (got {:?})",
            String::from_utf8_lossy(&joined(&frames))
        );
        assert!(joined(&frames).starts_with(b"part 0\n"));

        let m = metrics(relay.admin).await;
        assert_eq!(
            metric(
                &m,
                "sse_edge_upstream_errors_total",
                &[("route", "default"), ("class", "reset")]
            ),
            Some(1.0),
            "{m}"
        );
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_answered_and_not_forwarded() {
    within(async {
        let up = Upstream::start(Mode::Http1, |req: Recorded| async move {
            json_response(200, req.body.clone())
        })
        .await;
        let relay = start_relay_to(&up, &[]).await;
        let mut s = tokio::net::TcpStream::connect(relay.listen).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let head = format!(
            "POST /v1/echo HTTP/1.1\r\nHost: {}\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
            relay.listen
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).await.unwrap();
        let interim = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(interim.starts_with("HTTP/1.1 100"), "interim: {interim:?}");
        s.write_all(b"hello").await.unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        let rest = String::from_utf8_lossy(&rest).into_owned();
        let all = interim + &rest;
        assert!(all.contains("HTTP/1.1 200"), "{all}");
        assert!(all.ends_with("hello"), "{all}");
        let seen = up.requests().pop().unwrap();
        assert!(seen.header("expect").is_none());
        assert_eq!(&seen.body[..], b"hello");
        stop_relay(relay).await;
    })
    .await;
}
