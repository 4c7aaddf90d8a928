//! The official OpenAI and Anthropic Python SDKs read sse-edge's output as
//! they read the APIs': through an early commit with keepalives, silences
//! mid-stream, and error events when the upstream fails.
//!
//! Needs `python3` (with its `venv` module); the SDKs pinned in
//! `tests/interop/requirements.txt` are installed with pip on first use,
//! into a virtualenv under the target directory (`target/tmp/interop-venv`),
//! never into the system's Python. If they cannot be had, these tests fail,
//! naming the missing piece: a skipped interop check would hide breakage.
// Test code: an unwrap is an assertion, and helpers are `pub` for the
// files that share them.
#![allow(clippy::unwrap_used, unreachable_pub)]

mod support;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use support::*;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/sdk_check.py");

const REQUIREMENTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/interop/requirements.txt"
);

/// The project-local virtualenv the SDKs live in.
const VENV: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/interop-venv");

/// The virtualenv's interpreter, with the pinned SDKs importable: creates
/// the virtualenv and installs them once per test run when missing, so
/// `cargo test` alone works on a fresh machine that reaches PyPI.
fn python() -> PathBuf {
    static DONE: std::sync::Once = std::sync::Once::new();
    let python = PathBuf::from(VENV).join("bin/python");
    DONE.call_once(|| {
        if !python.exists() {
            let status = std::process::Command::new("python3")
                .args(["-m", "venv", VENV])
                .status()
                .expect("python3 runs");
            assert!(status.success(), "python3 -m venv {VENV} failed");
        }
        let importable = std::process::Command::new(&python)
            .args(["-c", "import openai, anthropic"])
            .output()
            .is_ok_and(|o| o.status.success());
        if importable {
            return;
        }
        let status = std::process::Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
                REQUIREMENTS,
            ])
            .status()
            .expect("the virtualenv's python runs");
        assert!(
            status.success(),
            "installing {REQUIREMENTS} into {VENV} failed"
        );
    });
    python
}

/// Runs one scenario against the relay and returns the JSON it printed.
async fn sdk(scenario: &str, relay: &sse_edge::Running) -> serde_json::Value {
    let python = python(); // blocking, before any request is in flight
    let base = format!("http://{}", relay.listen);
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(&python)
            .args([SCRIPT, scenario, &base])
            .output(),
    )
    .await
    .expect("SDK script finished in time")
    .expect("the virtualenv's python runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "sdk_check.py {scenario} failed (SDKs from {REQUIREMENTS} in {VENV}):\n{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("bad output ({e}): {stdout}\n{stderr}"))
}

/// Frames sent after `head_delay`, with a pause of `pause` before frame
/// `pause_at`. Items are `Err` to cut the stream there.
fn scripted(
    frames: Vec<&'static str>,
    head_delay: Duration,
    pause_at: usize,
    pause: Duration,
) -> impl std::future::Future<Output = Upstream> {
    let frames: Vec<Bytes> = frames
        .into_iter()
        .map(|f| Bytes::from_static(f.as_bytes()))
        .collect();
    let handler = move |_| {
        let frames = frames.clone();
        async move {
            tokio::time::sleep(head_delay).await;
            let (tx, body) = channel_body();
            tokio::spawn(async move {
                for (i, f) in frames.into_iter().enumerate() {
                    if i == pause_at {
                        tokio::time::sleep(pause).await;
                    }
                    let item = if f.is_empty() {
                        Err(std::io::Error::other("cut"))
                    } else {
                        Ok(f)
                    };
                    if tx.send(item).await.is_err() {
                        return;
                    }
                }
            });
            sse_response(body)
        }
    };
    Upstream::start(Mode::Http1, handler)
}

const CHAT: &[&str] = &[
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-test\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-test\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-test\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" world\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-test\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-test\",\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":3,\"total_tokens\":14}}\n\n",
    "data: [DONE]\n\n",
];

const RESPONSES: &[&str] = &[
    "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"created_at\":1700000000,\"status\":\"in_progress\",\"model\":\"gpt-test\",\"output\":[],\"parallel_tool_calls\":true,\"tool_choice\":\"auto\",\"tools\":[]}}\n\n",
    "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hello\",\"logprobs\":[]}\n\n",
    "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":2,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\" world\",\"logprobs\":[]}\n\n",
    "event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":3,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"created_at\":1700000000,\"status\":\"completed\",\"model\":\"gpt-test\",\"output\":[],\"parallel_tool_calls\":true,\"tool_choice\":\"auto\",\"tools\":[],\"usage\":{\"input_tokens\":5,\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens\":2,\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":7}}}\n\n",
];

const ANTHROPIC: &[&str] = &[
    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-test\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" world\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":5}}\n\n",
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
];

/// `/metrics` shows the counts the SDK saw.
async fn assert_tokens(relay: &sse_edge::Running, model: &str, input: u64, output: u64) {
    let m = metrics(relay.admin).await;
    for (kind, want) in [("input", input), ("output", output)] {
        let labels = [("route", "default"), ("model", model), ("kind", kind)];
        assert_eq!(
            metric_or_zero(&m, "sse_edge_tokens_total", &labels),
            want as f64,
            "{kind}: {m}"
        );
    }
}

const SLOW_HEAD: Duration = Duration::from_millis(1300);
const PAUSE: Duration = Duration::from_millis(1000);

async fn relay_for(up: &Upstream) -> sse_edge::Running {
    start_relay_to(up, &["--heartbeat", "300ms", "--retry-attempts", "0"]).await
}

#[tokio::test]
async fn openai_chat_sdk_reads_through_keepalives() {
    let up = scripted(CHAT.to_vec(), SLOW_HEAD, 2, PAUSE).await;
    let relay = relay_for(&up).await;
    let v = sdk("openai_chat", &relay).await;
    assert_eq!(v["ok"]["text"], "Hello world", "{v}");
    assert_eq!(v["ok"]["chunks"], 5, "keepalives are not chunks: {v}");
    assert_eq!(v["ok"]["finish"], "stop");
    assert_eq!(v["ok"]["usage"], serde_json::json!([11, 3]));
    assert_tokens(&relay, "gpt-test", 11, 3).await;
    stop_relay(relay).await;
}

#[tokio::test]
async fn openai_responses_sdk_reads_through_keepalives() {
    let up = scripted(RESPONSES.to_vec(), SLOW_HEAD, 2, PAUSE).await;
    let relay = relay_for(&up).await;
    let v = sdk("openai_responses", &relay).await;
    assert_eq!(v["ok"]["text"], "Hello world", "{v}");
    let types: Vec<_> = v["ok"]["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "response.created",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.completed"
        ]
    );
    stop_relay(relay).await;
}

#[tokio::test]
async fn anthropic_sdk_reads_through_pings() {
    let up = scripted(ANTHROPIC.to_vec(), SLOW_HEAD, 3, PAUSE).await;
    let relay = relay_for(&up).await;
    let v = sdk("anthropic_messages", &relay).await;
    assert_eq!(v["ok"]["text"], "Hello world", "{v}");
    assert_eq!(v["ok"]["stop_reason"], "end_turn");
    assert_eq!(v["ok"]["input_tokens"], 10);
    assert_eq!(v["ok"]["output_tokens"], 5);
    assert_tokens(&relay, "claude-test", 10, 5).await;
    stop_relay(relay).await;
}

#[tokio::test]
async fn sdks_raise_on_streams_the_upstream_cut() {
    // OpenAI chat: cut after two chunks, no [DONE].
    let up = scripted(vec![CHAT[0], CHAT[1], ""], SLOW_HEAD, 1, PAUSE).await;
    let relay = relay_for(&up).await;
    let v = sdk("openai_chat", &relay).await;
    assert_eq!(v["raised"], "APIError", "{v}");
    assert!(v["message"].as_str().unwrap().contains("upstream"), "{v}");
    stop_relay(relay).await;

    // Anthropic: ends cleanly but without message_stop.
    let up = scripted(ANTHROPIC[..3].to_vec(), SLOW_HEAD, 1, PAUSE).await;
    let relay = relay_for(&up).await;
    let v = sdk("anthropic_messages", &relay).await;
    assert!(v["raised"].is_string(), "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("final event"),
        "{v}"
    );
    stop_relay(relay).await;

    // Responses: reset mid-stream.
    let up = scripted(vec![RESPONSES[0], RESPONSES[1], ""], SLOW_HEAD, 1, PAUSE).await;
    let relay = relay_for(&up).await;
    let v = sdk("openai_responses", &relay).await;
    assert_eq!(v["raised"], "APIError", "{v}");
    stop_relay(relay).await;
}

#[tokio::test]
async fn sdks_finish_streams_that_end_on_their_own_signal() {
    // OpenAI chat: finish_reason and usage, then the close without
    // [DONE]; the relay adds it.
    let up = scripted(CHAT[..5].to_vec(), SLOW_HEAD, 2, PAUSE).await;
    let relay = relay_for(&up).await;
    let v = sdk("openai_chat", &relay).await;
    assert_eq!(v["ok"]["text"], "Hello world", "{v}");
    assert_eq!(v["ok"]["chunks"], 5, "{v}");
    assert_eq!(v["ok"]["finish"], "stop");
    assert_eq!(v["ok"]["usage"], serde_json::json!([11, 3]));
    stop_relay(relay).await;

    // Anthropic: message_delta with its stop_reason, then the close
    // without message_stop; nothing is added.
    let up = scripted(ANTHROPIC[..6].to_vec(), SLOW_HEAD, 3, PAUSE).await;
    let relay = relay_for(&up).await;
    let v = sdk("anthropic_messages", &relay).await;
    assert_eq!(v["ok"]["text"], "Hello world", "{v}");
    assert_eq!(v["ok"]["stop_reason"], "end_turn");
    assert_eq!(v["ok"]["output_tokens"], 5);
    stop_relay(relay).await;
}

#[tokio::test]
async fn openai_chat_sdk_reads_stamped_events_and_resumes_with_last_event_id() {
    // The pause after the second chunk outlasts several heartbeats: bare
    // keepalive lines between id-stamped events must not yield empty events.
    let up = scripted(CHAT.to_vec(), Duration::ZERO, 2, PAUSE).await;
    let relay = start_relay_to(
        &up,
        &[
            "--heartbeat",
            "300ms",
            "--retry-attempts",
            "0",
            "--resume-window",
            "10s",
        ],
    )
    .await;
    let v = sdk("openai_chat_resume", &relay).await;
    assert_eq!(v["ok"]["text"], "Hello world", "{v}");
    assert_eq!(v["ok"]["chunks"], 5, "{v}");
    assert_eq!(v["ok"]["stream_id"].as_str().map(str::len), Some(32), "{v}");
    assert_eq!(up.requests().len(), 1, "the resume is not forwarded");
    let m = metrics(relay.admin).await;
    assert_eq!(
        metric(
            &m,
            "sse_edge_resume_reconnects_total",
            &[("result", "resumed")]
        ),
        Some(1.0)
    );
    assert_tokens(&relay, "gpt-test", 11, 3).await;
    stop_relay(relay).await;
}

/// The relay fails over before the first event: the SDK (no retries of
/// its own) gets the fallback's whole answer, in the fallback's model.
#[tokio::test]
async fn openai_chat_sdk_gets_the_fallbacks_answer_when_the_primary_fails() {
    let primary = FaultyUpstream::failing("primary", "503").await;
    let fallback = FaultyUpstream::start("fallback").await;
    let file = route_file(vec![
        group("primary", [Endpoint::from(&primary)]),
        group(
            "backup",
            [Endpoint::from(&fallback).model("fallback-model")],
        ),
    ]);
    let (relay, _log) = start_route_file(&file, &[]).await;
    let v = sdk("openai_chat", &relay).await;
    assert_eq!(v["ok"]["text"], "Hello from fallback", "{v}");
    assert_eq!(
        v["ok"]["models"],
        serde_json::json!(["fallback-model"]),
        "{v}"
    );
    assert_eq!(v["ok"]["finish"], "stop", "{v}");
    assert_eq!(v["ok"]["chunks"], 5, "{v}");
    assert_eq!(primary.request_count(), 1, "the SDK did not retry");
    let asked = fallback.requests();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].model().as_deref(), Some("fallback-model"));
    assert_eq!(primary.requests()[0].model().as_deref(), Some("gpt-test"));
    stop_relay(relay).await;
}

/// The faulty upstream's healthy stream is what the SDK expects (through a
/// plain route, so this holds before failover exists).
#[tokio::test]
async fn openai_chat_sdk_reads_the_faulty_upstreams_stream() {
    let up = FaultyUpstream::start("plain").await;
    let relay = start_relay_to_url(&up.url(), &["--retry-attempts", "0"]).await;
    let v = sdk("openai_chat", &relay).await;
    assert_eq!(v["ok"]["text"], "Hello from plain", "{v}");
    assert_eq!(v["ok"]["models"], serde_json::json!(["gpt-test"]), "{v}");
    assert_eq!(v["ok"]["finish"], "stop", "{v}");
    stop_relay(relay).await;
}

/// A relay whose primary (a fixed faulty upstream failing with `spec`)
/// cuts its answer after events went out, and whose backup declares
/// `mechanism`: the backup continues the answer in the same stream.
async fn continuing(
    spec: &str,
    mechanism: &str,
) -> (FaultyUpstream, FaultyUpstream, sse_edge::Running) {
    let primary = FaultyUpstream::fixed_failing("primary", spec).await;
    let backup = FaultyUpstream::start_fixed("backup").await;
    let file = route_file(vec![
        group("primary", [Endpoint::from(&primary)]),
        group("backup", [Endpoint::from(&backup).continuation(mechanism)]),
    ])
    .set("continuation_attempts", "1")
    .set("read_timeout", "400ms");
    let (relay, _log) = start_route_file(&file, &[]).await;
    (primary, backup, relay)
}

/// openai-python (no retries) streams an answer its upstream cut (`spec`)
/// and a vLLM-declared backup continued: the whole answer, no error.
async fn openai_sdk_reads_a_continued_answer(spec: &str) {
    let (primary, backup, relay) = continuing(spec, "vllm").await;
    let v = sdk("openai_chat", &relay).await;
    assert_eq!(v["ok"]["text"], fixed_answer(), "{spec}: {v}");
    assert_eq!(v["ok"]["finish"], "stop", "{spec}: {v}");
    assert_eq!(v["ok"]["models"], serde_json::json!(["gpt-test"]), "{v}");
    // Four pieces and the role chunk from the primary; the rest and the
    // finish from the backup, its role chunk dropped.
    assert_eq!(v["ok"]["chunks"], FIXED_PIECES.len() + 2, "{spec}: {v}");
    assert_eq!(primary.request_count(), 1, "{spec}: the SDK did not retry");
    let asked = backup.requests();
    assert_eq!(asked.len(), 1, "{spec}");
    assert_eq!(asked[0].prefill().as_deref(), Some("The quick brown fox"));
    let flags = asked[0].json().unwrap();
    assert_eq!(flags["continue_final_message"], true, "{flags}");
    assert_eq!(flags["add_generation_prompt"], false, "{flags}");
    stop_relay(relay).await;
}

#[tokio::test]
async fn openai_chat_sdk_reads_an_answer_continued_after_a_reset() {
    openai_sdk_reads_a_continued_answer("cut-after=5").await;
}

#[tokio::test]
async fn openai_chat_sdk_reads_an_answer_continued_after_a_stall() {
    openai_sdk_reads_a_continued_answer("stall-after=5").await;
}

#[tokio::test]
async fn openai_chat_sdk_reads_an_answer_continued_after_an_error_event() {
    openai_sdk_reads_a_continued_answer("error-after=5").await;
}

/// With `include_usage` the SDK's usage is the whole answer's: the
/// backup's report with the four delivered deltas moved from the prompt
/// to the completion (9 prompt and 13 completion tokens here).
#[tokio::test]
async fn openai_chat_sdk_usage_covers_a_continued_answer() {
    let (_primary, _backup, relay) = continuing("cut-after=5", "vllm").await;
    let v = sdk("openai_chat_usage", &relay).await;
    assert_eq!(v["ok"]["text"], fixed_answer(), "{v}");
    let whole = FIXED_PIECES.len() as u64;
    assert_eq!(v["ok"]["usage"], serde_json::json!([PROMPT_TOKENS, whole]));
    stop_relay(relay).await;
}

/// anthropic-python's `messages.stream` reads an answer its upstream cut
/// (`spec`) and an Anthropic-declared backup continued: the text and
/// `get_final_message()` are the whole answer, in one text block.
async fn anthropic_sdk_reads_a_continued_answer(spec: &str, delivered: usize) {
    let (primary, backup, relay) = continuing(spec, "anthropic").await;
    let v = sdk("anthropic_messages", &relay).await;
    assert_eq!(v["ok"]["text"], fixed_answer(), "{spec}: {v}");
    assert_eq!(v["ok"]["final_text"], fixed_answer(), "{spec}: {v}");
    assert_eq!(v["ok"]["blocks"], serde_json::json!(["text"]), "{v}");
    assert_eq!(v["ok"]["stop_reason"], "end_turn", "{v}");
    assert_eq!(v["ok"]["input_tokens"], PROMPT_TOKENS, "the primary's: {v}");
    let asked = backup.requests();
    assert_eq!(asked.len(), 1, "{spec}");
    let prefill = asked[0].prefill().unwrap();
    let (_, rest) = fixed_usage(Some(&prefill));
    assert_eq!(v["ok"]["output_tokens"], rest + delivered as u64, "{v}");
    assert_eq!(prefill, FIXED_PIECES[..delivered].concat().trim_end());
    assert_eq!(primary.request_count(), 1, "{spec}: the SDK did not retry");
    stop_relay(relay).await;
}

/// The cut leaves `"...dog.\n\n"`: the prefill is trimmed and the backup
/// starts with the whitespace again, which the client gets only once.
#[tokio::test]
async fn anthropic_sdk_reads_an_answer_continued_after_a_reset() {
    anthropic_sdk_reads_a_continued_answer("cut-after=12", 10).await;
}

#[tokio::test]
async fn anthropic_sdk_reads_an_answer_continued_after_a_stall() {
    anthropic_sdk_reads_a_continued_answer("stall-after=6", 4).await;
}

#[tokio::test]
async fn anthropic_sdk_reads_an_answer_continued_after_an_error_event() {
    anthropic_sdk_reads_a_continued_answer("error-after=6", 4).await;
}
