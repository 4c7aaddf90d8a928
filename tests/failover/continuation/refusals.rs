//! When an answer is not continued: today's honest error event reaches
//! the client, and no endpoint is sent a prefill. No endpoint but the one
//! that cut declares a mechanism; the cut fell in (or after) a tool call;
//! the request asked for several choices; the attempts are used up (in
//! `stitching`).

use super::*;
use crate::support::*;
use crate::*;

/// `a` cuts with `fault` after 4 pieces; `b` declares nothing (and, with
/// `a_declares`, `a` declares `mechanism` itself, so the route continues
/// but has nowhere to go): the honest error, and `b` is never asked.
async fn refused_without_a_declaring_fallback(api: Api, fault: &str, a_declares: bool) {
    limit(10, async {
        let a = FaultyUpstream::fixed_failing("a", &api.after(fault, 4)).await;
        let b = FaultyUpstream::start_fixed("b").await;
        let mechanism = match api {
            Api::Chat => "vllm",
            Api::Messages => "anthropic",
        };
        let primary = if a_declares {
            ep(&a).continuation(mechanism)
        } else {
            ep(&a)
        };
        let groups = vec![group("primary", [primary]), group("backup", [ep(&b)])];
        let file = cont_file(groups, 2, &[("read_timeout", "400ms")]);
        let (relay, mut log) = start_route_file(&file, &[]).await;
        let path = api.path();
        let r = ask(relay.listen, stream_req(path, "m")).await;
        let error = assert_honest(api, &r, &first_pieces(4), honest_code(api, fault));
        if fault == "error-after" {
            let upstream: Value = serde_json::from_str(
                error_event(path)
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .unwrap(),
            )
            .unwrap();
            let got: Value = serde_json::from_str(&error).unwrap();
            assert_eq!(got, upstream, "the upstream's own error event");
        }
        settled(relay.admin, &[&a, &b]).await;
        assert_eq!(a.request_count(), 1, "{fault}: a");
        assert_eq!(b.request_count(), 0, "{fault}: no prefill to b");
        let line = log_line(&mut log, path).await;
        assert_eq!(continuations(&line), [], "{line}");
        assert_eq!(served_by(&line), Some("a"), "{line}");
        let m = metrics(relay.admin).await;
        assert_eq!(all_continuations(&m), 0.0, "{m}");
        stop_relay(relay).await;
    })
    .await;
}

macro_rules! refused_without_fallback {
    ($($name:ident: $api:expr, $fault:literal, $a_declares:literal;)*) => {$(
        #[tokio::test]
        async fn $name() {
            refused_without_a_declaring_fallback($api, $fault, $a_declares).await;
        }
    )*};
}

refused_without_fallback! {
    chat_reset_without_a_declaring_fallback: Api::Chat, "cut-after", false;
    chat_close_without_a_declaring_fallback: Api::Chat, "truncate-after", false;
    chat_stall_without_a_declaring_fallback: Api::Chat, "stall-after", false;
    chat_error_event_without_a_declaring_fallback: Api::Chat, "error-after", false;
    messages_reset_without_a_declaring_fallback: Api::Messages, "cut-after", false;
    messages_close_without_a_declaring_fallback: Api::Messages, "truncate-after", false;
    messages_stall_without_a_declaring_fallback: Api::Messages, "stall-after", false;
    messages_error_event_without_a_declaring_fallback: Api::Messages, "error-after", false;
    chat_reset_when_only_the_cutting_endpoint_declares: Api::Chat, "cut-after", true;
    messages_error_event_when_only_the_cutting_endpoint_declares: Api::Messages, "error-after", true;
}

/// A cut inside a tool call's arguments (after a text piece): the honest
/// error, and the declaring fallback is never asked.
async fn refused_inside_a_tool_call(api: Api) {
    limit(10, async {
        let a = FaultyUpstream::fixed_failing("a", "tool-then-reset").await;
        let b = FaultyUpstream::start_fixed("b").await;
        let mechanism = match api {
            Api::Chat => "vllm",
            Api::Messages => "anthropic",
        };
        let groups = vec![
            group("primary", [ep(&a)]),
            group("backup", [ep(&b).continuation(mechanism)]),
        ];
        let (relay, mut log) = start_route_file(&cont_file(groups, 2, &[]), &[]).await;
        let path = api.path();
        let r = ask(relay.listen, stream_req(path, "m")).await;
        assert_eq!(r.status, 200);
        expect_error_event(&r, honest_code(api, "cut-after")).unwrap();
        let text = r.text();
        assert!(
            text.contains("get_weather"),
            "the tool call went out: {text}"
        );
        let s = stitched(api, &r.body);
        assert_eq!(s.text, FIXED_PIECES[0], "{text}");
        settled(relay.admin, &[&a, &b]).await;
        assert_eq!(a.request_count(), 1);
        assert_eq!(b.request_count(), 0, "no prefill after a tool call");
        let line = log_line(&mut log, path).await;
        assert_eq!(continuations(&line), [], "{line}");
        assert_eq!(line["outcome"], "upstream_reset", "{line}");
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test]
async fn chat_cut_inside_a_tool_call_is_not_continued() {
    refused_inside_a_tool_call(Api::Chat).await;
}

#[tokio::test]
async fn messages_cut_inside_a_tool_use_block_is_not_continued() {
    refused_inside_a_tool_call(Api::Messages).await;
}

/// `n = 2`: the answer has several choices, none of which a prefill can
/// carry.
#[tokio::test]
async fn chat_with_several_choices_is_not_continued() {
    limit(10, async {
        let a = FaultyUpstream::fixed_failing("a", "cut-after=5").await;
        let b = FaultyUpstream::start_fixed("b").await;
        let groups = vec![
            group("primary", [ep(&a)]),
            group("backup", [ep(&b).continuation("vllm")]),
        ];
        let (relay, mut log) = start_route_file(&cont_file(groups, 2, &[]), &[]).await;
        let req =
            r#"{"model":"m","stream":true,"n":2,"messages":[{"role":"user","content":"hi"}]}"#;
        let r = ask(relay.listen, post(CHAT, req)).await;
        assert_honest(Api::Chat, &r, &first_pieces(4), "upstream_reset");
        settled(relay.admin, &[&a, &b]).await;
        assert_eq!(a.request_count(), 1);
        assert_eq!(b.request_count(), 0, "no prefill for n = 2");
        let line = log_line(&mut log, CHAT).await;
        assert_eq!(continuations(&line), [], "{line}");
        stop_relay(relay).await;
    })
    .await;
}

/// The fallback refuses the prefill with a `400`: the client still gets
/// the cut's own error, never the fallback's `400`.
#[tokio::test]
async fn a_prefill_refused_with_400_never_replaces_the_cut_error() {
    refused_with_400(false).await;
}

/// ... and nothing counts as continued: the log's `to` and `endpoint` do
/// not name the endpoint that refused, and the metric stays at 0.
#[tokio::test]
async fn a_prefill_refused_with_400_is_not_counted_as_a_continuation() {
    refused_with_400(true).await;
}

async fn refused_with_400(check_accounting: bool) {
    limit(10, async {
        let a = FaultyUpstream::fixed_failing("a", "cut-after=5").await;
        let b = FaultyUpstream::fixed_failing("b", "policy400").await;
        let groups = vec![
            group("primary", [ep(&a)]),
            group("backup", [ep(&b).continuation("vllm")]),
        ];
        let (relay, mut log) = start_route_file(&cont_file(groups, 1, &[]), &[]).await;
        let r = ask(relay.listen, stream_req(CHAT, "m")).await;
        assert_honest(Api::Chat, &r, &first_pieces(4), "upstream_reset");
        assert!(!r.text().contains("content_policy"), "{}", r.text());
        settled(relay.admin, &[&a, &b]).await;
        assert_eq!((a.request_count(), b.request_count()), (1, 1));
        let line = log_line(&mut log, CHAT).await;
        assert_eq!(line["outcome"], "upstream_reset", "{line}");
        if !check_accounting {
            stop_relay(relay).await;
            return;
        }
        let m = metrics(relay.admin).await;
        let counted = all_continuations(&m);
        let logged = continuations(&line);
        assert_eq!(
            (logged, served_by(&line), counted),
            (vec![cont("a", None, "reset", 4)], Some("a"), 0.0),
            "a refused continuation is no continuation to b: {line}"
        );
        stop_relay(relay).await;
    })
    .await;
}

/// An OpenAI answer whose `finish_reason` already arrived is complete:
/// a reset before `[DONE]` must not send its full text to another
/// endpoint as a prefill (Anthropic refuses after a `stop_reason`).
#[tokio::test]
async fn chat_answer_that_already_finished_is_not_continued() {
    limit(10, async {
        let finished = Api::Chat.openers() + FIXED_PIECES.len() + 1;
        let a = FaultyUpstream::fixed_failing("a", &format!("cut-after={finished}")).await;
        let b = FaultyUpstream::start_fixed("b").await;
        let groups = vec![
            group("primary", [ep(&a)]),
            group("backup", [ep(&b).continuation("vllm")]),
        ];
        let (relay, _log) = start_route_file(&cont_file(groups, 1, &[]), &[]).await;
        let r = ask(relay.listen, stream_req(CHAT, "m")).await;
        let s = stitched(Api::Chat, &r.body);
        assert_eq!(s.text, fixed_answer(), "{}", r.text());
        settled(relay.admin, &[&a, &b]).await;
        assert_eq!(
            (b.request_count(), s.finishes),
            (0, 1),
            "a finished answer continued: {:?}\n{}",
            b.requests().first().map(|q| q.body.clone()),
            r.text()
        );
        stop_relay(relay).await;
    })
    .await;
}
