//! The SSE engine end to end: early commit with keepalives, keepalives in
//! silences, dialect frames, retries after commit, honest endings. Real
//! sockets on loopback; the client-side check is always "a WHATWG parser
//! reads the same events from the relay's output as from the upstream's".
// Test code: an unwrap is an assertion, and helpers are `pub` for the
// files that share them.
#![allow(clippy::unwrap_used, unreachable_pub)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sse_edge::internals::whatwg;
use support::*;

const HB: &str = "300ms";

/// An SSE answer whose frames go out with `gap` between them, after `delay`.
fn slow_sse(frames: &[&'static str], delay: Duration, gap: Duration) -> TestBody {
    let frames: Vec<Bytes> = frames
        .iter()
        .map(|f| Bytes::from_static(f.as_bytes()))
        .collect();
    let (tx, body) = channel_body();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        for (i, f) in frames.into_iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(gap).await;
            }
            if tx.send(Ok(f)).await.is_err() {
                return;
            }
        }
    });
    body
}

fn events(bytes: &[u8]) -> Vec<whatwg::Dispatched> {
    whatwg::parse(bytes)
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

async fn stream_through(up: &Upstream, path: &str, extra: &[&str]) -> (Resp, sse_edge::Running) {
    let mut args = vec!["--heartbeat", HB];
    args.extend_from_slice(extra);
    let relay = start_relay_to(up, &args).await;
    let res = within(fetch_once(relay.listen, post(path, STREAM_REQ))).await;
    (res, relay)
}

const CHAT: &[&str] = &[
    "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n",
    "data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n",
    "data: [DONE]\n\n",
];

#[tokio::test]
async fn silent_before_headers_commits_early_then_relays_identical_events() {
    // Headers come after ~4.3 heartbeats.
    let up = Upstream::start(Mode::Http1, |_| async {
        tokio::time::sleep(Duration::from_millis(1300)).await;
        sse_response(slow_sse(CHAT, Duration::ZERO, Duration::from_millis(10)))
    })
    .await;
    let started = Instant::now();
    let (res, relay) = stream_through(&up, "/v1/chat/completions", &[]).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-type"), Some("text/event-stream"));
    assert_eq!(res.header("sse-edge-early-commit"), Some("1"));
    assert_eq!(res.header("x-accel-buffering"), Some("no"));
    let keepalives = count(&res.body, b": keepalive\n\n");
    assert!(
        keepalives >= 2,
        "expected keepalives while the upstream was silent: {}",
        res.text()
    );
    // Keepalives come first, then exactly the upstream's bytes.
    let upstream = concat(
        &CHAT
            .iter()
            .map(|s| Bytes::from_static(s.as_bytes()))
            .collect::<Vec<_>>(),
    );
    assert!(res.body.ends_with(&upstream), "{}", res.text());
    assert_eq!(events(&res.body), events(&upstream));
    assert!(started.elapsed() >= Duration::from_millis(1300));
    let m = metrics(relay.admin).await;
    let counted = metric_or_zero(&m, "sse_edge_heartbeats_total", &[("route", "default")]);
    assert_eq!(counted, keepalives as f64, "{m}");
    stop_relay(relay).await;
}

#[tokio::test]
async fn fast_upstream_keeps_its_status_and_headers() {
    let up = Upstream::start(Mode::Http1, |_| async {
        response(
            400,
            &[("content-type", "application/json"), ("x-upstream", "yes")],
            full(r#"{"error":{"message":"bad"}}"#),
        )
    })
    .await;
    let (res, relay) = stream_through(&up, "/v1/chat/completions", &[]).await;
    assert_eq!(res.status, 400);
    assert_eq!(res.header("x-upstream"), Some("yes"));
    assert_eq!(res.text(), r#"{"error":{"message":"bad"}}"#);
    assert_eq!(res.header("sse-edge-early-commit"), None);
    stop_relay(relay).await;
}

#[tokio::test]
async fn silence_at_an_event_boundary_gets_full_keepalives() {
    let frames = ["data: {\"a\":1}\n\n", "data: {\"a\":2}\n\ndata: [DONE]\n\n"];
    let up = Upstream::start(Mode::Http1, move |_| async move {
        sse_response(slow_sse(
            &frames,
            Duration::ZERO,
            Duration::from_millis(1000),
        ))
    })
    .await;
    let (res, relay) = stream_through(&up, "/v1/chat/completions", &[]).await;
    assert_eq!(
        res.header("sse-edge-early-commit"),
        None,
        "headers came at once"
    );
    let body = &res.body[..];
    let first = b"data: {\"a\":1}\n\n";
    assert!(body.starts_with(first));
    assert!(count(body, b": keepalive\n\n") >= 2, "{}", res.text());
    assert_eq!(events(body), events(concat_str(&frames).as_bytes()));
    stop_relay(relay).await;
}

fn concat_str(frames: &[&str]) -> String {
    frames.concat()
}

#[tokio::test]
async fn silence_inside_an_event_gets_a_bare_comment_line_only() {
    // Silent after a complete line inside an event (LF), and after a CR
    // whose LF has not arrived yet. (A first complete event comes with the
    // head: until its first event, an answer is not yet the client's, see
    // `proxy::failover`.)
    let frames = ["data: 0\n\nevent: x\n", "data: 1\r", "\ndata: 2\n\n"];
    let up = Upstream::start(Mode::Http1, move |_| async move {
        sse_response(slow_sse(
            &frames,
            Duration::ZERO,
            Duration::from_millis(800),
        ))
    })
    .await;
    let (res, relay) = stream_through(&up, "/v1/chat/completions", &["--dialect", "generic"]).await;
    let body = &res.body[..];
    assert_eq!(
        count(body, b": keepalive\n\n"),
        0,
        "no blank line mid-event: {:?}",
        res.text()
    );
    assert!(count(body, b": keepalive\n") >= 2, "{:?}", res.text());
    let want = events(concat_str(&frames).as_bytes());
    assert_eq!(want.len(), 2);
    assert_eq!(want[1].data, "1\n2");
    assert_eq!(events(body), want);
    stop_relay(relay).await;
}

#[tokio::test]
async fn silence_inside_a_line_gets_nothing() {
    let frames = ["data: 0\n\ndata: {\"par", "tial\":1}\n\ndata: [DONE]\n\n"];
    let up = Upstream::start(Mode::Http1, move |_| async move {
        sse_response(slow_sse(
            &frames,
            Duration::ZERO,
            Duration::from_millis(900),
        ))
    })
    .await;
    let (res, relay) = stream_through(&up, "/v1/chat/completions", &[]).await;
    assert_eq!(&res.body[..], concat_str(&frames).as_bytes());
    stop_relay(relay).await;
}

#[tokio::test]
async fn anthropic_routes_get_ping_events_and_custom_templates_render_the_time() {
    let frames = [
        "event: message_start\ndata: {\"type\":\"message_start\"}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    ];
    let up = Upstream::start(Mode::Http1, move |_| async move {
        sse_response(slow_sse(
            &frames,
            Duration::from_millis(700),
            Duration::from_millis(700),
        ))
    })
    .await;
    let (res, relay) = stream_through(&up, "/v1/messages", &[]).await;
    assert!(
        count(&res.body, b"event: ping\ndata: {\"type\": \"ping\"}\n\n") >= 2,
        "{}",
        res.text()
    );
    let upstream_events = events(concat_str(&frames).as_bytes());
    let got: Vec<_> = events(&res.body)
        .into_iter()
        .filter(|e| e.event_type != "ping")
        .collect();
    assert_eq!(got, upstream_events);
    stop_relay(relay).await;

    let template = "event: heartbeat\\ndata: {\"timestamp\": {now_ms}}\\n\\n";
    let (res, relay) = stream_through(&up, "/v1/messages", &["--keepalive-frame", template]).await;
    let hb: Vec<_> = events(&res.body)
        .into_iter()
        .filter(|e| e.event_type == "heartbeat")
        .collect();
    assert!(hb.len() >= 2, "{}", res.text());
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    for e in hb {
        let v: serde_json::Value = serde_json::from_str(&e.data).unwrap();
        let ts = v["timestamp"].as_u64().unwrap() as u128;
        assert!(
            ts <= now_ms && now_ms - ts < 60_000,
            "timestamp {ts} vs now {now_ms}"
        );
    }
    stop_relay(relay).await;
}

#[tokio::test]
async fn upstream_429_after_commit_is_retried_then_the_stream_is_relayed() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let up = Upstream::start(Mode::Http1, move |_| {
        let n = c.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(Duration::from_millis(400)).await;
            if n < 2 {
                response(
                    429,
                    &[
                        ("retry-after-ms", "50"),
                        ("content-type", "application/json"),
                    ],
                    full(r#"{"error":{"message":"slow down"}}"#),
                )
            } else {
                sse_response(slow_sse(CHAT, Duration::ZERO, Duration::ZERO))
            }
        }
    })
    .await;
    let (res, relay) = stream_through(&up, "/v1/chat/completions", &[]).await;
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(res.status, 200);
    let want = events(concat_str(CHAT).as_bytes());
    assert_eq!(events(&res.body), want, "{}", res.text());
    // Every attempt carried the whole request body.
    for r in up.requests() {
        assert_eq!(&r.body[..], STREAM_REQ.as_bytes());
    }
    stop_relay(relay).await;
}

#[tokio::test]
async fn upstream_error_status_after_commit_becomes_one_dialect_error_event() {
    let up = Upstream::start(Mode::Http1, |_| async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        response(
            529,
            &[("content-type", "application/json")],
            full(r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#),
        )
    })
    .await;
    let (res, relay) = stream_through(&up, "/v1/messages", &["--retry-attempts", "0"]).await;
    assert_eq!(res.status, 200);
    let evs = events(&res.body);
    let errors: Vec<_> = evs.iter().filter(|e| e.event_type == "error").collect();
    assert_eq!(errors.len(), 1, "{}", res.text());
    let v: serde_json::Value = serde_json::from_str(&errors[0].data).unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "overloaded_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Overloaded")
    );
    assert!(
        evs.iter()
            .all(|e| e.event_type == "ping" || e.event_type == "error")
    );
    stop_relay(relay).await;

    // OpenAI chat: `data: {"error":...}`.
    let up = Upstream::start(Mode::Http1, |_| async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        response(
            503,
            &[("content-type", "application/json")],
            full(r#"{"error":{"message":"busy","type":"server_error"}}"#),
        )
    })
    .await;
    let (res, relay) =
        stream_through(&up, "/v1/chat/completions", &["--retry-attempts", "0"]).await;
    let evs = events(&res.body);
    assert_eq!(evs.len(), 1, "{}", res.text());
    let v: serde_json::Value = serde_json::from_str(&evs[0].data).unwrap();
    assert_eq!(v["error"]["code"], "upstream_503");
    assert!(v["error"]["message"].as_str().unwrap().contains("busy"));
    stop_relay(relay).await;
}

async fn ending_case(path: &str, frames: Vec<Result<&'static str, ()>>) -> Resp {
    let up = Upstream::start(Mode::Http1, move |_| {
        let frames = frames.clone();
        async move {
            let (tx, body) = channel_body();
            tokio::spawn(async move {
                for f in frames {
                    let item = f
                        .map(|s| Bytes::from_static(s.as_bytes()))
                        .map_err(|()| std::io::Error::other("cut"));
                    let _ = tx.send(item).await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
            sse_response(body)
        }
    })
    .await;
    let (res, relay) = stream_through(&up, path, &[]).await;
    stop_relay(relay).await;
    res
}

#[tokio::test]
async fn premature_clean_end_gets_an_error_event_per_dialect() {
    let res = ending_case("/v1/chat/completions", vec![Ok("data: {\"a\":1}\n\n")]).await;
    let evs = events(&res.body);
    assert_eq!(evs.len(), 2, "{}", res.text());
    assert!(evs[1].data.starts_with("{\"error\":"), "{}", res.text());
    assert!(evs[1].data.contains("upstream_truncated"));

    let res = ending_case(
        "/v1/messages",
        vec![Ok("event: message_start\ndata: {}\n\n")],
    )
    .await;
    let evs = events(&res.body);
    assert_eq!(evs.last().unwrap().event_type, "error", "{}", res.text());

    let res = ending_case(
        "/v1/responses",
        vec![Ok("event: response.created\ndata: {}\n\n")],
    )
    .await;
    let last = events(&res.body).pop().unwrap();
    assert_eq!(last.event_type, "error", "{}", res.text());
    let v: serde_json::Value = serde_json::from_str(&last.data).unwrap();
    assert_eq!(v["code"], "upstream_truncated");

    // Complete streams are left alone.
    let res = ending_case(
        "/v1/messages",
        vec![Ok("event: message_stop\ndata: {}\n\n")],
    )
    .await;
    assert_eq!(&res.body[..], b"event: message_stop\ndata: {}\n\n");
}

#[tokio::test]
async fn mid_stream_reset_gets_an_error_event_at_an_event_boundary() {
    // Cut in the middle of an event: the relay closes the line and the
    // event before its own, so the error is a well-formed event.
    let res = ending_case(
        "/v1/chat/completions",
        vec![Ok("data: {\"a\":1}\n\ndata: {\"b\""), Err(())],
    )
    .await;
    let text = res.text();
    assert!(
        text.starts_with("data: {\"a\":1}\n\ndata: {\"b\"\n\ndata: {\"error\":"),
        "{text}"
    );
    assert!(text.ends_with("}}\n\n"));
    let evs = events(&res.body);
    let last = evs.last().unwrap();
    assert!(last.data.contains("upstream_reset"), "{text}");
}

#[tokio::test]
async fn oversized_event_ends_the_stream_with_an_error_event() {
    let big: &'static str = Box::leak(format!("data: {}\n\n", "x".repeat(4096)).into_boxed_str());
    let frames = ["data: {\"a\":1}\n\n", big, "data: [DONE]\n\n"];
    let up = Upstream::start(Mode::Http1, move |_| async move {
        sse_response(slow_sse(&frames, Duration::ZERO, Duration::from_millis(10)))
    })
    .await;
    let (res, relay) =
        stream_through(&up, "/v1/chat/completions", &["--max-event-size", "1KiB"]).await;
    let text = res.text();
    assert!(
        text.contains("event_too_large"),
        "{}",
        &text[text.len().saturating_sub(300)..]
    );
    assert!(
        !text.contains("[DONE]"),
        "the stream ends at the oversized event"
    );
    stop_relay(relay).await;
}

#[tokio::test]
async fn leading_upstream_bom_is_dropped_after_keepalives() {
    let up = Upstream::start(Mode::Http1, |_| async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        sse_response(slow_sse(
            &["\u{feff}data: 1\n\n", "data: [DONE]\n\n"],
            Duration::ZERO,
            Duration::ZERO,
        ))
    })
    .await;
    let (res, relay) = stream_through(&up, "/v1/chat/completions", &[]).await;
    assert!(
        !res.body.windows(3).any(|w| w == "\u{feff}".as_bytes()),
        "{:?}",
        res.text()
    );
    assert_eq!(
        events(&res.body),
        events("\u{feff}data: 1\n\ndata: [DONE]\n\n".as_bytes())
    );
    stop_relay(relay).await;
}

#[tokio::test]
async fn json_keepalive_is_opt_in_whitespace_before_a_slow_json_answer() {
    let up = Upstream::start(Mode::Http1, |_| async {
        tokio::time::sleep(Duration::from_millis(1300)).await;
        json_response(200, r#"{"id":"x"}"#)
    })
    .await;
    let body = r#"{"model":"m"}"#;
    let relay = start_relay_to(&up, &["--heartbeat", HB]).await;
    let res = within(fetch_once(relay.listen, post("/v1/chat/completions", body))).await;
    assert_eq!(res.text(), r#"{"id":"x"}"#, "off by default");
    stop_relay(relay).await;

    let relay = start_relay_to(&up, &["--heartbeat", HB, "--json-keepalive", "true"]).await;
    let res = within(fetch_once(relay.listen, post("/v1/chat/completions", body))).await;
    assert_eq!(res.status, 200);
    let text = res.text();
    assert!(text.starts_with("  "), "{text:?}");
    assert_eq!(text.trim_start(), r#"{"id":"x"}"#);
    assert_eq!(res.json()["id"], "x");
    stop_relay(relay).await;
}
