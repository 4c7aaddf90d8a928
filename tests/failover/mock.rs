//! The faulty upstream itself, asked directly (and once through a relay
//! with a plain `--upstream` route): its healthy answers, how a request
//! picks a fault, and each fault of its vocabulary. These hold on any
//! relay; when a failover test fails, they say whether the mock is at
//! fault.

use std::time::Duration;

use http::{HeaderValue, Request};
use http_body_util::BodyExt;

use crate::support::*;
use crate::*;

fn with_fault(mut req: Request<TestBody>, spec: &str) -> Request<TestBody> {
    let v = HeaderValue::from_str(spec).unwrap();
    req.headers_mut().insert("x-fault", v);
    req
}

#[tokio::test]
async fn healthy_answers_in_each_shape() {
    limit(10, async {
        let a = FaultyUpstream::start("a").await;
        for path in [CHAT, MESSAGES] {
            let r = ask(a.addr, stream_req(path, "m1")).await;
            assert_served(&r, &a, "m1", path);
            assert_eq!(r.header("content-type"), Some("text/event-stream"));
            let r = ask(a.addr, post(path, body(path, "m2", false))).await;
            assert_eq!((r.status.as_u16(), served(&r)), (200, Some("a")));
            assert_same(&r.body, healthy_json("a", "m2", path).as_bytes(), path);
        }
        let usage = r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#;
        let r = ask(a.addr, post(CHAT, usage)).await;
        let want = healthy_stream("a", "m", CHAT, true);
        assert_same(&r.body, want.as_bytes(), "with usage");
        assert!(r.text().contains(r#""usage":{"completion_tokens":3"#));
        // The chat stream parses as the SDKs read it.
        let events = sse_edge::internals::whatwg::parse(&r.body);
        let text: String = events
            .iter()
            .filter(|e| e.data != "[DONE]")
            .filter_map(|e| serde_json::from_str::<serde_json::Value>(&e.data).ok())
            .filter_map(|v| {
                v["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        assert_eq!(text, "Hello from a");
        assert_eq!(a.request_count(), 5);
        assert_eq!(a.connections(), 5);
        assert_eq!(a.requests()[0].model().as_deref(), Some("m1"));
    })
    .await;
}

#[tokio::test]
async fn a_fault_comes_from_the_header_the_model_or_the_default() {
    limit(10, async {
        let a = FaultyUpstream::start("a").await;
        let r = ask(a.addr, stream_req(CHAT, "fault:503")).await;
        assert_passed_through(&r, &a, "503", CHAT);
        let r = ask(a.addr, with_fault(stream_req(CHAT, "fault:503"), "401")).await;
        assert_passed_through(&r, &a, "401", CHAT);
        a.set_fault("429:retry=2");
        let r = ask(a.addr, stream_req(MESSAGES, "m")).await;
        assert_passed_through(&r, &a, "429", MESSAGES);
        assert_eq!(r.header("retry-after"), Some("2"));
        let r = ask(a.addr, stream_req(CHAT, "fault:context")).await;
        assert_passed_through(&r, &a, "context", CHAT);
        assert!(r.text().contains("context_length_exceeded"));
        a.recover();
        assert_served(&ask(a.addr, stream_req(CHAT, "m")).await, &a, "m", CHAT);
        a.set_fault("500:times=1");
        assert_eq!(ask(a.addr, stream_req(CHAT, "m")).await.status, 500);
        assert_served(&ask(a.addr, stream_req(CHAT, "m")).await, &a, "m", CHAT);
        let r = ask(a.addr, stream_req(CHAT, "fault:nonsense")).await;
        assert_eq!(r.status, 400);
        assert!(r.text().contains("unknown fault"), "{}", r.text());
        let faults: Vec<_> = a.requests().into_iter().map(|r| r.fault).collect();
        assert_eq!(faults[0].as_deref(), Some("fault:503"));
        assert_eq!(faults[1].as_deref(), Some("401"));
        assert_eq!(faults[4], None);
        // Answers keep the connection.
        let mut c = Client::h1(a.addr).await;
        assert_eq!(c.fetch(stream_req(CHAT, "fault:503")).await.status, 503);
        assert_eq!(c.fetch(stream_req(CHAT, "m")).await.status, 200);
    })
    .await;
}

#[tokio::test]
async fn resets_closes_and_silences() {
    limit(10, async {
        let a = FaultyUpstream::start("a").await;
        for fault in ["reset", "close-after-head-read"] {
            let got = send(a.addr, stream_req(CHAT, &format!("fault:{fault}"))).await;
            assert!(got.is_err(), "{fault}: no answer at all");
        }
        let quiet = Duration::from_millis(300);
        let silent = send(a.addr, stream_req(CHAT, "fault:silent"));
        assert!(tokio::time::timeout(quiet, silent).await.is_err());
        for fault in [
            "head-then-silent",
            "partial-then-silent",
            "comments-only=50ms",
        ] {
            let mut c = Client::h1(a.addr).await;
            let res = c.send(stream_req(CHAT, &format!("fault:{fault}"))).await;
            let res = res.unwrap();
            assert_eq!(res.status(), 200, "{fault}");
            let mut body = res.into_body();
            let mut seen = Vec::new();
            let _ = tokio::time::timeout(quiet, async {
                while let Some(Ok(f)) = body.frame().await {
                    seen.extend_from_slice(&f.into_data().unwrap_or_default());
                }
            })
            .await;
            let seen = String::from_utf8_lossy(&seen).into_owned();
            let events = sse_edge::internals::whatwg::parse(seen.as_bytes());
            assert!(events.is_empty(), "{fault}: no event, got {seen:?}");
            match fault {
                "head-then-silent" => assert_eq!(seen, ""),
                "partial-then-silent" => assert_eq!(seen, r#"data: {"partial":"a""#),
                _ => assert!(seen.matches(": waiting for a\n\n").count() >= 3, "{seen:?}"),
            }
        }
        // The silent answers end when the client goes away.
        eventually(Duration::from_secs(5), "answers closed", || {
            a.open_answers() == 0
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn streams_cut_short_slow_and_held() {
    limit(10, async {
        let a = FaultyUpstream::start("a").await;
        let two = healthy_events("a", "fault:cut-after=2", CHAT, false)[..2].concat();
        let r = ask(a.addr, stream_req(CHAT, "fault:cut-after=2")).await;
        assert!(r.err.is_some(), "cut: {}", r.text());
        assert_eq!(r.text(), two);
        let r = ask(a.addr, stream_req(CHAT, "fault:truncate-after=2")).await;
        assert!(r.err.is_none());
        let two = healthy_events("a", "fault:truncate-after=2", CHAT, false)[..2].concat();
        assert_eq!(r.text(), two);
        let r = ask(a.addr, stream_req(CHAT, "fault:slow-first=300ms")).await;
        assert!(r.took >= Duration::from_millis(300), "{:?}", r.took);
        assert_served(&r, &a, "fault:slow-first=300ms", CHAT);

        a.hold();
        let held = tokio::spawn(ask(a.addr, stream_req(CHAT, "m")));
        eventually(Duration::from_secs(5), "held", || a.open_answers() == 1).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!held.is_finished());
        a.release();
        assert_served(&held.await.unwrap(), &a, "m", CHAT);
    })
    .await;
}

/// The relay as it is today (one `--upstream`, no groups) relays the
/// mock's stream byte for byte, and its reset as an error event.
#[tokio::test]
async fn the_relay_relays_the_mock_through_a_plain_route() {
    limit(10, async {
        let a = FaultyUpstream::start("a").await;
        let relay = start_relay_to_url(&a.url(), &[]).await;
        let r = ask(relay.listen, stream_req(CHAT, "m")).await;
        assert_served(&r, &a, "m", CHAT);
        let r = ask(relay.listen, stream_req(CHAT, "fault:cut-after=2")).await;
        expect_error_event(&r, "upstream_reset").unwrap();
        stop_relay(relay).await;
    })
    .await;
}

/// The text an answer's events carry (OpenAI `delta.content`, Anthropic
/// `text_delta`).
fn answer_text(body: &[u8]) -> String {
    sse_edge::internals::whatwg::parse(body)
        .iter()
        .filter_map(|e| serde_json::from_str::<serde_json::Value>(&e.data).ok())
        .filter_map(|v| {
            let chat = v["choices"][0]["delta"]["content"].as_str();
            chat.or_else(|| v["delta"]["text"].as_str())
                .map(str::to_owned)
        })
        .collect()
}

fn with_prefill(path: &str, prefill: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(&body(path, "m", true)).unwrap();
    let prefill = serde_json::json!({"role": "assistant", "content": prefill});
    v["messages"].as_array_mut().unwrap().push(prefill);
    v.to_string()
}

#[tokio::test]
async fn fixed_instances_share_an_answer_and_continue_a_prefill() {
    limit(10, async {
        let (a, b) = (
            FaultyUpstream::start_fixed("a").await,
            FaultyUpstream::start_fixed("b").await,
        );
        for path in [CHAT, MESSAGES] {
            for up in [&a, &b] {
                let r = ask(up.addr, stream_req(path, "m")).await;
                assert_eq!(answer_text(&r.body), fixed_answer(), "{path}");
                let want = fixed_events(&up.name, "m", path, false, None).unwrap();
                assert_same(&r.body, want.concat().as_bytes(), path);
            }
            // A prefill: the rest, the piece it ends in finished first.
            let r = ask(a.addr, post(path, with_prefill(path, "The qu"))).await;
            let rest = answer_text(&r.body);
            assert_eq!(rest, &fixed_answer()["The qu".len()..], "{path}");
            assert!(rest.starts_with("ick brown"), "{rest:?}");
            assert_eq!(
                a.requests().last().unwrap().prefill().as_deref(),
                Some("The qu")
            );
            // Anthropic's trimmed prefill: the whitespace comes back first.
            let trimmed = first_pieces_text(10);
            let trimmed = trimmed.trim_end();
            let r = ask(a.addr, post(path, with_prefill(path, trimmed))).await;
            assert_eq!(answer_text(&r.body), "\n\nThen it rests.", "{path}");
            // A prefill the fixed answer does not start with: 400.
            let r = ask(a.addr, post(path, with_prefill(path, "Hello"))).await;
            assert_eq!(r.status, 400, "{}", r.text());
        }
        // Anthropic refuses a prefill ending in whitespace, as the API does.
        let r = ask(a.addr, post(MESSAGES, with_prefill(MESSAGES, "The "))).await;
        assert_eq!(r.status, 400);
        assert!(r.text().contains("trailing whitespace"), "{}", r.text());
        let r = ask(a.addr, post(CHAT, with_prefill(CHAT, "The "))).await;
        assert_eq!(answer_text(&r.body), &fixed_answer()[4..]);
        // The usage counts the prefill as prompt (each piece it starts in).
        assert_eq!(fixed_usage(None), (9, 13));
        assert_eq!(fixed_usage(Some("The quick")), (11, 11));
        assert_eq!(fixed_usage(Some("The qu")), (11, 12));
        // Faults count the continuation's own events.
        a.set_fault("truncate-after=2");
        let r = ask(a.addr, post(CHAT, with_prefill(CHAT, "The quick"))).await;
        assert_eq!(answer_text(&r.body), " brown");
    })
    .await;
}

fn first_pieces_text(n: usize) -> String {
    FIXED_PIECES[..n].concat()
}

#[tokio::test]
async fn error_events_and_tool_calls_cut_short() {
    limit(10, async {
        let a = FaultyUpstream::start_fixed("a").await;
        for path in [CHAT, MESSAGES] {
            let r = ask(a.addr, with_fault(stream_req(path, "m"), "error-after=3")).await;
            assert!(r.err.is_none(), "a clean end after the error event");
            let events = fixed_events("a", "m", path, false, None).unwrap();
            let want = format!("{}{}", events[..3].concat(), error_event(path));
            assert_same(&r.body, want.as_bytes(), path);

            let r = ask(a.addr, with_fault(stream_req(path, "m"), "tool-then-reset")).await;
            assert!(r.err.is_some(), "reset: {}", r.text());
            let want = tool_events("a", "m", path, FIXED_PIECES[0]).concat();
            assert_same(&r.body, want.as_bytes(), path);
            assert!(r.text().contains("get_weather"));
        }
        let r = ask(a.addr, with_fault(stream_req(CHAT, "m"), "error-after=1")).await;
        expect_error_event(&r, "overloaded").unwrap();
        let r = ask(
            a.addr,
            with_fault(stream_req(MESSAGES, "m"), "error-after=1"),
        )
        .await;
        expect_error_event(&r, "overloaded_error").unwrap();
    })
    .await;
}
