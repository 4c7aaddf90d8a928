//! Token accounting end to end: what the upstream reports reaches the access
//! log and `/metrics`, for every API shape, streaming and not; `include_usage`
//! injection gets the numbers without changing what the client receives.
// Test code: an unwrap is an assertion, and helpers are `pub` for the
// files that share them.
#![allow(clippy::unwrap_used, unreachable_pub)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use support::*;

fn sse_from(frames: Vec<&'static str>) -> TestBody {
    stream_frames(
        frames
            .into_iter()
            .map(|f| Bytes::from_static(f.as_bytes()))
            .collect(),
        Duration::from_millis(5),
        None,
    )
}

async fn serve_sse(frames: Vec<&'static str>) -> Upstream {
    Upstream::start(Mode::Http1, move |_| {
        let frames = frames.clone();
        async move { sse_response(sse_from(frames)) }
    })
    .await
}

fn tokens(m: &str, model: &str, kind: &str) -> f64 {
    metric_or_zero(
        m,
        "sse_edge_tokens_total",
        &[("route", "default"), ("model", model), ("kind", kind)],
    )
}

const STREAM_BODY: &str =
    r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

const CHAT_CHUNKS: [&str; 3] = [
    "data: {\"id\":\"c\",\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n",
    "data: {\"id\":\"c\",\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
    "data: [DONE]\n\n",
];
const CHAT_USAGE: &str = "data: {\"id\":\"c\",\"model\":\"gpt-4o-2024-08-06\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":7,\"total_tokens\":19,\"prompt_tokens_details\":{\"cached_tokens\":4},\"completion_tokens_details\":{\"reasoning_tokens\":3}}}\n\n";

#[tokio::test]
async fn openai_chat_stream_usage_reaches_log_and_metrics() {
    // The usage chunk is split across two upstream writes.
    let (a, b) = CHAT_USAGE.split_at(40);
    let up = serve_sse(vec![CHAT_CHUNKS[0], CHAT_CHUNKS[1], a, b, CHAT_CHUNKS[2]]).await;
    let (relay, mut log) = start_logged_to(&up, &[]).await;
    let res = within(fetch_once(
        relay.listen,
        post("/v1/chat/completions", STREAM_BODY),
    ))
    .await;
    assert!(
        res.text().contains("\"prompt_tokens\":12"),
        "the client keeps the usage chunk it asked for"
    );
    let l = log.next_json();
    assert_eq!(l["model"], "gpt-4o-2024-08-06", "{l}");
    assert_eq!(l["input_tokens"], 12);
    assert_eq!(l["output_tokens"], 7);
    assert_eq!(l["cache_read_tokens"], 4);
    assert_eq!(l["reasoning_tokens"], 3);
    assert_eq!(l["cache_write_tokens"], serde_json::Value::Null);
    assert_eq!(l["usage_source"], "stream");
    let m = metrics(relay.admin).await;
    assert_eq!(tokens(&m, "gpt-4o-2024-08-06", "input"), 12.0, "{m}");
    assert_eq!(tokens(&m, "gpt-4o-2024-08-06", "output"), 7.0);
    assert_eq!(tokens(&m, "gpt-4o-2024-08-06", "cache_read"), 4.0);
    assert_eq!(tokens(&m, "gpt-4o-2024-08-06", "reasoning"), 3.0);
    stop_relay(relay).await;
}

#[tokio::test]
async fn stream_without_usage_is_missing_not_zero() {
    let up = serve_sse(CHAT_CHUNKS.to_vec()).await;
    let (relay, mut log) = start_logged_to(&up, &[]).await;
    within(fetch_once(
        relay.listen,
        post("/v1/chat/completions", STREAM_BODY),
    ))
    .await;
    let l = log.next_json();
    assert_eq!(l["usage_source"], "missing", "{l}");
    assert_eq!(l["input_tokens"], serde_json::Value::Null);
    assert_eq!(l["model"], "gpt-4o", "the request's model stands in");
    let m = metrics(relay.admin).await;
    assert!(!m.contains("sse_edge_tokens_total{"), "{m}");
    stop_relay(relay).await;
}

#[tokio::test]
async fn anthropic_stream_output_tokens_are_cumulative() {
    let up = serve_sse(vec![
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"claude-sonnet-4\",\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":100,\"cache_read_input_tokens\":50,\"output_tokens\":1}}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"output_tokens\":10}}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":15}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    ])
    .await;
    let (relay, mut log) = start_logged_to(&up, &[]).await;
    within(fetch_once(
        relay.listen,
        post("/v1/messages", r#"{"model":"claude","stream":true}"#),
    ))
    .await;
    let l = log.next_json();
    assert_eq!(l["model"], "claude-sonnet-4", "{l}");
    assert_eq!(l["input_tokens"], 25);
    assert_eq!(l["output_tokens"], 15, "replaced, never added");
    assert_eq!(l["cache_write_tokens"], 100);
    assert_eq!(l["cache_read_tokens"], 50);
    let m = metrics(relay.admin).await;
    assert_eq!(tokens(&m, "claude-sonnet-4", "output"), 15.0, "{m}");
    assert_eq!(tokens(&m, "claude-sonnet-4", "cache_write"), 100.0);
    stop_relay(relay).await;
}

#[tokio::test]
async fn responses_stream_usage_from_the_terminal_event() {
    let up = serve_sse(vec![
        "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"model\":\"o3\"}}\n\n",
        "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"x\"}\n\n",
        "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"model\":\"o3-2025\",\"usage\":{\"input_tokens\":30,\"input_tokens_details\":{\"cached_tokens\":10},\"output_tokens\":200,\"output_tokens_details\":{\"reasoning_tokens\":150},\"total_tokens\":230}}}\n\n",
    ])
    .await;
    let (relay, mut log) = start_logged_to(&up, &[]).await;
    within(fetch_once(
        relay.listen,
        post("/v1/responses", r#"{"model":"o3","stream":true}"#),
    ))
    .await;
    let l = log.next_json();
    assert_eq!(l["model"], "o3-2025", "{l}");
    assert_eq!(l["input_tokens"], 30);
    assert_eq!(l["cache_read_tokens"], 10);
    assert_eq!(l["output_tokens"], 200);
    assert_eq!(l["reasoning_tokens"], 150);
    assert_eq!(l["outcome"], "complete");
    stop_relay(relay).await;
}

#[tokio::test]
async fn non_streaming_bodies_of_all_three_shapes() {
    let cases = [
        (
            "/v1/chat/completions",
            r#"{"id":"x","model":"gpt-4o-mini","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}"#,
            "gpt-4o-mini",
            9,
            2,
        ),
        (
            "/v1/responses",
            r#"{"id":"r","model":"gpt-5","output":[],"usage":{"input_tokens":5,"output_tokens":8,"total_tokens":13}}"#,
            "gpt-5",
            5,
            8,
        ),
        (
            "/v1/messages",
            r#"{"id":"m","model":"claude-haiku","content":[],"usage":{"input_tokens":3,"output_tokens":4}}"#,
            "claude-haiku",
            3,
            4,
        ),
    ];
    for (path, body, model, input, output) in cases {
        let up = Upstream::start(
            Mode::Http1,
            move |_| async move { json_response(200, body) },
        )
        .await;
        let (relay, mut log) = start_logged_to(&up, &[]).await;
        let res = within(fetch_once(relay.listen, post(path, r#"{"model":"asked"}"#))).await;
        assert_eq!(res.text(), body);
        let l = log.next_json();
        assert_eq!(l["usage_source"], "body", "{path}: {l}");
        assert_eq!(l["model"], model);
        assert_eq!(l["input_tokens"], input);
        assert_eq!(l["output_tokens"], output);
        let m = metrics(relay.admin).await;
        assert_eq!(tokens(&m, model, "input"), input as f64, "{m}");
        stop_relay(relay).await;
    }
}

#[tokio::test]
async fn include_usage_injection_round_trip() {
    // The upstream adds the usage chunk only when asked, as OpenAI does.
    let up = Upstream::start(Mode::Http1, |req| async move {
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        let asked = body["stream_options"]["include_usage"] == true;
        let mut frames = vec![CHAT_CHUNKS[0], CHAT_CHUNKS[1]];
        if asked {
            frames.push(CHAT_USAGE);
        }
        frames.push(CHAT_CHUNKS[2]);
        sse_response(sse_from(frames))
    })
    .await;
    // Without injection: the client's stream, the reference.
    let (relay, mut log) = start_logged_to(&up, &[]).await;
    let plain = within(fetch_once(
        relay.listen,
        post("/v1/chat/completions", STREAM_BODY),
    ))
    .await;
    assert_eq!(log.next_json()["usage_source"], "missing");
    stop_relay(relay).await;

    let (relay, mut log) = start_logged_to(&up, &["--include-usage", "true"]).await;
    let injected = within(fetch_once(
        relay.listen,
        post("/v1/chat/completions", STREAM_BODY),
    ))
    .await;
    assert_same(
        &injected.body,
        &plain.body,
        "client stream with injected usage",
    );
    let l = log.next_json();
    assert_eq!(l["usage_source"], "stream", "{l}");
    assert_eq!(l["input_tokens"], 12);
    // The upstream got the flag spliced in, everything else unchanged.
    let sent: serde_json::Value =
        serde_json::from_slice(&up.requests().last().unwrap().body).unwrap();
    let mut want: serde_json::Value = serde_json::from_str(STREAM_BODY).unwrap();
    want["stream_options"] = serde_json::json!({"include_usage": true});
    assert_eq!(sent, want);

    // A client that asked for usage itself keeps its usage chunk.
    let asked = r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}"#;
    let res = within(fetch_once(
        relay.listen,
        post("/v1/chat/completions", asked),
    ))
    .await;
    assert!(res.text().contains("\"prompt_tokens\":12"));
    stop_relay(relay).await;
}
