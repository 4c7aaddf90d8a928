//! Continuations in sequence and within their limits, the usage the client
//! is shown, a continuation that fails, and continued streams on a
//! resumable route.

use http::Request;
use http_body_util::BodyExt;

use super::*;
use crate::support::*;
use crate::*;

fn mechanism(api: Api) -> &'static str {
    match api {
        Api::Chat => "vllm",
        Api::Messages => "anthropic",
    }
}

// ================================================================ attempts

/// `continuation_attempts = 1`: `a` cuts after 4 pieces, `b` continues and
/// cuts in turn after 2 more; `c` (declaring too) is never asked, and the
/// client gets the 6 pieces and the honest error.
async fn attempts_used_up(api: Api) {
    limit(10, async {
        let a = FaultyUpstream::fixed_failing("a", &api.after("cut-after", 4)).await;
        let b = FaultyUpstream::fixed_failing("b", &api.after("cut-after", 2)).await;
        let c = FaultyUpstream::start_fixed("c").await;
        let m = mechanism(api);
        let groups = vec![
            group("primary", [ep(&a)]),
            group("backup", [ep(&b).continuation(m)]),
            group("last", [ep(&c).continuation(m)]),
        ];
        let (relay, mut log) = start_route_file(&cont_file(groups, 1, &[]), &[]).await;
        let path = api.path();
        let r = ask(relay.listen, stream_req(path, "m")).await;
        assert_honest(api, &r, &first_pieces(6), honest_code(api, "cut-after"));
        settled(relay.admin, &[&a, &b, &c]).await;
        let counts = [&a, &b, &c].map(|u| u.request_count());
        assert_eq!(counts, [1, 1, 0], "one continuation, to b");
        let line = log_line(&mut log, path).await;
        assert_eq!(continuations(&line), [cont("a", Some("b"), "reset", 4)]);
        assert_eq!(line["outcome"], "upstream_reset", "{line}");
        assert_eq!(served_by(&line), Some("b"), "{line}");
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test]
async fn chat_is_not_continued_past_its_attempts() {
    attempts_used_up(Api::Chat).await;
}

#[tokio::test]
async fn messages_are_not_continued_past_their_attempts() {
    attempts_used_up(Api::Messages).await;
}

/// `continuation_attempts = 2`: `a` cuts, `b` continues and cuts, `c`
/// finishes; `c` is sent everything delivered before its turn. With
/// `all_declare`, `a` declares a mechanism too: it already cut this
/// answer, and is not asked again.
async fn continued_twice(api: Api, all_declare: bool) {
    limit(10, async {
        let a = FaultyUpstream::fixed_failing("a", &api.after("cut-after", 4)).await;
        let b = FaultyUpstream::fixed_failing("b", &api.after("cut-after", 2)).await;
        let c = FaultyUpstream::start_fixed("c").await;
        let (mb, mc) = match api {
            Api::Chat => ("vllm", "assistant"),
            Api::Messages => ("anthropic", "anthropic"),
        };
        let primary = if all_declare {
            ep(&a).continuation(mb)
        } else {
            ep(&a)
        };
        let groups = vec![
            group("primary", [primary]),
            group("backup", [ep(&b).continuation(mb)]),
            group("last", [ep(&c).continuation(mc)]),
        ];
        let (relay, mut log) = start_route_file(&cont_file(groups, 2, &[]), &[]).await;
        let path = api.path();
        let r = ask(relay.listen, stream_req(path, "m")).await;
        settled(relay.admin, &[&a, &b, &c]).await;
        let asked = a
            .requests()
            .iter()
            .map(|q| q.body.clone())
            .collect::<Vec<_>>();
        assert_eq!(a.request_count(), 1, "a, which cut first: {asked:#?}");
        assert_eq!((b.request_count(), c.request_count()), (1, 1));
        assert_whole(api, &r);
        assert_prefill(&b.requests()[0], api, mb, &first_pieces(4));
        assert_prefill(&c.requests()[0], api, mc, &first_pieces(6));
        let line = log_line(&mut log, path).await;
        assert_eq!(
            continuations(&line),
            [
                cont("a", Some("b"), "reset", 4),
                cont("b", Some("c"), "reset", 6)
            ],
            "{line}"
        );
        assert_eq!(served_by(&line), Some("c"), "{line}");
        assert_eq!(line["outcome"], "complete", "{line}");
        let m = metrics(relay.admin).await;
        assert_eq!(continuations_counted(&m, "a", "b", "reset"), 1.0, "{m}");
        assert_eq!(continuations_counted(&m, "b", "c", "reset"), 1.0, "{m}");
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test]
async fn chat_continues_twice_within_two_attempts() {
    continued_twice(Api::Chat, false).await;
}

#[tokio::test]
async fn messages_continue_twice_within_two_attempts() {
    continued_twice(Api::Messages, false).await;
}

#[tokio::test]
async fn chat_second_continuation_does_not_go_back_to_the_first_cut() {
    continued_twice(Api::Chat, true).await;
}

#[tokio::test]
async fn messages_second_continuation_does_not_go_back_to_the_first_cut() {
    continued_twice(Api::Messages, true).await;
}

// ================================================================ a failed continuation

/// `a` cuts with `fault`; the only declaring endpoint answers `503` to
/// every attempt: the client gets the cut's honest error all the same.
async fn continuation_fails(api: Api, fault: &str, reason: &str) {
    let code = honest_code(api, fault);
    limit(10, async {
        let a = FaultyUpstream::fixed_failing("a", &api.after(fault, 4)).await;
        let b = FaultyUpstream::fixed_failing("b", "503").await;
        let groups = vec![
            group("primary", [ep(&a)]),
            group("backup", [ep(&b).continuation(mechanism(api))]),
        ];
        let route = [("retry_backoff", "20ms"), ("retry_attempts", "1")];
        let (relay, mut log) = start_route_file(&cont_file(groups, 1, &route), &[]).await;
        let path = api.path();
        let r = ask(relay.listen, stream_req(path, "m")).await;
        settled(relay.admin, &[&a, &b]).await;
        let line = log_line(&mut log, path).await;
        assert_honest(api, &r, &first_pieces(4), code);
        assert_eq!(a.request_count(), 1);
        assert!(b.request_count() >= 1, "b was asked");
        assert_eq!(continuations(&line), [cont("a", None, reason, 4)], "{line}");
        assert_ne!(line["outcome"], "complete", "{line}");
        let m = metrics(relay.admin).await;
        assert_eq!(all_continuations(&m), 0.0, "{m}");
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test]
async fn messages_reset_stands_when_the_continuation_fails() {
    continuation_fails(Api::Messages, "cut-after", "reset").await;
}

#[tokio::test]
async fn chat_reset_stands_when_the_continuation_fails() {
    continuation_fails(Api::Chat, "cut-after", "reset").await;
}

#[tokio::test]
async fn chat_error_event_reaches_the_client_when_the_continuation_fails() {
    continuation_fails(Api::Chat, "error-after", "error_event").await;
}

#[tokio::test]
async fn messages_error_event_reaches_the_client_when_the_continuation_fails() {
    continuation_fails(Api::Messages, "error-after", "error_event").await;
}

// ================================================================ usage

/// OpenAI chat with `include_usage`: the client's usage chunk is the
/// continuation's report with the delivered deltas moved from the prompt
/// to the completion, the same total.
#[tokio::test]
async fn chat_usage_covers_the_whole_answer() {
    limit(10, async {
        let a = FaultyUpstream::fixed_failing("a", "cut-after=5").await;
        let b = FaultyUpstream::start_fixed("b").await;
        let groups = vec![
            group("primary", [ep(&a)]),
            group("backup", [ep(&b).continuation("vllm")]),
        ];
        let (relay, mut log) = start_route_file(&cont_file(groups, 1, &[]), &[]).await;
        let req = r#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#;
        let r = ask(relay.listen, post(CHAT, req)).await;
        let s = assert_whole(Api::Chat, &r);
        settled(relay.admin, &[&a, &b]).await;
        assert_prefill_of(&b.requests()[0], req, "vllm", &first_pieces(4));
        let (p, c) = fixed_usage(Some(&first_pieces(4)));
        let delivered = 4;
        let usage = s.usage.expect("a usage chunk");
        let got = ["prompt_tokens", "completion_tokens", "total_tokens"].map(|k| usage[k].clone());
        let want = [p - delivered, c + delivered, p + c].map(Value::from);
        assert_eq!(got, want, "{usage}");
        // With these pieces the estimate is exact: the whole answer.
        assert_eq!(
            usage["completion_tokens"],
            FIXED_PIECES.len(),
            "{usage}"
        );
        assert_eq!(r.text().matches("\"usage\":{").count(), 1, "{}", r.text());
        let line = log_line(&mut log, CHAT).await;
        assert_eq!(line["outcome"], "complete", "{line}");
        stop_relay(relay).await;
    })
    .await;
}

/// Anthropic: `message_delta`'s `output_tokens` is the continuation's plus
/// the text deltas delivered before the cut; `message_start` (the
/// primary's) is the only one.
#[tokio::test]
async fn messages_usage_covers_the_whole_answer() {
    limit(10, async {
        let a = FaultyUpstream::fixed_failing("a", "cut-after=12").await;
        let b = FaultyUpstream::start_fixed("b").await;
        let groups = vec![
            group("primary", [ep(&a)]),
            group("backup", [ep(&b).continuation("anthropic")]),
        ];
        let (relay, mut log) = start_route_file(&cont_file(groups, 1, &[]), &[]).await;
        let r = ask(relay.listen, stream_req(MESSAGES, "m")).await;
        let s = assert_whole(Api::Messages, &r);
        settled(relay.admin, &[&a, &b]).await;
        let prefill = b.requests()[0].prefill().unwrap();
        assert_eq!(prefill, first_pieces(10).trim_end());
        let (_, c) = fixed_usage(Some(&prefill));
        let delivered = 10;
        let usage = s.usage.expect("message_delta usage");
        assert_eq!(usage["output_tokens"], c + delivered, "{usage}");
        let start = s.start_usage.expect("message_start usage");
        assert_eq!(
            start["input_tokens"], PROMPT_TOKENS,
            "the primary's: {start}"
        );
        let line = log_line(&mut log, MESSAGES).await;
        assert_eq!(line["outcome"], "complete", "{line}");
        stop_relay(relay).await;
    })
    .await;
}

// ================================================================ resumable routes

/// Reads the events of `req` on a fresh connection; with `max`, drops the
/// connection once that many arrived (and keeps only those). Returns the
/// stream id header and the events.
async fn read_events(
    relay: &sse_edge::Running,
    req: Request<TestBody>,
    max: Option<usize>,
) -> (Option<String>, Vec<whatwg::Dispatched>) {
    let mut client = Client::h1(relay.listen).await;
    let res = client.send(req).await.expect("request sent");
    assert_eq!(res.status(), 200);
    let id = res
        .headers()
        .get("sse-edge-stream-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut body = res.into_body();
    let mut parser = whatwg::Parser::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.expect("body frame").into_data() else {
            continue;
        };
        parser.feed(&data);
        if max.is_some_and(|m| parser.events().len() >= m) {
            break;
        }
    }
    let mut events = parser.events().to_vec();
    if let Some(m) = max {
        events.truncate(m);
    }
    (id, events)
}

fn with_last_event_id(mut req: Request<TestBody>, id: &str) -> Request<TestBody> {
    req.headers_mut()
        .insert("last-event-id", id.parse().unwrap());
    req
}

/// A resumable route: the client drops before the cut, reconnects across
/// the switch and drops again, then reads to the end; every event arrives
/// once with ids `1..` in order, and a full replay is the same stitched
/// stream.
async fn continued_stream_resumes(api: Api, fault: &str, reason: &str) {
    limit(15, async {
        let a = FaultyUpstream::fixed_failing("a", &api.after(fault, 4)).await;
        let b = FaultyUpstream::start_fixed("b").await;
        let groups = vec![
            group("primary", [ep(&a)]),
            group("backup", [ep(&b).continuation(mechanism(api))]),
        ];
        let route = [("resume_window", "30s"), ("read_timeout", "400ms")];
        let (relay, mut log) = start_route_file(&cont_file(groups, 1, &route), &[]).await;
        let path = api.path();
        let cut_at = api.openers() + 4;

        // Before the cut.
        let (id, mut got) = read_events(&relay, stream_req(path, "m"), Some(2)).await;
        let token = id.expect("sse-edge-stream-id");
        b.wait_requests(1).await;
        // Across the switch: two events of a, two of the continuation.
        let last = format!("{token}:2");
        let req = with_last_event_id(stream_req(path, "m"), &last);
        let (_, more) = read_events(&relay, req, Some(cut_at)).await;
        got.extend(more);
        // The rest.
        let last = got.last().unwrap().last_event_id.clone();
        let (_, rest) = read_events(
            &relay,
            with_last_event_id(stream_req(path, "m"), &last),
            None,
        )
        .await;
        got.extend(rest);

        let ids: Vec<_> = got.iter().map(|e| e.last_event_id.clone()).collect();
        let want: Vec<_> = (1..=got.len()).map(|i| format!("{token}:{i}")).collect();
        assert_eq!(ids, want, "ids go on across the switch and the reconnects");
        let s = stitched_events(api, &got);
        assert!(s.errors.is_empty() && s.problems.is_empty(), "{s:?}");
        assert_eq!(s.text, fixed_answer());
        assert_eq!((s.openings, s.finishes), (1, 1), "{s:?}");

        // A replay from the start is the same stitched stream.
        let replay = Request::get(format!("/sse-edge/streams/{token}"))
            .header("accept", "text/event-stream")
            .body(empty())
            .unwrap();
        let (_, all) = read_events(&relay, replay, None).await;
        assert_eq!(all, got, "the replay");

        upstreams_done(&[&a, &b]).await;
        assert_eq!((a.request_count(), b.request_count()), (1, 1));
        let line = log_line(&mut log, path).await;
        assert_eq!(
            continuations(&line),
            [cont("a", Some("b"), reason, 4)],
            "{line}"
        );
        assert_eq!(line["outcome"], "complete", "{line}");
        stop_relay(relay).await;
    })
    .await;
}

/// Waits until the resumable stream's producer is done with the
/// upstreams (the stream itself stays buffered for its window).
async fn upstreams_done(ups: &[&FaultyUpstream]) {
    let what = "the upstreams' answers closed";
    eventually(Duration::from_secs(5), what, || {
        ups.iter().all(|u| u.open_answers() == 0)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(150)).await;
}

#[tokio::test]
async fn chat_continued_stream_stays_resumable() {
    continued_stream_resumes(Api::Chat, "cut-after", "reset").await;
}

#[tokio::test]
async fn messages_continued_stream_stays_resumable() {
    continued_stream_resumes(Api::Messages, "cut-after", "reset").await;
}

/// A resumable stream's read timeout runs on the producer's own timer.
#[tokio::test]
async fn chat_stream_continued_after_a_stall_stays_resumable() {
    continued_stream_resumes(Api::Chat, "stall-after", "read_timeout").await;
}

#[tokio::test]
async fn messages_stream_continued_after_an_error_event_stays_resumable() {
    continued_stream_resumes(Api::Messages, "error-after", "error_event").await;
}

/// The continuing endpoint is slow to answer: the client's stream gets
/// keepalives between the cut and the continuation (a comment for OpenAI,
/// `event: ping` for Anthropic), and reads as the whole answer.
async fn keepalives_during_the_switch(api: Api) {
    limit(10, async {
        let a = FaultyUpstream::fixed_failing("a", &api.after("cut-after", 4)).await;
        let b = FaultyUpstream::fixed_failing("b", "slow-first=900ms").await;
        let groups = vec![
            group("primary", [ep(&a)]),
            group("backup", [ep(&b).continuation(mechanism(api))]),
        ];
        let route = [("heartbeat", "200ms")];
        let (relay, mut log) = start_route_file(&cont_file(groups, 1, &route), &[]).await;
        let path = api.path();
        let r = ask(relay.listen, stream_req(path, "m")).await;
        assert_whole(api, &r);
        let text = r.text();
        let cut = text
            .find(r#""text":" fox""#)
            .or_else(|| text.find(r#""content":" fox""#));
        let next = text.find(r#"" jumps""#);
        let (Some(cut), Some(next)) = (cut, next) else {
            panic!("the pieces around the cut: {text}");
        };
        let between = &text[cut..next];
        let keepalive = match api {
            Api::Chat => between.contains("\n:"),
            Api::Messages => between.contains("event: ping"),
        };
        assert!(keepalive, "a keepalive during the switch: {between:?}");
        let line = log_line(&mut log, path).await;
        assert!(line["heartbeats"].as_u64() >= Some(2), "{line}");
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test]
async fn chat_keepalives_hold_the_client_during_a_slow_continuation() {
    keepalives_during_the_switch(Api::Chat).await;
}

#[tokio::test]
async fn messages_pings_hold_the_client_during_a_slow_continuation() {
    keepalives_during_the_switch(Api::Messages).await;
}

/// `include_usage` on the route: the relay asked for usage, so the
/// continuation is asked for it too and its usage chunk stays out of the
/// client's stream.
#[tokio::test]
async fn chat_usage_the_relay_asked_for_stays_out_of_a_continued_stream() {
    limit(10, async {
        let a = FaultyUpstream::fixed_failing("a", "cut-after=5").await;
        let b = FaultyUpstream::start_fixed("b").await;
        let groups = vec![
            group("primary", [ep(&a)]),
            group("backup", [ep(&b).continuation("vllm")]),
        ];
        let route = [("include_usage", "true")];
        let (relay, mut log) = start_route_file(&cont_file(groups, 1, &route), &[]).await;
        let r = ask(relay.listen, stream_req(CHAT, "m")).await;
        let s = assert_whole(Api::Chat, &r);
        assert_eq!(s.usage, None, "no usage chunk: {}", r.text());
        settled(relay.admin, &[&a, &b]).await;
        let asked = b.requests()[0].json().unwrap();
        assert_eq!(asked["stream_options"]["include_usage"], true, "{asked}");
        let line = log_line(&mut log, CHAT).await;
        let (p, c) = fixed_usage(Some(&first_pieces(4)));
        let got = (
            line["input_tokens"].as_u64(),
            line["output_tokens"].as_u64(),
        );
        assert_eq!(
            got,
            (Some(p), Some(c)),
            "the continuation's own report: {line}"
        );
        stop_relay(relay).await;
    })
    .await;
}
