//! Continuation (issue 16): an answer cut after its first event reached
//! the client goes on, inside the same client stream, on another endpoint
//! that declares how it continues one (`continuation = "anthropic" |
//! "vllm" | "assistant"`), sent the original request with the text
//! delivered so far as a trailing assistant message.
//!
//! Every case runs against fixed [`FaultyUpstream`]s: they all stream the
//! same [`FIXED_PIECES`] and continue a prefill with the rest of them, so
//! a stitched stream must read exactly as the fixed answer. What is held:
//!
//! - for OpenAI chat and Anthropic messages, after a reset, a clean close
//!   without the completion signal, a stall past `read_timeout` and an
//!   upstream error event, the client accumulates the whole answer from a
//!   well-formed stream (one opening, consistent block indices, the
//!   dialect's ending, no error event); the fallback got the prefill in its
//!   declared form; the endpoint that cut got one request; the access log
//!   and `sse_edge_continuations_total` say from, to, reason and tokens
//!   (this file);
//! - the refusals, with today's honest error and no prefill sent
//!   (`refusals`);
//! - attempts, usage composition, resumable routes, failed continuations
//!   (`stitching`).

mod refusals;
mod stitching;

use std::time::Duration;

use serde_json::{Value, json};
use sse_edge::internals::whatwg;

use crate::support::*;
use crate::*;

// ================================================================ names

/// Continuations, labelled `{route, from, to, reason}`.
pub const CONTINUATIONS: &str = "sse_edge_continuations_total";

/// The count of continuations `from` -> `to` for `reason`.
pub fn continuations_counted(m: &str, from: &str, to: &str, reason: &str) -> f64 {
    let labels = [
        ("route", ROUTE),
        ("from", from),
        ("to", to),
        ("reason", reason),
    ];
    metric_or_zero(m, CONTINUATIONS, &labels)
}

/// Every continuation counted, whatever its labels.
pub fn all_continuations(m: &str) -> f64 {
    metric_sum(m, CONTINUATIONS, &[])
}

/// One entry of the access log's `continuations`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Continued {
    pub from: Option<String>,
    pub to: Option<String>,
    pub reason: String,
    pub tokens: u64,
}

/// A continuation from `from` to `to` (`None`: nobody continued).
pub fn cont(from: &str, to: Option<&str>, reason: &str, tokens: u64) -> Continued {
    Continued {
        from: Some(from.to_owned()),
        to: to.map(str::to_owned),
        reason: reason.to_owned(),
        tokens,
    }
}

/// Access log: the request's continuations, in order.
pub fn continuations(line: &Value) -> Vec<Continued> {
    let Some(list) = line["continuations"].as_array() else {
        return Vec::new();
    };
    let name = |v: &Value| v.as_str().map(str::to_owned);
    list.iter()
        .map(|c| Continued {
            from: name(&c["from"]),
            to: name(&c["to"]),
            reason: c["reason"].as_str().unwrap_or_default().to_owned(),
            tokens: c["tokens_before_cut"].as_u64().unwrap_or(u64::MAX),
        })
        .collect()
}

// ================================================================ dialects

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Chat,
    Messages,
}

impl Api {
    pub fn path(self) -> &'static str {
        match self {
            Api::Chat => CHAT,
            Api::Messages => MESSAGES,
        }
    }

    /// Events before the first text piece (the role chunk; Anthropic's
    /// `message_start` and `content_block_start`).
    pub fn openers(self) -> usize {
        match self {
            Api::Chat => 1,
            Api::Messages => 2,
        }
    }

    /// A fault spec cutting after the openers and `pieces` text pieces.
    pub fn after(self, fault: &str, pieces: usize) -> String {
        format!("{fault}={}", self.openers() + pieces)
    }
}

/// The text of the first `pieces` pieces of the fixed answer.
pub fn first_pieces(pieces: usize) -> String {
    FIXED_PIECES[..pieces].concat()
}

/// A relay from groups, continuation on with `attempts`, `route` keys
/// set on the route.
pub fn cont_file(groups: Vec<Group>, attempts: u32, route: &[(&str, &str)]) -> RouteFile {
    let file = route_file(groups).set("continuation_attempts", &attempts.to_string());
    route.iter().fold(file, |f, (k, v)| f.set(k, v))
}

// ================================================================ the client's stream

/// What a client accumulates from a (stitched) stream, and what is wrong
/// with its shape.
#[derive(Debug, Default)]
pub struct Stitched {
    pub text: String,
    /// OpenAI role deltas; Anthropic `message_start`s.
    pub openings: usize,
    /// OpenAI non-null `finish_reason`s; Anthropic `message_delta`s with a
    /// `stop_reason`.
    pub finishes: usize,
    /// The data of error events.
    pub errors: Vec<String>,
    /// The last event: its data (OpenAI), its `type` (Anthropic).
    pub last: String,
    /// The last `usage` object (OpenAI chunk; Anthropic `message_delta`).
    pub usage: Option<Value>,
    /// Anthropic `message_start`'s `usage`.
    pub start_usage: Option<Value>,
    /// Shape errors an SDK's accumulator would trip on.
    pub problems: Vec<String>,
    /// The events' ids (resumable streams).
    pub ids: Vec<String>,
}

/// Reads `body` as `api`'s SDK accumulates it.
pub fn stitched(api: Api, body: &[u8]) -> Stitched {
    stitched_events(api, &whatwg::parse(body))
}

pub fn stitched_events(api: Api, events: &[whatwg::Dispatched]) -> Stitched {
    let mut s = Stitched::default();
    // Anthropic: each block's type and whether it is open.
    let mut blocks: Vec<(String, bool)> = Vec::new();
    for e in events {
        s.ids.push(e.last_event_id.clone());
        if e.data == "[DONE]" {
            s.last = e.data.clone();
            continue;
        }
        let Ok(v) = serde_json::from_str::<Value>(&e.data) else {
            s.problems.push(format!("not JSON: {:?}", e.data));
            continue;
        };
        if v["error"].is_object() || e.event_type == "error" {
            s.errors.push(e.data.clone());
        }
        match api {
            Api::Chat => {
                s.last = e.data.clone();
                chat_event(&v, &mut s);
            }
            Api::Messages => {
                if s.last == "message_stop" {
                    s.problems.push(format!("an event after message_stop: {v}"));
                }
                s.last = v["type"].as_str().unwrap_or_default().to_owned();
                anthropic_event(&v, &mut blocks, &mut s);
            }
        }
    }
    if api == Api::Messages {
        if let Some(i) = blocks.iter().position(|(_, open)| *open) {
            s.problems.push(format!("block {i} never stopped"));
        }
    }
    s
}

fn chat_event(v: &Value, s: &mut Stitched) {
    if v["usage"].is_object() {
        s.usage = Some(v["usage"].clone());
    }
    for c in v["choices"].as_array().into_iter().flatten() {
        if c["index"] != 0 {
            s.problems.push(format!("a choice other than 0: {c}"));
        }
        let delta = &c["delta"];
        if delta.get("role").is_some_and(|r| !r.is_null()) {
            s.openings += 1;
        }
        if let Some(t) = delta["content"].as_str() {
            s.text.push_str(t);
        }
        if !c["finish_reason"].is_null() {
            s.finishes += 1;
        }
    }
}

fn anthropic_event(v: &Value, blocks: &mut Vec<(String, bool)>, s: &mut Stitched) {
    let index = v["index"].as_u64().map(|i| i as usize);
    match v["type"].as_str().unwrap_or_default() {
        "message_start" => {
            s.openings += 1;
            s.start_usage = Some(v["message"]["usage"].clone());
        }
        "content_block_start" => {
            if index != Some(blocks.len()) {
                s.problems
                    .push(format!("block started at {index:?}, want {}", blocks.len()));
            }
            let kind = v["content_block"]["type"].as_str().unwrap_or_default();
            blocks.push((kind.to_owned(), true));
        }
        "content_block_delta" => {
            let block = index.and_then(|i| blocks.get(i));
            let kind = v["delta"]["type"].as_str().unwrap_or_default();
            match block {
                Some((t, true)) if (t == "text") == (kind == "text_delta") => {}
                other => s
                    .problems
                    .push(format!("{kind} at {index:?} into block {other:?}")),
            }
            if kind == "text_delta" {
                s.text
                    .push_str(v["delta"]["text"].as_str().unwrap_or_default());
            }
        }
        "content_block_stop" => match index.and_then(|i| blocks.get_mut(i)) {
            Some((_, open)) if *open => *open = false,
            other => s
                .problems
                .push(format!("stop at {index:?} of block {other:?}")),
        },
        "message_delta" => {
            if !v["delta"]["stop_reason"].is_null() {
                s.finishes += 1;
            }
            if v["usage"].is_object() {
                s.usage = Some(v["usage"].clone());
            }
        }
        _ => {}
    }
}

/// `r` is a `200` stream that reads, as `api`'s SDK accumulates it, as
/// the whole fixed answer: one opening, one finish, the dialect's ending,
/// no error event, nothing an accumulator trips on.
#[track_caller]
pub fn assert_whole(api: Api, r: &Outcome) -> Stitched {
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.err.is_none(), "stream failed: {:?}\n{}", r.err, r.text());
    let s = stitched(api, &r.body);
    let body = r.text();
    assert!(s.errors.is_empty(), "error events: {:?}\n{body}", s.errors);
    assert!(s.problems.is_empty(), "{:?}\n{body}", s.problems);
    assert_eq!(s.text, fixed_answer(), "the accumulated text\n{body}");
    assert_eq!(s.openings, 1, "one role delta / message_start\n{body}");
    assert_eq!(s.finishes, 1, "one finish\n{body}");
    let end = match api {
        Api::Chat => "[DONE]",
        Api::Messages => "message_stop",
    };
    assert_eq!(s.last, end, "the stream's last event\n{body}");
    s
}

/// `r` is a `200` stream that delivered `text` and then ended in an error
/// event with `code`; returns the error event's data.
#[track_caller]
pub fn assert_honest(api: Api, r: &Outcome, text: &str, code: &str) -> String {
    if let Err(e) = expect_error_event(r, code) {
        panic!("{e}");
    }
    let s = stitched(api, &r.body);
    assert_eq!(s.text, text, "the text before the error\n{}", r.text());
    assert_eq!(s.errors.len(), 1, "one error event\n{}", r.text());
    assert_eq!(s.openings, 1, "{}", r.text());
    s.errors[0].clone()
}

/// The error code (OpenAI `error.code`; Anthropic `error.type`) a client
/// gets for each cut (a fault of the fixed upstream) nothing continued.
pub fn honest_code(api: Api, fault: &str) -> &'static str {
    match (fault, api) {
        ("cut-after" | "tool-then-reset", Api::Chat) => "upstream_reset",
        ("truncate-after", Api::Chat) => "upstream_truncated",
        ("stall-after", Api::Chat) => "upstream_timeout",
        ("cut-after" | "tool-then-reset" | "truncate-after", Api::Messages) => "api_error",
        ("stall-after", Api::Messages) => "timeout_error",
        // The upstream's own error event, forwarded once held back.
        ("error-after", Api::Chat) => "overloaded",
        ("error-after", Api::Messages) => "overloaded_error",
        _ => unreachable!("{fault}"),
    }
}

// ================================================================ the continuation request

/// `req` is the original request (as [`body`] makes it for `api`) with
/// `delivered` as a trailing assistant message in `mechanism`'s form.
#[track_caller]
pub fn assert_prefill(req: &FaultyRequest, api: Api, mechanism: &str, delivered: &str) {
    assert_prefill_of(req, &body(api.path(), "m", true), mechanism, delivered);
}

/// [`assert_prefill`] for the original request body `original`.
#[track_caller]
pub fn assert_prefill_of(req: &FaultyRequest, original: &str, mechanism: &str, delivered: &str) {
    let got = req.json().expect("a JSON body");
    let mut original: Value = serde_json::from_str(original).unwrap();
    let want_text = match mechanism {
        "anthropic" => delivered.trim_end(),
        _ => delivered,
    };
    let mut messages = original["messages"].as_array().cloned().unwrap();
    messages.push(json!({"role": "assistant", "content": want_text}));
    assert_eq!(
        got["messages"],
        Value::from(messages),
        "{mechanism}: the messages"
    );
    let flags = (
        got.get("continue_final_message"),
        got.get("add_generation_prompt"),
    );
    match mechanism {
        "vllm" => assert_eq!(
            flags,
            (Some(&json!(true)), Some(&json!(false))),
            "vllm flags: {got}"
        ),
        _ => assert_eq!(flags, (None, None), "{mechanism}: no vLLM flags: {got}"),
    }
    // Nothing else changed.
    let mut rest = got.clone();
    for k in [
        "messages",
        "continue_final_message",
        "add_generation_prompt",
    ] {
        rest.as_object_mut().unwrap().remove(k);
    }
    original.as_object_mut().unwrap().remove("messages");
    assert_eq!(rest, original, "the rest of the request");
}

/// Waits for the relay and the upstreams to be at rest, then a little
/// more, so a late request would show in the counts.
pub async fn settled(admin: std::net::SocketAddr, ups: &[&FaultyUpstream]) {
    at_rest(admin, ups).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
}

// ================================================================ continued answers

/// `a` cuts its answer with `fault` after `pieces` text pieces; `b`
/// (declaring `mechanism`) continues it; the client gets the whole answer.
async fn continues(api: Api, fault: &str, pieces: usize, mechanism: &str, reason: &str) {
    continues_after(api, &api.after(fault, pieces), pieces, mechanism, reason).await;
}

/// [`continues`] with the primary's whole fault spec.
async fn continues_after(api: Api, spec: &str, pieces: usize, mechanism: &str, reason: &str) {
    limit(10, async {
        let a = FaultyUpstream::fixed_failing("a", spec).await;
        let b = FaultyUpstream::start_fixed("b").await;
        let groups = vec![
            group("primary", [ep(&a)]),
            group("backup", [ep(&b).continuation(mechanism)]),
        ];
        let file = cont_file(groups, 1, &[("read_timeout", "400ms")]);
        let (relay, mut log) = start_route_file(&file, &[]).await;
        let path = api.path();
        let r = ask(relay.listen, stream_req(path, "m")).await;
        assert_whole(api, &r);
        assert!(r.took < Duration::from_secs(3), "{spec}: took {:?}", r.took);
        assert_eq!(served(&r), Some("a"), "the head is the primary's");
        settled(relay.admin, &[&a, &b]).await;

        let asked: Vec<_> = a.requests().iter().map(|q| q.body.clone()).collect();
        assert_eq!(a.request_count(), 1, "{spec}: a, which cut: {asked:#?}");
        assert_eq!(b.request_count(), 1, "{spec}: b continued once");
        assert_prefill(&b.requests()[0], api, mechanism, &first_pieces(pieces));

        let line = log_line(&mut log, path).await;
        assert_eq!(
            continuations(&line),
            [cont("a", Some("b"), reason, pieces as u64)],
            "{line}"
        );
        assert_eq!(
            served_by(&line),
            Some("b"),
            "the last serving endpoint: {line}"
        );
        assert_eq!(line["outcome"], "complete", "{line}");
        assert_eq!(line["status"], 200, "{line}");
        let m = metrics(relay.admin).await;
        assert_eq!(continuations_counted(&m, "a", "b", reason), 1.0, "{m}");
        assert_eq!(all_continuations(&m), 1.0, "{m}");
        assert_eq!(all_failovers(&m), 0.0, "a continuation is no failover: {m}");
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test]
async fn chat_continues_after_a_reset() {
    continues(Api::Chat, "cut-after", 4, "vllm", "reset").await;
}

#[tokio::test]
async fn chat_continues_after_a_close_without_the_finish() {
    continues(Api::Chat, "truncate-after", 4, "assistant", "truncated").await;
}

#[tokio::test]
async fn chat_continues_after_a_stall_past_read_timeout() {
    continues(Api::Chat, "stall-after", 4, "vllm", "read_timeout").await;
}

#[tokio::test]
async fn chat_continues_after_an_upstream_error_event() {
    continues(Api::Chat, "error-after", 4, "assistant", "error_event").await;
}

/// Cut after the role chunk alone: nothing to prefill, the continuation
/// is the original request, and its role chunk is still dropped.
#[tokio::test]
async fn chat_continues_a_cut_before_any_text() {
    limit(10, async {
        let a = FaultyUpstream::fixed_failing("a", "cut-after=1").await;
        let b = FaultyUpstream::start_fixed("b").await;
        let groups = vec![
            group("primary", [ep(&a)]),
            group("backup", [ep(&b).continuation("vllm")]),
        ];
        let (relay, mut log) = start_route_file(&cont_file(groups, 1, &[]), &[]).await;
        let r = ask(relay.listen, stream_req(CHAT, "m")).await;
        assert_whole(Api::Chat, &r);
        settled(relay.admin, &[&a, &b]).await;
        assert_eq!(a.request_count(), 1);
        assert_eq!(b.request_count(), 1);
        let original: Value = serde_json::from_str(&body(CHAT, "m", true)).unwrap();
        assert_eq!(b.requests()[0].json().unwrap(), original, "no prefill");
        let line = log_line(&mut log, CHAT).await;
        assert_eq!(continuations(&line), [cont("a", Some("b"), "reset", 0)]);
        stop_relay(relay).await;
    })
    .await;
}

/// Cut after `"\n\n"`: the prefill is trimmed, the continuation starts
/// with the whitespace again, and the client gets it once.
#[tokio::test]
async fn messages_continue_after_a_reset_behind_whitespace() {
    assert_eq!(FIXED_PIECES[9], "\n\n");
    continues(Api::Messages, "cut-after", 10, "anthropic", "reset").await;
}

#[tokio::test]
async fn messages_continue_after_a_reset() {
    continues(Api::Messages, "cut-after", 4, "anthropic", "reset").await;
}

#[tokio::test]
async fn messages_continue_after_a_close_without_message_stop() {
    continues(Api::Messages, "truncate-after", 4, "anthropic", "truncated").await;
}

#[tokio::test]
async fn messages_continue_after_a_stall_past_read_timeout() {
    continues(Api::Messages, "stall-after", 6, "anthropic", "read_timeout").await;
}

#[tokio::test]
async fn messages_continue_after_an_upstream_error_event() {
    continues(Api::Messages, "error-after", 10, "anthropic", "error_event").await;
}

/// Cut after the text block was stopped (before `message_delta`): the
/// continuation's block is a new one, at the next index.
#[tokio::test]
async fn messages_continue_a_cut_between_blocks() {
    let spec = format!(
        "cut-after={}",
        Api::Messages.openers() + FIXED_PIECES.len() + 1
    );
    continues_after(
        Api::Messages,
        &spec,
        FIXED_PIECES.len(),
        "anthropic",
        "reset",
    )
    .await;
}
