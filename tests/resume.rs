//! Stream resumption end to end, over real sockets: a client that loses its
//! connection reconnects with `Last-Event-ID` (or on the resume path) and,
//! across all its connections, reads exactly the upstream's events; expiry,
//! overflow and unknown ids get their documented refusals; nothing leaks.
// Test code: an unwrap is an assertion, and helpers are `pub` for the
// files that share them.
#![allow(clippy::unwrap_used, unreachable_pub)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use sse_edge::internals::whatwg;
use support::*;

const CHAT: &str = "/v1/chat/completions";

/// A small deterministic generator (xorshift64*), so a failing case can be
/// replayed from its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

/// What one connection delivered before it ended or was cut.
struct Got {
    status: u16,
    stream_id: Option<String>,
    error_code: Option<String>,
    bytes: Vec<u8>,
    /// The body reached its end (not cut by the client).
    ended: bool,
}

/// Sends `req` on a fresh connection and reads the body; with `cut`, stops
/// after that many bytes (keeping only those) and drops the connection.
async fn read(relay: &sse_edge::Running, req: Request<TestBody>, cut: Option<usize>) -> Got {
    read_on(Client::h1(relay.listen).await, req, cut).await
}

/// [`read`] on a given client connection (dropped at the end).
async fn read_on(mut client: Client, req: Request<TestBody>, cut: Option<usize>) -> Got {
    let res = client.send(req).await.expect("request sent");
    let status = res.status().as_u16();
    let header = |n: &str| {
        res.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (stream_id, error_code) = (header("sse-edge-stream-id"), header("sse-edge-error"));
    let mut body = res.into_body();
    let mut bytes = Vec::new();
    let mut ended = true;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.expect("body frame").into_data() else {
            continue;
        };
        bytes.extend_from_slice(&data);
        if let Some(limit) = cut {
            if bytes.len() >= limit {
                bytes.truncate(limit);
                ended = false;
                break;
            }
        }
    }
    Got {
        status,
        stream_id,
        error_code,
        bytes,
        ended,
    }
}

/// Upstream events: `n` chat chunks then `[DONE]`, `gap` apart.
fn chat_events(n: usize) -> Vec<Bytes> {
    sse_events(n + 1)
}

fn datas(events: &[whatwg::Dispatched]) -> Vec<String> {
    events.iter().map(|e| e.data.clone()).collect()
}

/// [`chat_events`]`(n)` on every request, `gap` apart.
async fn streaming_upstream(n: usize, gap: Duration) -> Upstream {
    Upstream::streaming(Mode::Http1, n + 1, gap).await
}

#[tokio::test]
async fn a_client_dropped_at_random_points_reads_exactly_the_upstream_events() {
    within(async {
        const N: usize = 30;
        let up = streaming_upstream(N, Duration::from_millis(4)).await;
        let relay = start_relay_to(&up, &["--resume-window", "5s", "--heartbeat", "1s"]).await;
        let want = datas(&whatwg::parse(&concat(&chat_events(N))));
        for seed in 1..=12u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let mut got_events = Vec::new();
            let mut last_id: Option<String> = None;
            let mut token: Option<String> = None;
            let mut connections = 0;
            loop {
                connections += 1;
                // Up to three cuts per stream, anywhere in the next ~1.5 KiB.
                let cut = (connections <= 3).then(|| 1 + rng.below(1500) as usize);
                let req = match (&token, &last_id) {
                    (None, _) => post(CHAT, STREAM_REQ),
                    (Some(t), last) if rng.below(2) == 0 => resume_get(t, last.as_deref()),
                    (Some(_), Some(id)) => resume_post(id),
                    (Some(t), None) => resume_get(t, None),
                };
                let got = read(&relay, req, cut).await;
                assert_eq!(
                    got.status,
                    200,
                    "seed {seed}: {}",
                    String::from_utf8_lossy(&got.bytes)
                );
                token = token.or(got.stream_id.clone());
                assert!(token.is_some(), "seed {seed}: no sse-edge-stream-id");
                // A fresh parser per connection, as a reconnecting client has.
                let mut parser = whatwg::Parser::new();
                parser.feed(&got.bytes);
                for e in parser.events() {
                    got_events.push(e.data.clone());
                    last_id = Some(e.last_event_id.clone());
                }
                if got.ended {
                    break;
                }
                // Let the upstream go on while nobody reads.
                tokio::time::sleep(Duration::from_millis(rng.below(40))).await;
            }
            assert_eq!(
                got_events, want,
                "seed {seed}: events across {connections} connections"
            );
        }
        assert_eq!(
            up.requests().len(),
            12,
            "reconnects never reach the upstream"
        );
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test]
async fn every_event_carries_an_id_and_keepalives_are_bare_comment_lines() {
    within(async {
        // Silence longer than two heartbeats between events.
        let up = Upstream::start(Mode::Http1, |_| async {
            let frames = vec![
                Bytes::from_static(b"data: {\"a\":1}\n\n"),
                Bytes::from_static(b": upstream comment\n\n"),
                Bytes::from_static(b"id: upstream-7\ndata: {\"a\":2}\r\n\r\n"),
                Bytes::from_static(b"data: [DONE]\n\n"),
            ];
            sse_response(stream_frames(frames, Duration::from_millis(500), None))
        })
        .await;
        let relay = start_relay_to(&up, &["--resume-window", "5s", "--heartbeat", "200ms"]).await;
        let got = read(&relay, post(CHAT, STREAM_REQ), None).await;
        assert_eq!(got.status, 200);
        let token = got.stream_id.expect("stream id header");
        assert_eq!(token.len(), 32);
        let text = String::from_utf8_lossy(&got.bytes).into_owned();
        assert!(
            text.contains(": keepalive\n"),
            "keepalives in the silences: {text:?}"
        );
        assert!(
            !text.contains("keepalive\n\n"),
            "a keepalive must not end in a blank line once ids are present: {text:?}"
        );
        assert!(
            !text.contains("upstream comment"),
            "comment-only blocks are dropped: {text:?}"
        );
        let events = whatwg::parse(&got.bytes);
        let ids: Vec<_> = events.iter().map(|e| e.last_event_id.clone()).collect();
        let want: Vec<_> = (1..=3).map(|i| format!("{token}:{i}")).collect();
        assert_eq!(ids, want, "the relay's id wins over the upstream's own");
        assert_eq!(datas(&events), ["{\"a\":1}", "{\"a\":2}", "[DONE]"]);
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test]
async fn an_early_committed_stream_is_resumable_too() {
    within(async {
        let up = Upstream::start(Mode::Http1, |_| async {
            tokio::time::sleep(Duration::from_millis(700)).await;
            sse_response(stream_frames(
                chat_events(3),
                Duration::from_millis(5),
                None,
            ))
        })
        .await;
        let relay = start_relay_to(&up, &["--resume-window", "5s", "--heartbeat", "200ms"]).await;
        // Cut before the upstream even answered: only keepalives arrived.
        let first = read(&relay, post(CHAT, STREAM_REQ), Some(5)).await;
        assert_eq!(first.status, 200);
        let token = first.stream_id.expect("stream id on the early commit");
        let rest = read(&relay, resume_get(&token, None), None).await;
        assert_eq!(rest.status, 200);
        let want = datas(&whatwg::parse(&concat(&chat_events(3))));
        assert_eq!(datas(&whatwg::parse(&rest.bytes)), want);
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test]
async fn after_the_window_the_upstream_is_cancelled_and_a_reconnect_is_refused() {
    within(async {
        let stops = Arc::new(Stops::default());
        let up = Upstream::endless(Mode::Http1, Duration::from_millis(50), stops.clone()).await;
        let relay = start_relay_to(&up, &["--resume-window", "400ms"]).await;
        let got = read(&relay, post(CHAT, STREAM_REQ), Some(20)).await;
        let token = got.stream_id.expect("stream id");
        // Within the window the upstream keeps going.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(stops.count() == 0, "cancelled inside the window");
        eventually(Duration::from_secs(5), "upstream cancelled", || {
            stops.count() > 0
        })
        .await;
        // EventSource-style: an error event, and a status that stops retries.
        let refused = read(
            &relay,
            resume_get(&token, Some(&format!("{token}:1"))),
            None,
        )
        .await;
        assert_eq!(refused.status, 410);
        assert_eq!(refused.error_code.as_deref(), Some("resume_expired"));
        let events = whatwg::parse(&refused.bytes);
        assert_eq!(
            events.len(),
            1,
            "{}",
            String::from_utf8_lossy(&refused.bytes)
        );
        assert!(
            events[0].data.contains("resume window"),
            "{}",
            events[0].data
        );
        // SDK-style: the dialect's JSON error body.
        let json = fetch_once(relay.listen, resume_post(&format!("{token}:1"))).await;
        assert_eq!(json.status, 410);
        assert_eq!(json.json()["error"]["code"], "resume_expired");
        let m = metrics(relay.admin).await;
        assert_eq!(metric(&m, "sse_edge_resume_expired_total", &[]), Some(1.0));
        assert_eq!(
            metric(
                &m,
                "sse_edge_resume_reconnects_total",
                &[("result", "expired")]
            ),
            Some(2.0)
        );
        assert_eq!(metric(&m, "sse_edge_resume_streams", &[]), Some(0.0));
        assert_eq!(metric(&m, "sse_edge_resume_buffered_bytes", &[]), Some(0.0));
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test]
async fn a_reconnect_behind_the_buffer_gets_overflow_and_a_recent_one_still_works() {
    within(async {
        // 120 events of ~100 bytes against a 4 KiB buffer.
        let up = Upstream::start(Mode::Http1, |_| async {
            let frames: Vec<Bytes> = (0..120)
                .map(|i| {
                    Bytes::from(format!(
                        "data: {{\"i\":{i},\"pad\":\"{}\"}}\n\n",
                        "x".repeat(80)
                    ))
                })
                .chain([Bytes::from_static(b"data: [DONE]\n\n")])
                .collect();
            sse_response(stream_frames(frames, Duration::from_millis(1), None))
        })
        .await;
        let relay = start_relay_to(
            &up,
            &["--resume-window", "5s", "--resume-max-bytes", "4KiB"],
        )
        .await;
        let first = read(&relay, post(CHAT, STREAM_REQ), Some(30)).await;
        let token = first.stream_id.expect("stream id");
        // Let the upstream finish into the buffer.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let old = read(&relay, resume_post(&format!("{token}:1")), None).await;
        assert_eq!(old.status, 410);
        assert_eq!(old.error_code.as_deref(), Some("resume_overflow"));
        let body = String::from_utf8_lossy(&old.bytes);
        assert!(body.contains("resume_max_bytes"), "{body}");
        // The last events are still there.
        let recent = read(&relay, resume_post(&format!("{token}:118")), None).await;
        assert_eq!(recent.status, 200);
        let events = whatwg::parse(&recent.bytes);
        assert_eq!(events.len(), 3, "events 119, 120 and [DONE]");
        assert!(events[0].data.contains("\"i\":118"), "{}", events[0].data);
        assert_eq!(events[2].data, "[DONE]");
        let m = metrics(relay.admin).await;
        assert_eq!(
            metric(
                &m,
                "sse_edge_resume_reconnects_total",
                &[("result", "overflow")]
            ),
            Some(1.0)
        );
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test]
async fn unknown_malformed_and_impossible_ids_are_refused() {
    within(async {
        let up = streaming_upstream(3, Duration::from_millis(1)).await;
        let relay = start_relay_to(&up, &["--resume-window", "5s"]).await;
        let unknown = "0123456789abcdef0123456789abcdef";
        let r = fetch_once(relay.listen, resume_get(unknown, None)).await;
        assert_eq!(r.status, 404);
        assert_eq!(r.header("sse-edge-error"), Some("resume_unknown"));
        assert_eq!(r.header("content-type"), Some("text/event-stream"));
        let r = fetch_once(relay.listen, resume_post(&format!("{unknown}:4"))).await;
        assert_eq!(r.status, 404);
        assert_eq!(r.json()["error"]["code"], "resume_unknown");
        let r = fetch_once(relay.listen, resume_get("not-a-token", None)).await;
        assert_eq!(r.status, 404);
        // A Last-Event-ID of another stream on the resume path.
        let r = fetch_once(
            relay.listen,
            resume_get(unknown, Some("fedcba9876543210fedcba9876543210:1")),
        )
        .await;
        assert_eq!(r.status, 400);
        // Only GET on the resume path.
        let r = fetch_once(
            relay.listen,
            post(&format!("/sse-edge/streams/{unknown}"), "{}"),
        )
        .await;
        assert_eq!(r.status, 405);
        // An id this stream never sent.
        let first = read(&relay, post(CHAT, STREAM_REQ), Some(10)).await;
        let token = first.stream_id.expect("stream id");
        let r = fetch_once(relay.listen, resume_post(&format!("{token}:99"))).await;
        assert_eq!(r.status, 400);
        assert_eq!(r.json()["error"]["code"], "resume_bad_position");
        // An id that is not the relay's passes to the upstream untouched.
        let mut req = post(CHAT, STREAM_REQ);
        req.headers_mut()
            .insert("last-event-id", "upstream-id-5".parse().unwrap());
        let r = fetch_once(relay.listen, req).await;
        assert_eq!(r.status, 200);
        let last = up.requests().pop().expect("forwarded");
        assert_eq!(last.header("last-event-id"), Some("upstream-id-5"));
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test]
async fn a_second_reader_supersedes_the_first() {
    within(async {
        let stops = Arc::new(Stops::default());
        let up = Upstream::endless(Mode::Http1, Duration::from_millis(50), stops).await;
        let relay = start_relay_to(&up, &["--resume-window", "5s"]).await;
        let mut first = Client::h1(relay.listen).await;
        let res = first.send(post(CHAT, STREAM_REQ)).await.unwrap();
        let token = res.headers()["sse-edge-stream-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let mut body = res.into_body();
        let _ = body.frame().await;
        let second = read(
            &relay,
            resume_get(&token, Some(&format!("{token}:1"))),
            Some(200),
        )
        .await;
        assert_eq!(second.status, 200);
        // The first reader ends with an error event saying why.
        let mut rest = Vec::new();
        while let Some(Ok(f)) = body.frame().await {
            if let Ok(d) = f.into_data() {
                rest.extend_from_slice(&d);
            }
        }
        let text = String::from_utf8_lossy(&rest);
        assert!(text.contains("resume_superseded"), "{text}");
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test]
async fn thousands_of_resumed_streams_leave_nothing_behind() {
    within(async {
        let up = streaming_upstream(4, Duration::from_millis(2)).await;
        let relay = start_relay_to(&up, &["--resume-window", "1s"]).await;
        let want = datas(&whatwg::parse(&concat(&chat_events(4))));
        let relay = Arc::new(relay);
        let done = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for worker in 0..16 {
            let (relay, want, done) = (relay.clone(), want.clone(), done.clone());
            tasks.spawn(async move {
                for i in 0..125 {
                    let cut = 1 + (worker * 131 + i * 17) % 120;
                    let first = read(&relay, post(CHAT, STREAM_REQ), Some(cut)).await;
                    let token = first.stream_id.expect("stream id");
                    let seen = whatwg::parse(&first.bytes);
                    let last = seen.last().map(|e| e.last_event_id.clone());
                    let rest = read(&relay, resume_get(&token, last.as_deref()), None).await;
                    assert_eq!(rest.status, 200);
                    let mut all = datas(&seen);
                    all.extend(datas(&whatwg::parse(&rest.bytes)));
                    assert_eq!(all, want);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.expect("worker");
        }
        assert_eq!(done.load(Ordering::Relaxed), 2000);
        let admin = relay.admin;
        // Each stream is released a window after its last reader went.
        let mut m = String::new();
        for _ in 0..250 {
            m = metrics(admin).await;
            if metric(&m, "sse_edge_resume_streams", &[]) == Some(0.0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(metric(&m, "sse_edge_resume_streams", &[]), Some(0.0), "{m}");
        assert_eq!(metric(&m, "sse_edge_resume_buffered_bytes", &[]), Some(0.0));
        assert_eq!(metric(&m, "sse_edge_active_streams", &[]), Some(0.0));
        assert_eq!(
            metric(
                &m,
                "sse_edge_resume_reconnects_total",
                &[("result", "resumed")]
            ),
            Some(2000.0)
        );
        let relay = Arc::try_unwrap(relay).ok().expect("last handle");
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test]
async fn a_reconnect_needs_the_route_auth_and_the_key_the_stream_was_opened_with() {
    within(async {
        use sse_edge::{key_digest as digest, key_hex as hex};
        const ALICE: &str = "sk-edge-alice-0123456789";
        const BOB: &str = "sk-edge-bob-9876543210";
        let up = streaming_upstream(3, Duration::from_millis(1)).await;
        let dir = TempDir::new("resume-auth");
        let keys = format!(
            "{} alice\n{} bob\n",
            hex(&digest(ALICE.as_bytes())),
            hex(&digest(BOB.as_bytes()))
        );
        let keys = dir.write("keys", keys.as_bytes());
        let toml = format!(
            "[[route]]\nprefix = \"/\"\nupstream = \"{}\"\nauth_keys_file = \"{}\"\n\
             resume = {{ window = \"5s\" }}\n",
            up.url(),
            keys.display()
        );
        let config = dir.write("sse-edge.toml", toml.as_bytes());
        let relay = start_relay(&["--config", config.to_str().unwrap()]).await;
        let with_key = |mut req: Request<TestBody>, key: Option<&str>| {
            if let Some(k) = key {
                let v = format!("Bearer {k}").parse().unwrap();
                req.headers_mut().insert("authorization", v);
            }
            req
        };
        let first = read(
            &relay,
            with_key(post(CHAT, STREAM_REQ), Some(ALICE)),
            Some(10),
        )
        .await;
        assert_eq!(first.status, 200);
        let token = first.stream_id.expect("stream id");
        let id = format!("{token}:1");
        let status = |r: Got| (r.status, r.error_code);
        let none = read(&relay, with_key(resume_get(&token, Some(&id)), None), None).await;
        assert_eq!(status(none), (401, Some("invalid_api_key".to_owned())));
        let bob = read(&relay, with_key(resume_post(&id), Some(BOB)), None).await;
        assert_eq!(status(bob), (404, Some("resume_unknown".to_owned())));
        let alice = read(
            &relay,
            with_key(resume_get(&token, Some(&id)), Some(ALICE)),
            None,
        )
        .await;
        assert_eq!(alice.status, 200);
        assert_eq!(
            whatwg::parse(&alice.bytes).last().map(|e| e.data.as_str()),
            Some("[DONE]")
        );
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test]
async fn resumes_over_http2_too() {
    within(async {
        let up = streaming_upstream(20, Duration::from_millis(5)).await;
        let relay = start_relay_to(&up, &["--resume-window", "5s"]).await;
        let first = read_on(
            Client::h2(relay.listen).await,
            post(CHAT, STREAM_REQ),
            Some(300),
        )
        .await;
        assert_eq!(first.status, 200);
        let token = first.stream_id.expect("stream id");
        let seen = whatwg::parse(&first.bytes);
        let last = seen
            .last()
            .map(|e| e.last_event_id.clone())
            .expect("an event before the cut");
        let rest = read_on(Client::h2(relay.listen).await, resume_post(&last), None).await;
        assert_eq!(rest.status, 200);
        assert_eq!(rest.stream_id.as_deref(), Some(token.as_str()));
        let mut all = datas(&seen);
        all.extend(datas(&whatwg::parse(&rest.bytes)));
        assert_eq!(all, datas(&whatwg::parse(&concat(&chat_events(20)))));
        stop_relay(relay).await;
    })
    .await;
}
