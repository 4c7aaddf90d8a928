//! `sse-edge demo`, the real binary: both dialects stream through the relay
//! with keepalives during the simulated API's silences, the text arrives
//! whole, and the usage the API reported is what the relay accounted.
// Test code: an unwrap is an assertion, and helpers are `pub` for the
// files that share them.
#![allow(clippy::unwrap_used, unreachable_pub)]

use std::process::Stdio;
use std::time::Duration;

use sse_edge::internals::{ANTHROPIC_ANSWER, OPENAI_ANSWER};
use tokio::process::Command;

/// Upper bound for the whole demo run (it takes about 8 s with the
/// timings below).
const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_streams_both_dialects_with_keepalives_and_usage() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sse-edge"));
    cmd.args(["demo", "--head-delay", "1500ms", "--pause", "1200ms"])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    // The demo reads --listen, --admin and --heartbeat from SSE_EDGE_*
    // too; keep the caller's environment out of it.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SSE_EDGE_") {
            cmd.env_remove(name);
        }
    }
    let out = tokio::time::timeout(LIMIT, cmd.output())
        .await
        .expect("the demo finishes within 30 s")
        .expect("the demo binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let has = |needle: &str| {
        assert!(
            stdout.contains(needle),
            "demo output lacks {needle:?}:\n{stdout}\nstderr:\n{stderr}"
        );
    };

    // The browser page's address, on loopback.
    has("browser page         http://127.0.0.1:");
    has("(add --keep-running to keep it up)");

    // Keepalives: OpenAI comments, Anthropic ping events, and the early
    // commit that lets them start before the API's headers.
    has("♥ keepalive  (: keepalive)");
    has("♥ ping event");
    has("sse-edge-early-commit: 1");

    // The streamed text of both dialects, whole.
    has(OPENAI_ANSWER);
    has(ANTHROPIC_ANSWER);
    has("data: [DONE]");
    has("message_stop");

    // Usage as the client saw it (one token per word: the prompts have 7
    // and 8 words) and as the relay's access log accounted it.
    let openai_out = OPENAI_ANSWER.split_whitespace().count();
    let anthropic_out = ANTHROPIC_ANSWER.split_whitespace().count();
    has(&format!(
        "usage  prompt_tokens 7 · completion_tokens {openai_out} · total_tokens {}",
        7 + openai_out
    ));
    has(&format!(
        "usage  input_tokens 8 · output_tokens {anthropic_out}"
    ));
    has(&format!("tokens in 7 / out {openai_out} (stream)"));
    has(&format!("tokens in 8 / out {anthropic_out} (stream)"));
    has("outcome complete");
    has(&format!(
        "sse_edge_tokens_total{{route=\"default\",model=\"demo-model\",kind=\"output\"}} {}",
        openai_out + anthropic_out
    ));
}
