//! Requests an upstream dropped unanswered on a reused HTTP/1.1
//! connection (the keep-alive race): sent once more on a new connection
//! when nothing of an answer arrived and the relay still holds the whole
//! request; never otherwise.
// Test code: an unwrap is an assertion, and helpers are `pub` for the
// files that share them.
#![allow(clippy::unwrap_used, unreachable_pub)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use support::*;

const OK_JSON: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"ok\":true}";

/// Each connection answers its first request; the next one it reads and
/// then drops without a word, as an upstream whose keep-alive close
/// crossed the relay's reuse of the connection.
fn one_answer_then_close(_: &str, nth: usize) -> (Vec<u8>, Then) {
    match nth {
        0 => (OK_JSON.to_vec(), Then::KeepOpen),
        _ => (Vec::new(), Then::Close),
    }
}

/// The same, with a reset instead of a clean close.
fn one_answer_then_reset(_: &str, nth: usize) -> (Vec<u8>, Then) {
    match nth {
        0 => (OK_JSON.to_vec(), Then::KeepOpen),
        _ => (Vec::new(), Then::Reset),
    }
}

fn pool_counter(m: &str, name: &str, origin: &RawOrigin) -> f64 {
    metric_or_zero(m, name, &[("origin", &origin.url())])
}

#[tokio::test]
async fn a_request_dropped_unanswered_on_a_reused_connection_is_sent_again() {
    within(async {
        for answer in [one_answer_then_close as Answer, one_answer_then_reset] {
            let origin = RawOrigin::start(answer).await;
            // No retries of its own: the pool's retry does not depend on it.
            let relay = start_relay(&["--upstream", &origin.url(), "--retry-attempts", "0"]).await;
            let mut c = Client::h1(relay.listen).await;
            let body = r#"{"model":"m","messages":[]}"#;
            for _ in 0..2 {
                let r = c.fetch(post("/v1/chat/completions", body)).await;
                assert_eq!(r.status, 200, "{}", r.text());
                assert_eq!(r.text(), r#"{"ok":true}"#);
            }
            let r = c.get("/v1/models").await;
            assert_eq!(
                (r.status.as_u16(), r.text().as_str()),
                (200, r#"{"ok":true}"#)
            );
            // Each retried request arrived twice, byte for byte the same
            // (the body re-sent from the relay's buffer).
            let seen = origin.requests();
            assert_eq!(seen.len(), 5, "{seen:#?}");
            assert_eq!(seen[1], seen[2]);
            assert_eq!(seen[3], seen[4]);
            assert!(seen[2].ends_with(&format!("\r\n\r\n{body}")), "{}", seen[2]);
            assert!(
                seen[4].starts_with("GET /v1/models HTTP/1.1\r\n"),
                "{}",
                seen[4]
            );
            assert_eq!(origin.connections(), 3);
            let m = metrics(relay.admin).await;
            assert_eq!(
                pool_counter(&m, "sse_edge_upstream_retries_total", &origin),
                2.0
            );
            assert_eq!(
                pool_counter(&m, "sse_edge_upstream_reuses_total", &origin),
                2.0
            );
            assert_eq!(
                pool_counter(&m, "sse_edge_upstream_connects_total", &origin),
                3.0
            );
            assert_eq!(
                metric_or_zero(&m, "sse_edge_upstream_errors_total", &[]),
                0.0
            );
            stop_relay(relay).await;
        }
    })
    .await;
}

#[tokio::test]
async fn the_retry_takes_a_new_connection_not_another_idle_one() {
    within(async {
        let origin = RawOrigin::start(one_answer_then_close).await;
        let relay = relay_to(&origin).await;
        // Two idle connections: an upload holds the first while a second
        // request opens another; both answer and go back to the pool.
        let (tx, body) = channel_body();
        let upload = Request::put("/v1/files/a").body(body).unwrap();
        let mut a = Client::h1(relay.listen).await;
        let held = tokio::spawn(async move { a.fetch(upload).await });
        tx.send(Ok(Bytes::from_static(b"part"))).await.unwrap();
        origin_wait(|| origin.connections() == 1).await;
        let r = fetch_once(relay.listen, plain_get("/v1/models")).await;
        assert_eq!(r.status, 200);
        drop(tx);
        assert_eq!(held.await.unwrap().status, 200);
        assert_eq!(origin.connections(), 2);
        // Both would drop the next request: the retry must not use either.
        let r = fetch_once(relay.listen, post("/v1/chat/completions", "{}")).await;
        assert_eq!(
            (r.status.as_u16(), r.text().as_str()),
            (200, r#"{"ok":true}"#)
        );
        assert_eq!(origin.connections(), 3);
        stop_relay(relay).await;
    })
    .await;
}

async fn origin_wait(mut cond: impl FnMut() -> bool) {
    eventually(Duration::from_secs(5), "the origin", &mut cond).await;
}

#[tokio::test]
async fn no_retry_once_an_answer_began_or_on_a_new_connection() {
    within(async {
        let origin = RawOrigin::start(|req, nth| {
            match (req.split(' ').nth(1).unwrap(), nth) {
                (_, 0) if req.contains("x-fail-first: 1") => (Vec::new(), Then::Close),
                (_, 0) => (OK_JSON.to_vec(), Then::KeepOpen),
                // Part of an answer, then the close.
                ("/partial", _) => (b"HTTP/1.1 200 OK\r\ncontent-le".to_vec(), Then::Close),
                // An interim answer is an answer too.
                ("/interim", _) => (b"HTTP/1.1 100 Continue\r\n\r\n".to_vec(), Then::Close),
                _ => (Vec::new(), Then::Close),
            }
        })
        .await;
        let relay = start_relay(&["--upstream", &origin.url(), "--retry-attempts", "0"]).await;
        let unanswered =
            "upstream connection failed: upstream closed the connection without answering";
        let cut =
            "upstream connection failed: upstream closed the connection inside the response head";
        // A new connection that fails is not the race: 502.
        let req = Request::post("/v1/chat/completions")
            .header("content-type", "application/json")
            .header("x-fail-first", "1")
            .body(full("{}"))
            .unwrap();
        let r = fetch_once(relay.listen, req).await;
        assert_eq!(r.status, 502);
        assert_eq!(r.json()["error"]["message"], unanswered);
        assert_eq!(origin.requests().len(), 1);
        for (path, why) in [("/partial", cut), ("/interim", unanswered)] {
            let mut c = Client::h1(relay.listen).await;
            assert_eq!(c.get("/warm").await.status, 200);
            let before = origin.requests().len();
            let r = c.get(path).await;
            assert_eq!(r.status, 502, "{path}");
            assert_eq!(r.json()["error"]["message"], why, "{path}");
            assert_eq!(origin.requests().len(), before + 1, "{path}: sent once");
        }
        let m = metrics(relay.admin).await;
        assert_eq!(
            pool_counter(&m, "sse_edge_upstream_retries_total", &origin),
            0.0
        );
        stop_relay(relay).await;
    })
    .await;
}

/// A streamed upload whose first bytes went out cannot be sent again: the
/// relay no longer has them.
#[tokio::test]
async fn a_streamed_upload_is_not_sent_again() {
    within(async {
        let origin = RawOrigin::start(one_answer_then_close).await;
        let relay = relay_to(&origin).await;
        let mut c = Client::h1(relay.listen).await;
        assert_eq!(c.get("/warm").await.status, 200);
        let frames = vec![Bytes::from_static(b"one,"), Bytes::from_static(b"two")];
        let upload = stream_frames(frames, Duration::from_millis(20), None);
        let r = c
            .fetch(Request::put("/v1/files/a").body(upload).unwrap())
            .await;
        assert_eq!(r.status, 502, "{}", r.text());
        assert_eq!(
            r.json()["error"]["message"],
            "upstream connection failed: upstream closed the connection without answering"
        );
        assert_eq!(origin.requests().len(), 2);
        assert_eq!(origin.connections(), 1);
        stop_relay(relay).await;
    })
    .await;
}

/// The keep-alive race: the upstream ends each chunked event stream cleanly
/// and closes its socket right after (no `connection: close`). A request
/// the relay hands to such a connection before the close reaches it fails
/// before any answer, and must be sent again on a new connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_survive_an_upstream_that_closes_after_each_answer() {
    const STREAMS: usize = 200;
    const CONCURRENT: usize = 32;
    within(async {
        let origin = RawOrigin::start(|_, _| {
            let mut out = SSE_HEAD.to_vec();
            for ev in sse_events(3) {
                out.extend_from_slice(format!("{:x}\r\n", ev.len()).as_bytes());
                out.extend_from_slice(&ev);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
            // Closed in the same breath, the close travels with the answer
            // and the relay never pools the connection; a millisecond
            // later, as a busy upstream does, it races the next request.
            (out, Then::CloseAfter(Duration::from_millis(1)))
        })
        .await;
        let relay = relay_to(&origin).await;
        let gate = Arc::new(tokio::sync::Semaphore::new(CONCURRENT));
        let mut tasks = Vec::new();
        for i in 0..STREAMS {
            let (addr, gate) = (relay.listen, gate.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = gate.acquire().await.unwrap();
                let body = format!(r#"{{"stream":true,"n":{i}}}"#);
                match try_fetch(addr, post("/v1/chat/completions", body)).await {
                    Ok(r) if r.status == 200 && r.body[..] == concat(&sse_events(3))[..] => None,
                    Ok(r) => Some(format!("stream {i}: {} {}", r.status, r.text())),
                    Err(e) => Some(format!("stream {i}: {e}")),
                }
            }));
        }
        let mut failed = Vec::new();
        for t in tasks {
            failed.extend(t.await.unwrap());
        }
        let m = metrics(relay.admin).await;
        let retries = metric_or_zero(&m, "sse_edge_upstream_retries_total", &[]);
        eprintln!(
            "{} of {STREAMS} streams failed; {retries} retried; {} upstream connections",
            failed.len(),
            origin.connections()
        );
        assert!(failed.is_empty(), "{} failed: {failed:#?}", failed.len());
        stop_relay(relay).await;
    })
    .await;
}

const SSE_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
