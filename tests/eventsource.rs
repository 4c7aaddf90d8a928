//! A plain EventSource resumes a stream through a dropped connection: the
//! `eventsource` npm package (a WHATWG-spec EventSource for Node) opens
//! `GET /sse-edge/streams/<token>`, loses its connection mid-stream, comes
//! back by itself with `Last-Event-ID`, and delivers exactly the upstream's
//! events, the buffered ones and then the live ones.
//!
//! Needs `node` and `npm`; the package pinned in `tests/interop/package.json`
//! is installed with `npm ci` on first use when missing (`.ci/run` installs
//! it up front). If it cannot be had, this test fails, naming the missing
//! piece: a skipped interop check would hide breakage.
// Test code: an unwrap is an assertion, and helpers are `pub` for the
// files that share them.
#![allow(clippy::unwrap_used, unreachable_pub)]

mod support;

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use sse_edge::internals::whatwg;
use support::*;
use tokio::sync::Notify;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/interop/eventsource_check.mjs"
);

/// Upstream events (the last is `[DONE]`), and how many the upstream sends
/// before it waits for the EventSource to come back.
const EVENTS: usize = 40;
const BEFORE_RECONNECT: usize = 20;

/// Bytes from the relay the forwarder lets through on the EventSource's
/// first connection: the response head and a few events, then a cut that
/// can land anywhere in an event.
const CUT_AFTER: usize = 700;

/// The upstream: `BEFORE_RECONNECT` events, then (once the EventSource came
/// back, or after a bound so a missing reconnect fails on the assertions,
/// not on the test timeout) a silence longer than the heartbeat, then the
/// rest, live on the resumed connection.
async fn gated_upstream(frames: Vec<Bytes>, reconnected: Arc<Notify>) -> Upstream {
    Upstream::start(Mode::Http1, move |_| {
        let (frames, reconnected) = (frames.clone(), reconnected.clone());
        async move {
            let (tx, body) = channel_body();
            tokio::spawn(async move {
                for (i, f) in frames.into_iter().enumerate() {
                    if i == BEFORE_RECONNECT {
                        let _ =
                            tokio::time::timeout(Duration::from_secs(8), reconnected.notified())
                                .await;
                        tokio::time::sleep(Duration::from_millis(400)).await;
                    } else if i > 0 {
                        tokio::time::sleep(Duration::from_millis(3)).await;
                    }
                    if tx.send(Ok(f)).await.is_err() {
                        return;
                    }
                }
            });
            sse_response(body)
        }
    })
    .await
}

/// The original request, as an SDK or a page's fetch sends it: reads a few
/// events for the stream's token, then goes away. The token and the bytes
/// read.
async fn start_and_leave(relay: std::net::SocketAddr) -> (String, Vec<u8>) {
    let mut client = Client::h1(relay).await;
    let res = client
        .send(post("/v1/chat/completions", STREAM_REQ))
        .await
        .expect("request sent");
    assert_eq!(res.status(), 200);
    let token = res
        .headers()
        .get("sse-edge-stream-id")
        .expect("sse-edge-stream-id on a route with --resume-window")
        .to_str()
        .unwrap()
        .to_owned();
    let mut body = res.into_body();
    let mut bytes = Vec::new();
    while whatwg::parse(&bytes).len() < 3 {
        let frame = body.frame().await.expect("stream goes on").expect("frame");
        if let Ok(d) = frame.into_data() {
            bytes.extend_from_slice(&d);
        }
    }
    (token, bytes)
}

/// Runs the EventSource script on `url` and returns the JSON it printed.
async fn eventsource(url: &str, expected: usize) -> serde_json::Value {
    let child = tokio::process::Command::new("node")
        .args([SCRIPT, url, &expected.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    // On timeout the child is dropped, which kills it.
    let out = tokio::time::timeout(Duration::from_secs(25), child.wait_with_output())
        .await
        .expect("eventsource_check.mjs finished in time")
        .expect("node output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "eventsource_check.mjs failed (is the package installed? \
         npm ci --prefix tests/interop):\n{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("bad output ({e}): {stdout}\n{stderr}"))
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().expect("a string").to_owned())
        .collect()
}

/// The value of `name` in an HTTP/1.1 request head, if present.
fn request_header(request: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(request);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    head.lines().skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn an_eventsource_resumes_through_a_cut_connection_with_last_event_id() {
    ensure_interop_packages(); // blocking, before any request is in flight
    within(async {
        let frames = sse_events(EVENTS);
        let want: Vec<String> = whatwg::parse(&concat(&frames))
            .into_iter()
            .map(|e| e.data)
            .collect();
        assert_eq!(want.len(), EVENTS);
        let reconnected = Arc::new(Notify::new());
        let up = gated_upstream(frames, reconnected.clone()).await;
        let relay = start_relay_to(&up, &["--resume-window", "5s", "--heartbeat", "100ms"]).await;

        // The original request, as an SDK or a page's fetch sends it: read a
        // few events for the token, then go away.
        let (token, bytes) = start_and_leave(relay.listen).await;
        let own: Vec<String> = whatwg::parse(&bytes).into_iter().map(|e| e.data).collect();
        assert_eq!(own, want[..own.len()], "the original connection's events");

        // An EventSource cannot set headers on its first request, so it
        // starts at the beginning of the stream; its reconnect, after the
        // cut, is where Last-Event-ID must do the work.
        let fwd = Forwarder::start(relay.listen, CUT_AFTER, reconnected).await;
        let url = format!("http://{}/sse-edge/streams/{token}", fwd.addr);
        let out = eventsource(&url, EVENTS).await;
        let seen = fwd.seen();

        assert_eq!(out["end"], "done", "{out}");
        assert_eq!(
            strings(&out["data"]),
            want,
            "every upstream event once, in order (end {}, errors {})",
            out["end"],
            out["error_messages"]
        );
        let ids: Vec<String> = (1..=EVENTS).map(|i| format!("{token}:{i}")).collect();
        assert_eq!(strings(&out["ids"]), ids, "lastEventId per event");
        let errors = out["errors"].as_u64().expect("error count");
        assert!(
            errors >= 1,
            "the cut reached the EventSource: {}",
            out["error_messages"]
        );
        assert!(seen.len() >= 2, "the EventSource reconnected by itself");

        // First connection: the resume path, no Last-Event-ID yet.
        let first = &seen[0];
        let target = format!("GET /sse-edge/streams/{token} ");
        assert!(
            first.request.starts_with(target.as_bytes()),
            "{}",
            String::from_utf8_lossy(&first.request)
        );
        assert_eq!(request_header(&first.request, "last-event-id"), None);
        assert_eq!(first.response.len(), CUT_AFTER, "cut where asked");

        // Reconnect: Last-Event-ID names the last event that crossed the cut
        // connection whole (its id line, last in the event, and blank line).
        let second = &seen[1];
        let last = request_header(&second.request, "last-event-id").unwrap_or_else(|| {
            panic!(
                "no Last-Event-ID on the reconnect:\n{}",
                String::from_utf8_lossy(&second.request)
            )
        });
        let seq: usize = last
            .strip_prefix(&format!("{token}:"))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("Last-Event-ID {last:?} is not {token}:<seq>"));
        assert!((1..BEFORE_RECONNECT).contains(&seq), "{last}");
        assert!(contains(&first.response, &format!("id: {last}\n\n")));
        assert!(!contains(
            &first.response,
            &format!("id: {token}:{}\n\n", seq + 1)
        ));
        // The rest arrived live on the resumed connection, after a silence
        // the relay filled with keepalives the EventSource read past.
        assert!(
            contains(&second.response, ": keepalive\n"),
            "{}",
            String::from_utf8_lossy(&second.response)
        );
        assert_eq!(
            up.requests().len(),
            1,
            "reconnects never reach the upstream"
        );
        // The EventSource's first request and its reconnect, both served
        // from the stream's buffer.
        let m = metrics(relay.admin).await;
        assert_eq!(
            metric(
                &m,
                "sse_edge_resume_reconnects_total",
                &[("result", "resumed")]
            ),
            Some(seen.len() as f64),
            "{m}"
        );
        stop_relay(relay).await;
    })
    .await;
}

/// The same, across replicas in cluster mode: the stream is produced on A,
/// the EventSource's first connection reaches B and its reconnect C (a
/// round-robin forwarder standing in for a load balancer), and it reads
/// every event once, with one upstream request.
#[tokio::test]
async fn an_eventsource_resumes_across_three_replicas_in_cluster_mode() {
    ensure_interop_packages(); // blocking, before any request is in flight
    within(async {
        let frames = sse_events(EVENTS);
        let want: Vec<String> = whatwg::parse(&concat(&frames))
            .into_iter()
            .map(|e| e.data)
            .collect();
        let reconnected = Arc::new(Notify::new());
        let up = gated_upstream(frames, reconnected.clone()).await;
        let redis = RedisServer::start();
        let (url, redis_url) = (up.url(), redis.url());
        let args = [
            "--upstream",
            url.as_str(),
            "--resume-window",
            "5s",
            "--heartbeat",
            "100ms",
            "--cluster-url",
            redis_url.as_str(),
        ];
        let (a, b, c) = tokio::join!(
            RelayProc::spawn(&args),
            RelayProc::spawn(&args),
            RelayProc::spawn(&args)
        );

        // The original request on A: a few events for the token, then gone.
        let (token, _) = start_and_leave(a.listen).await;

        let fwd = Forwarder::across(vec![b.listen, c.listen], CUT_AFTER, reconnected).await;
        let url = format!("http://{}/sse-edge/streams/{token}", fwd.addr);
        let out = eventsource(&url, EVENTS).await;
        let seen = fwd.seen();

        assert_eq!(out["end"], "done", "{out}");
        assert_eq!(
            strings(&out["data"]),
            want,
            "every upstream event once, in order"
        );
        let ids: Vec<String> = (1..=EVENTS).map(|i| format!("{token}:{i}")).collect();
        assert_eq!(strings(&out["ids"]), ids, "lastEventId per event");
        assert!(seen.len() >= 2, "the EventSource reconnected by itself");
        assert_eq!(
            seen[0].response.len(),
            CUT_AFTER,
            "B's connection cut where asked"
        );
        let last = request_header(&seen[1].request, "last-event-id");
        assert!(
            last.as_deref().is_some_and(|l| l.starts_with(&token)),
            "the reconnect to C names its last event: {last:?}"
        );
        assert_eq!(
            up.requests().len(),
            1,
            "reconnects never reach the upstream"
        );
        // B and C each served one connection from A's stream.
        let m = metrics(a.admin).await;
        assert_eq!(
            metric(&m, "sse_edge_resume_forwarded_streams_total", &[]),
            Some(2.0)
        );
    })
    .await;
}
