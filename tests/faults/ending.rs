//! Area `ending`: upstreams that close an event stream without its
//! terminal event. A complete answer (its own signal said so: every OpenAI
//! chat choice's `finish_reason` and the usage it asked for, Anthropic's
//! `message_delta` with a `stop_reason`) reaches the client as complete,
//! with `data: [DONE]` added for chat clients; a cut one still ends in an
//! `upstream_truncated` error event. The access log's `ending` says which
//! case happened.

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use sse_edge::internals::whatwg;

use crate::CaseResult;
use crate::common::{HB, settled};
use crate::support::*;

const CHAT: &str = "/v1/chat/completions";
const MESSAGES: &str = "/v1/messages";
const RESPONSES: &str = "/v1/responses";
const DONE: &str = "data: [DONE]\n\n";
const ASK_USAGE: &str =
    r#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#;

/// One OpenAI chat chunk for choice `index`; `reason` is the raw JSON of
/// its `finish_reason`.
fn chunk(index: u32, content: &str, reason: &str) -> String {
    format!(
        "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"m\",\"choices\":[{{\"index\":{index},\"delta\":{{\"content\":\"{content}\"}},\"logprobs\":null,\"finish_reason\":{reason}}}],\"usage\":null}}\n\n"
    )
}

const USAGE_CHUNK: &str = "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3,\"total_tokens\":10}}\n\n";

/// A one-choice answer: two content chunks, then the finish chunk.
fn answer() -> Vec<String> {
    vec![
        chunk(0, "Hel", "null"),
        chunk(0, "lo", "null"),
        chunk(0, "", "\"stop\""),
    ]
}

/// An upstream that answers every request with `frames`, one chunk each,
/// then ends its body cleanly.
async fn sending(frames: Vec<String>) -> Upstream {
    Upstream::start(Mode::Http1, move |_| {
        let frames: Vec<Bytes> = frames.iter().cloned().map(Bytes::from).collect();
        async move { sse_response(stream_frames(frames, Duration::from_millis(5), None)) }
    })
    .await
}

/// A logged relay in front of an upstream sending `frames`.
async fn relay_for(
    frames: Vec<String>,
    extra: &[&str],
) -> (Upstream, sse_edge::Running, CapturedLog) {
    let up = sending(frames).await;
    let url = up.url();
    let mut args = vec!["--upstream", url.as_str(), "--heartbeat", HB];
    args.extend_from_slice(extra);
    let (relay, log) = start_logged(&args).await;
    (up, relay, log)
}

/// A `200` stream that ended cleanly, with no error event in it.
fn expect_clean(r: &Outcome) -> Result<(), String> {
    ensure!(r.status == 200, "status {}: {}", r.status, r.text());
    ensure!(r.err.is_none(), "the body failed: {:?}", r.err);
    ensure!(
        error_event_code(&r.body).is_none() && !r.text().contains("upstream_truncated"),
        "an error event in a complete stream: {}",
        r.text()
    );
    Ok(())
}

/// Takes the access-log line for `path` with `outcome` and checks its
/// `ending`.
async fn logged(
    log: &mut CapturedLog,
    path: &str,
    outcome: &str,
    ending: &str,
) -> Result<Value, String> {
    let line = log.outcome(path, outcome).await?;
    ensure!(
        line["ending"] == ending,
        "access log says ending {} (want {ending:?}): {line}",
        line["ending"]
    );
    Ok(line)
}

fn text_of(frames: &[String]) -> String {
    frames.concat()
}

/// Every choice finished, no usage asked for, no `[DONE]`: the client gets
/// every upstream byte and then `data: [DONE]`.
pub(crate) async fn chat_finished_without_done() -> CaseResult {
    let frames = answer();
    let (_up, relay, mut log) = relay_for(frames.clone(), &[]).await;
    let r = send(relay.listen, stream_post(CHAT)).await?;
    expect_clean(&r)?;
    let want = text_of(&frames) + DONE;
    ensure!(r.text() == want, "got {:?}, want {want:?}", r.text());
    logged(&mut log, CHAT, "complete", "signal_done_added").await?;
    let m = settled(relay.admin, true).await?;
    let truncated = metric_or_zero(
        &m,
        "sse_edge_upstream_errors_total",
        &[("class", "truncated")],
    );
    ensure!(truncated == 0.0, "counted as truncated: {truncated}");
    stop_relay(relay).await;
    Ok(())
}

/// The client asked for usage and it came after the finish chunk: complete,
/// with the usage logged; over HTTP/2 too.
pub(crate) async fn chat_finished_with_usage_without_done() -> CaseResult {
    let mut frames = answer();
    frames.push(USAGE_CHUNK.to_owned());
    let (_up, relay, mut log) = relay_for(frames.clone(), &[]).await;
    let want = text_of(&frames) + DONE;
    for (proto, r) in [
        ("HTTP/1.1", send(relay.listen, post(CHAT, ASK_USAGE)).await?),
        (
            "HTTP/2",
            send_h2(relay.listen, post(CHAT, ASK_USAGE)).await?,
        ),
    ] {
        expect_clean(&r).map_err(|e| format!("{proto}: {e}"))?;
        ensure!(r.text() == want, "{proto}: got {:?}", r.text());
        let line = logged(&mut log, CHAT, "complete", "signal_done_added").await?;
        ensure!(
            line["input_tokens"] == 7 && line["usage_source"] == "stream",
            "{proto}: usage not logged: {line}"
        );
    }
    settled(relay.admin, true).await?;
    stop_relay(relay).await;
    Ok(())
}

/// The stream ends with `[DONE]`: nothing is added, ending `terminal`.
pub(crate) async fn chat_done_is_terminal() -> CaseResult {
    let mut frames = answer();
    frames.push(DONE.to_owned());
    let (_up, relay, mut log) = relay_for(frames.clone(), &[]).await;
    let r = send(relay.listen, stream_post(CHAT)).await?;
    expect_clean(&r)?;
    ensure!(r.text() == text_of(&frames), "changed: {:?}", r.text());
    logged(&mut log, CHAT, "complete", "terminal").await?;
    settled(relay.admin, true).await?;
    stop_relay(relay).await;
    Ok(())
}

/// Cut after content, before any `finish_reason`: truncated, as before.
pub(crate) async fn chat_cut_before_finish_reason() -> CaseResult {
    let frames = vec![chunk(0, "Hel", "null"), chunk(0, "lo", "null")];
    let (_up, relay, mut log) = relay_for(frames.clone(), &[]).await;
    let r = send(relay.listen, stream_post(CHAT)).await?;
    expect_error_event(&r, "upstream_truncated")?;
    ensure!(
        r.text().starts_with(&text_of(&frames)),
        "the upstream's events first: {:?}",
        r.text()
    );
    logged(&mut log, CHAT, "upstream_truncated", "truncated").await?;
    let m = settled(relay.admin, true).await?;
    let n = metric_or_zero(
        &m,
        "sse_edge_upstream_errors_total",
        &[("class", "truncated")],
    );
    ensure!(n == 1.0, "truncated errors counted: {n}");
    stop_relay(relay).await;
    Ok(())
}

/// Usage asked for, the stream cut after the finish chunk and before the
/// usage chunk: truncated.
pub(crate) async fn chat_cut_before_asked_usage() -> CaseResult {
    let (_up, relay, mut log) = relay_for(answer(), &[]).await;
    let r = send(relay.listen, post(CHAT, ASK_USAGE)).await?;
    expect_error_event(&r, "upstream_truncated")?;
    logged(&mut log, CHAT, "upstream_truncated", "truncated").await?;
    // The same stream without usage asked for is complete.
    let r = send(relay.listen, stream_post(CHAT)).await?;
    expect_clean(&r)?;
    logged(&mut log, CHAT, "complete", "signal_done_added").await?;
    settled(relay.admin, true).await?;
    stop_relay(relay).await;
    Ok(())
}

/// `n: 2` with only choice 0 finished: truncated; with both: complete.
pub(crate) async fn chat_one_of_two_choices_finished() -> CaseResult {
    const TWO: &str = r#"{"model":"m","stream":true,"n":2,"messages":[]}"#;
    let frames = vec![
        chunk(0, "a", "null"),
        chunk(1, "b", "null"),
        chunk(0, "", "\"stop\""),
        chunk(1, "c", "null"),
    ];
    let (_up, relay, mut log) = relay_for(frames.clone(), &[]).await;
    let r = send(relay.listen, post(CHAT, TWO)).await?;
    expect_error_event(&r, "upstream_truncated")?;
    logged(&mut log, CHAT, "upstream_truncated", "truncated").await?;
    stop_relay(relay).await;

    let mut both = frames;
    both.push(chunk(1, "", "\"length\""));
    let (_up, relay, mut log) = relay_for(both.clone(), &[]).await;
    let r = send(relay.listen, post(CHAT, TWO)).await?;
    expect_clean(&r)?;
    ensure!(r.text() == text_of(&both) + DONE, "got {:?}", r.text());
    logged(&mut log, CHAT, "complete", "signal_done_added").await?;
    settled(relay.admin, true).await?;
    stop_relay(relay).await;
    Ok(())
}

/// The route asked for usage on the client's behalf: the usage-only chunk
/// is removed and `[DONE]` added; without that chunk the stream is cut.
pub(crate) async fn chat_relay_asked_usage() -> CaseResult {
    let mut frames = answer();
    frames.push(USAGE_CHUNK.to_owned());
    let (up, relay, mut log) = relay_for(frames, &["--include-usage", "true"]).await;
    let r = send(relay.listen, stream_post(CHAT)).await?;
    expect_clean(&r)?;
    let want = text_of(&answer()) + DONE;
    ensure!(r.text() == want, "got {:?}, want {want:?}", r.text());
    let line = logged(&mut log, CHAT, "complete", "signal_done_added").await?;
    ensure!(line["output_tokens"] == 3, "usage not logged: {line}");
    let asked = up.requests().pop().map(|q| q.body).unwrap_or_default();
    ensure!(
        String::from_utf8_lossy(&asked).contains("\"include_usage\":true"),
        "the relay did not ask for usage: {asked:?}"
    );
    stop_relay(relay).await;

    let (_up, relay, mut log) = relay_for(answer(), &["--include-usage", "true"]).await;
    let r = send(relay.listen, stream_post(CHAT)).await?;
    expect_error_event(&r, "upstream_truncated")?;
    logged(&mut log, CHAT, "upstream_truncated", "truncated").await?;
    settled(relay.admin, true).await?;
    stop_relay(relay).await;
    Ok(())
}

/// A resumable stream: the added `[DONE]` is stamped with the next id,
/// like every upstream event.
pub(crate) async fn chat_resumable_done_is_stamped() -> CaseResult {
    let frames = answer();
    let (_up, relay, mut log) = relay_for(frames.clone(), &["--resume-window", "5s"]).await;
    let r = send(relay.listen, stream_post(CHAT)).await?;
    expect_clean(&r)?;
    let token = r
        .header("sse-edge-stream-id")
        .ok_or_else(|| format!("no stream id: {:?}", r.headers))?
        .to_owned();
    let events = whatwg::parse(&r.body);
    let datas: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
    let mut want: Vec<String> = whatwg::parse(text_of(&frames).as_bytes())
        .into_iter()
        .map(|e| e.data)
        .collect();
    want.push("[DONE]".to_owned());
    ensure!(datas == want, "events {datas:?}, want {want:?}");
    let last = events
        .last()
        .map(|e| e.last_event_id.clone())
        .unwrap_or_default();
    let want_id = format!("{token}:{}", frames.len() + 1);
    ensure!(last == want_id, "[DONE] has id {last:?}, want {want_id:?}");
    logged(&mut log, CHAT, "complete", "signal_done_added").await?;
    settled(relay.admin, true).await?;
    stop_relay(relay).await;
    Ok(())
}

/// Every choice finished, then the upstream closed inside its next event
/// (`data: [DO`): the client already has those bytes, so nothing can be
/// added at an event boundary; truncated, the cut event closed first.
pub(crate) async fn chat_cut_inside_an_event_after_finish() -> CaseResult {
    let mut frames = answer();
    frames.push("data: [DO".to_owned());
    let (_up, relay, mut log) = relay_for(frames, &[]).await;
    let r = send(relay.listen, stream_post(CHAT)).await?;
    expect_error_event(&r, "upstream_truncated")?;
    logged(&mut log, CHAT, "upstream_truncated", "truncated").await?;
    settled(relay.admin, true).await?;
    stop_relay(relay).await;
    Ok(())
}

fn anthropic_head() -> Vec<String> {
    [
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-test\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    ]
    .map(str::to_owned)
    .to_vec()
}

const MESSAGE_DELTA: &str = "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":5}}\n\n";

/// `message_delta` with a `stop_reason`, then the close without
/// `message_stop`: complete, and the client gets exactly the upstream's
/// bytes.
pub(crate) async fn anthropic_stopped_without_message_stop() -> CaseResult {
    let mut frames = anthropic_head();
    frames.push(MESSAGE_DELTA.to_owned());
    let (_up, relay, mut log) = relay_for(frames.clone(), &[]).await;
    let r = send(relay.listen, stream_post(MESSAGES)).await?;
    expect_clean(&r)?;
    ensure!(r.text() == text_of(&frames), "changed: {:?}", r.text());
    let line = logged(&mut log, MESSAGES, "complete", "signal").await?;
    ensure!(line["output_tokens"] == 5, "usage not logged: {line}");
    settled(relay.admin, true).await?;
    stop_relay(relay).await;
    Ok(())
}

/// Cut before `message_delta`: truncated, as before.
pub(crate) async fn anthropic_cut_before_message_delta() -> CaseResult {
    let (_up, relay, mut log) = relay_for(anthropic_head(), &[]).await;
    let r = send(relay.listen, stream_post(MESSAGES)).await?;
    expect_error_event(&r, "api_error")?;
    ensure!(
        r.text().contains("upstream_truncated") || r.text().contains("without its final event"),
        "not the truncation error: {:?}",
        r.text()
    );
    logged(&mut log, MESSAGES, "upstream_truncated", "truncated").await?;
    settled(relay.admin, true).await?;
    stop_relay(relay).await;
    Ok(())
}

/// Responses: `response.completed` (and `response.incomplete`) end a stream
/// as its terminal event; without one, the stream is truncated.
pub(crate) async fn responses_terminal_events() -> CaseResult {
    let created = "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"status\":\"in_progress\"}}\n\n";
    let delta = "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"delta\":\"Hi\"}\n\n";
    for end in ["completed", "incomplete"] {
        let last = format!(
            "event: response.{end}\ndata: {{\"type\":\"response.{end}\",\"sequence_number\":2,\"response\":{{\"id\":\"resp_1\",\"status\":\"{end}\",\"usage\":{{\"input_tokens\":4,\"output_tokens\":2,\"total_tokens\":6}}}}}}\n\n"
        );
        let frames = vec![created.to_owned(), delta.to_owned(), last];
        let (_up, relay, mut log) = relay_for(frames.clone(), &[]).await;
        let r = send(relay.listen, stream_post(RESPONSES)).await?;
        expect_clean(&r)?;
        ensure!(
            r.text() == text_of(&frames),
            "{end}: changed: {:?}",
            r.text()
        );
        logged(&mut log, RESPONSES, "complete", "terminal").await?;
        settled(relay.admin, true).await?;
        stop_relay(relay).await;
    }
    let (_up, relay, mut log) = relay_for(vec![created.to_owned(), delta.to_owned()], &[]).await;
    let r = send(relay.listen, stream_post(RESPONSES)).await?;
    expect_error_event(&r, "upstream_truncated")?;
    logged(&mut log, RESPONSES, "upstream_truncated", "truncated").await?;
    settled(relay.admin, true).await?;
    stop_relay(relay).await;
    Ok(())
}
