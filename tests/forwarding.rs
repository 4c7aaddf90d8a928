//! Requests and responses cross the relay intact: bodies byte for byte,
//! streams frame by frame, headers rewritten as documented, routes applied.
// Test code: an unwrap is an assertion, and helpers are `pub` for the
// files that share them.
#![allow(clippy::unwrap_used, unreachable_pub)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use support::*;

const JSON_BODY: &str = r#"{"id":"chatcmpl-1","choices":[{"message":{"content":"Grüße, 世界! ✓ — naïve café 🚀"}}],"note":"\u00e9 stays escaped"}"#;

/// The mock answers by path: `/json` fixed non-ASCII JSON with a custom
/// header, `/big` 1 MiB of bytes, `/echo` the request body back.
async fn content_upstream() -> Upstream {
    Upstream::start(Mode::Http1, |req: Recorded| async move {
        match req.target.split('?').next().unwrap() {
            "/json" => response(
                201,
                &[
                    ("content-type", "application/json; charset=utf-8"),
                    ("x-custom", "kept"),
                    ("x-request-id", "req-42"),
                ],
                full(JSON_BODY),
            ),
            "/big" => response(
                200,
                &[("content-type", "application/octet-stream")],
                full(pattern(1 << 20, 7)),
            ),
            "/echo" => response(
                200,
                &[("content-type", "application/octet-stream")],
                full(req.body.clone()),
            ),
            _ => json_response(404, r#"{"error":"nope"}"#),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_status_and_headers_are_relayed_intact() {
    within(async {
        let up = content_upstream().await;
        let relay = start_relay_to(&up, &[]).await;
        let mut c = Client::h1(relay.listen).await;

        // Small JSON, non-ASCII, status and upstream headers preserved.
        let r = c.get("/json").await;
        assert_eq!(r.status, 201);
        assert_eq!(&r.body[..], JSON_BODY.as_bytes());
        assert_eq!(r.header("x-custom"), Some("kept"));
        assert_eq!(r.header("x-request-id"), Some("req-42"));
        assert_eq!(
            r.header("content-type"),
            Some("application/json; charset=utf-8")
        );
        assert!(r.header("sse-edge-error").is_none());

        // 1 MiB response.
        let r = c.get("/big").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), 1 << 20);
        assert_same(&r.body, &pattern(1 << 20, 7), "1 MiB body");

        // 1 MiB POST with Content-Length, echoed back.
        let payload = pattern(1 << 20, 9);
        let r = c.fetch(post("/echo", payload.clone())).await;
        assert_eq!(r.status, 200);
        assert!(r.body[..] == payload[..], "echoed body differs");
        let seen = up.requests().last().cloned().unwrap();
        assert_eq!(seen.method, "POST");
        assert!(seen.body_complete);
        assert!(
            seen.body[..] == payload[..],
            "upstream got a different body"
        );
        assert_eq!(seen.header("content-length"), Some("1048576"));

        // Chunked upload (no Content-Length), several frames with pauses.
        let (tx, body) = channel_body();
        let chunks: Vec<Bytes> = (0..8u8)
            .map(|i| Bytes::from(pattern(50_000 + usize::from(i) * 333, i)))
            .collect();
        let expected = concat(&chunks);
        let feeder = tokio::spawn(async move {
            for ch in chunks {
                tx.send(Ok(ch)).await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        let req = Request::post("/echo?mode=chunked").body(body).unwrap();
        let r = c.fetch(req).await;
        feeder.await.unwrap();
        assert_eq!(r.status, 200);
        assert!(r.body[..] == expected[..], "chunked echo differs");
        let seen = up.requests().last().cloned().unwrap();
        assert_eq!(seen.target, "/echo?mode=chunked");
        assert!(
            seen.body[..] == expected[..],
            "upstream got a different chunked body"
        );
        assert!(seen.header("content-length").is_none());

        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_stream_is_relayed_frame_by_frame() {
    within(async {
        const N: usize = 20;
        const GAP: Duration = Duration::from_millis(20);
        let sent = Arc::new(Mutex::new(Vec::<Instant>::new()));
        let up = Upstream::start(Mode::Http1, {
            let sent = sent.clone();
            move |_| {
                let sent = sent.clone();
                async move { sse_response(stream_frames(sse_events(N), GAP, Some(sent))) }
            }
        })
        .await;
        let relay = start_relay_to(&up, &[]).await;
        let mut c = Client::h1(relay.listen).await;

        let res = c
            .send(post("/v1/chat/completions", r#"{"stream":true}"#))
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        let (frames, err) = read_frames(res.into_body()).await;
        assert!(err.is_none(), "stream failed: {err:?}");
        assert_same(&joined(&frames), &concat(&sse_events(N)), "relayed stream");
        assert!(
            frames.len() >= N / 2,
            "only {} frames: the body looks buffered, not streamed",
            frames.len()
        );

        // Streaming, not buffering: the first frame reached the client long
        // before the upstream sent its last one (~380 ms later).
        let sent = sent.lock().unwrap().clone();
        assert_eq!(sent.len(), N);
        let last_sent = *sent.last().unwrap();
        let first_seen = frames[0].at;
        assert!(
            first_seen + Duration::from_millis(150) < last_sent,
            "first frame arrived {:?} before the last was sent; expected well before",
            last_sent.saturating_duration_since(first_seen)
        );
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_stripped_both_ways() {
    within(async {
        let up = Upstream::start(Mode::Http1, |_| async {
            response(
                200,
                &[
                    ("connection", "x-bar"),
                    ("x-bar", "secret"),
                    ("keep-alive", "timeout=5, max=100"),
                    ("x-end-to-end", "yes"),
                ],
                full("ok"),
            )
        })
        .await;
        let relay = start_relay_to(&up, &[]).await;
        let mut c = Client::h1(relay.listen).await;
        let req = Request::get("/hop")
            .header("connection", "x-foo")
            .header("x-foo", "1")
            .header("keep-alive", "timeout=5")
            .header("te", "trailers")
            .header("upgrade", "h2c")
            .header("proxy-authorization", "Basic Zm9vOmJhcg==")
            .header("proxy-connection", "keep-alive")
            .header("authorization", "Bearer end-to-end")
            .body(empty())
            .unwrap();
        let r = c.fetch(req).await;
        assert_eq!(r.status, 200);
        assert_eq!(&r.body[..], b"ok");

        let seen = up.requests().pop().unwrap();
        for name in [
            "connection",
            "x-foo",
            "keep-alive",
            "te",
            "upgrade",
            "proxy-authorization",
            "proxy-connection",
        ] {
            assert!(
                seen.headers.get(name).is_none(),
                "upstream saw hop-by-hop {name}: {:?}",
                seen.headers
            );
        }
        assert_eq!(seen.header("authorization"), Some("Bearer end-to-end"));

        for name in ["connection", "x-bar", "keep-alive"] {
            assert!(
                r.headers.get(name).is_none(),
                "client saw hop-by-hop {name}: {:?}",
                r.headers
            );
        }
        assert_eq!(r.header("x-end-to-end"), Some("yes"));
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_and_host() {
    within(async {
        let up = Upstream::ok(Mode::Http1).await;
        let authority = up.addr.to_string();

        // Untrusted (default): client values replaced.
        let relay = start_relay_to(&up, &[]).await;
        let req = Request::get("/xff")
            .header("x-forwarded-for", "6.6.6.6")
            .header("x-forwarded-proto", "https")
            .header("x-real-ip", "6.6.6.6")
            .header("host", "client.example")
            .body(empty())
            .unwrap();
        let r = fetch_once(relay.listen, req).await;
        assert_eq!(r.status, 200);
        let seen = up.requests().pop().unwrap();
        assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
        assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
        assert!(seen.header("x-real-ip").is_none());
        assert_eq!(seen.header("host"), Some(authority.as_str()));
        assert_eq!(seen.headers.get_all("host").iter().count(), 1);
        stop_relay(relay).await;

        // Trusted: the chain is extended.
        let relay = start_relay_to(&up, &["--server-trust-forwarded", "true"]).await;
        let req = Request::get("/xff")
            .header("x-forwarded-for", "6.6.6.6, 10.0.0.1")
            .body(empty())
            .unwrap();
        let r = fetch_once(relay.listen, req).await;
        assert_eq!(r.status, 200);
        let seen = up.requests().pop().unwrap();
        assert_eq!(
            seen.header("x-forwarded-for"),
            Some("6.6.6.6, 10.0.0.1, 127.0.0.1")
        );
        assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
        assert_eq!(seen.header("host"), Some(authority.as_str()));
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_prefixes_pick_upstream_and_rewrite_path() {
    within(async {
        let a = Upstream::start(Mode::Http1, |_| async { json_response(200, "A") }).await;
        let b = Upstream::start(Mode::Http1, |_| async { json_response(200, "B") }).await;
        let dir = TempDir::new("routes");
        let toml = format!(
            r#"
[[route]]
name = "a"
prefix = "/a"
upstream = "{}/base"
strip_prefix = true

[[route]]
name = "rest"
prefix = "/"
upstream = "{}"
"#,
            a.url(),
            b.url()
        );
        let file = dir.write("relay.toml", toml.as_bytes());
        let relay = start_relay(&["--config", file.to_str().unwrap()]).await;
        let mut c = Client::h1(relay.listen).await;

        let r = c.get("/a/v1/chat?x=1&y=%20z").await;
        assert_eq!(r.text(), "A");
        assert_eq!(
            a.requests().pop().unwrap().target,
            "/base/v1/chat?x=1&y=%20z"
        );

        let r = c.get("/ab/c?q=2").await;
        assert_eq!(r.text(), "B", "/ab must not match the /a route");
        assert_eq!(b.requests().pop().unwrap().target, "/ab/c?q=2");

        let r = c.get("/").await;
        assert_eq!(r.text(), "B");
        assert_eq!(b.requests().pop().unwrap().target, "/");

        let r = c.get("/other/path").await;
        assert_eq!(r.text(), "B");
        assert_eq!(b.requests().pop().unwrap().target, "/other/path");

        assert_eq!(a.request_count(), 1);
        assert_eq!(b.request_count(), 3);

        let m = metrics(relay.admin).await;
        assert_eq!(
            metric(
                &m,
                "sse_edge_requests_total",
                &[("route", "a"), ("status", "200")]
            ),
            Some(1.0)
        );
        assert_eq!(
            metric(
                &m,
                "sse_edge_requests_total",
                &[("route", "rest"), ("status", "200")]
            ),
            Some(3.0)
        );
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_client_to_http1_upstream() {
    within(async {
        let up = Upstream::start(Mode::Http1, |req: Recorded| async move {
            if req.target.starts_with("/stream") {
                sse_response(stream_frames(
                    sse_events(5),
                    Duration::from_millis(10),
                    None,
                ))
            } else {
                response(200, &[("x-custom", "h2")], full(req.body.clone()))
            }
        })
        .await;
        let relay = start_relay_to(&up, &[]).await;
        let mut c = Client::h2(relay.listen).await;

        let r = c.fetch(post("/echo", "hello over h2")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.version, http::Version::HTTP_2);
        assert_eq!(&r.body[..], b"hello over h2");
        assert_eq!(r.header("x-custom"), Some("h2"));

        let r = c.get("/stream").await;
        assert_eq!(r.status, 200);
        assert_same(&r.body, &concat(&sse_events(5)), "stream over h2");

        for seen in up.requests() {
            assert_eq!(seen.version, http::Version::HTTP_11);
            assert_eq!(
                seen.authority.as_deref(),
                Some(up.addr.to_string().as_str())
            );
        }
        assert_eq!(up.request_count(), 2);
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodiless_responses_keep_the_connection_reusable() {
    within(async {
        let up = Upstream::start(Mode::Http1, |req: Recorded| async move {
            match req.target.as_str() {
                "/head" => response(
                    200,
                    &[
                        ("content-type", "application/json"),
                        ("content-length", "42"),
                    ],
                    empty(),
                ),
                "/nocontent" => response(204, &[("x-custom", "204")], empty()),
                "/notmodified" => response(304, &[("etag", "\"v1\"")], empty()),
                _ => json_response(200, r#"{"ok":true}"#),
            }
        })
        .await;
        let relay = start_relay_to(&up, &[]).await;
        let mut c = Client::h1(relay.listen).await;

        let r = c.fetch(Request::head("/head").body(empty()).unwrap()).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-length"), Some("42"));
        assert!(r.body.is_empty());

        let r = c.get("/nocontent").await;
        assert_eq!(r.status, 204);
        assert_eq!(r.header("x-custom"), Some("204"));
        assert!(r.body.is_empty());

        let r = c.get("/notmodified").await;
        assert_eq!(r.status, 304);
        assert_eq!(r.header("etag"), Some("\"v1\""));

        let r = c.get("/after").await;
        assert_eq!(r.text(), r#"{"ok":true}"#);
        assert_eq!(
            up.connections(),
            1,
            "bodiless answers release the connection"
        );
        assert_eq!(up.requests()[0].method, "HEAD");
        stop_relay(relay).await;
    })
    .await;
}
