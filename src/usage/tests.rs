//! Usage tests on recorded-shape payloads: whole streams per dialect (fed
//! whole and in small pieces through the real scanner), non-streaming
//! bodies, request reading and the include-usage splice.

use bytes::Bytes;
use serde_json::{Value, json};

use super::stream::{PARSES, is_candidate};
use super::*;
use crate::dialect::Dialect;
use crate::sse::{Event, Scanner};

const CHAT_HEAD: &str = r#"{"id":"chatcmpl-C4lq7ZbT","object":"chat.completion.chunk","created":1754550000,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_07871e2ad8","choices":["#;

/// An OpenAI chat stream with include_usage: `n` content chunks, the
/// finish chunk, the usage-only chunk (when `usage`), `[DONE]`.
fn chat_stream(n: usize, usage: bool) -> String {
    let mut s = format!(
        "data: {CHAT_HEAD}{{\"index\":0,\"delta\":{{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":null,\"obfuscation\":\"x1\"}}\n\n"
    );
    for i in 0..n {
        s += &format!(
            "data: {CHAT_HEAD}{{\"index\":0,\"delta\":{{\"content\":\" word{i}\"}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":null,\"obfuscation\":\"Zq\"}}\n\n"
        );
    }
    s += &format!(
        "data: {CHAT_HEAD}{{\"index\":0,\"delta\":{{}},\"logprobs\":null,\"finish_reason\":\"stop\"}}],\"usage\":null}}\n\n"
    );
    if usage {
        s += &format!(
            "data: {CHAT_HEAD}],\"usage\":{{\"prompt_tokens\":1117,\"completion_tokens\":246,\"total_tokens\":1363,\"prompt_tokens_details\":{{\"cached_tokens\":1024,\"audio_tokens\":0}},\"completion_tokens_details\":{{\"reasoning_tokens\":192,\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}}},\"obfuscation\":\"3kY\"}}\n\n"
        );
    }
    s + "data: [DONE]\n\n"
}

const VLLM: &str = concat!(
    "data: {\"id\":\"chatcmpl-9b1\",\"object\":\"chat.completion.chunk\",\"created\":1754550000,\"model\":\"Qwen/Qwen2.5-7B-Instruct\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-9b1\",\"object\":\"chat.completion.chunk\",\"created\":1754550000,\"model\":\"Qwen/Qwen2.5-7B-Instruct\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-9b1\",\"object\":\"chat.completion.chunk\",\"created\":1754550000,\"model\":\"Qwen/Qwen2.5-7B-Instruct\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"!\"},\"logprobs\":null,\"finish_reason\":\"stop\",\"stop_reason\":null}],\"usage\": {\"prompt_tokens\": 21, \"total_tokens\": 23, \"completion_tokens\": 2}}\n\n",
    "data: [DONE]\n\n",
);

fn responses_stream(terminal: &str, status: &str, usage: &str) -> String {
    let resp = |status: &str, usage: &str| {
        format!(
            "{{\"id\":\"resp_68a1\",\"object\":\"response\",\"created_at\":1754550000,\"status\":\"{status}\",\"model\":\"o4-mini-2025-04-16\",\"output\":[],\"parallel_tool_calls\":true,\"reasoning\":{{\"effort\":\"medium\",\"summary\":null}},\"usage\":{usage}}}"
        )
    };
    let mut s = format!(
        "event: response.created\ndata: {{\"type\":\"response.created\",\"sequence_number\":0,\"response\":{}}}\n\n",
        resp("in_progress", "null")
    );
    s += &format!(
        "event: response.in_progress\ndata: {{\"type\":\"response.in_progress\",\"sequence_number\":1,\"response\":{}}}\n\n",
        resp("in_progress", "null")
    );
    for (i, text) in ["The", " answer", " is response.completed"]
        .iter()
        .enumerate()
    {
        s += &format!(
            "event: response.output_text.delta\ndata: {{\"type\":\"response.output_text.delta\",\"sequence_number\":{},\"item_id\":\"msg_68a1\",\"output_index\":1,\"content_index\":0,\"delta\":\"{text}\",\"logprobs\":[]}}\n\n",
            i + 2
        );
    }
    if !terminal.is_empty() {
        s += &format!(
            "event: {terminal}\ndata: {{\"type\":\"{terminal}\",\"sequence_number\":9,\"response\":{}}}\n\n",
            resp(status, usage)
        );
    }
    s
}

const RESPONSES_USAGE: &str = r#"{"input_tokens":36,"input_tokens_details":{"cached_tokens":12},"output_tokens":87,"output_tokens_details":{"reasoning_tokens":64},"total_tokens":123}"#;

const ANTHROPIC_START: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01XFDUDYJgAACzvnptvVoYEL\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5-20250929\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":472,\"cache_creation_input_tokens\":1536,\"cache_read_input_tokens\":2048,\"cache_creation\":{\"ephemeral_5m_input_tokens\":1536,\"ephemeral_1h_input_tokens\":0},\"output_tokens\":1,\"service_tier\":\"standard\"}}}\n\n";

const ANTHROPIC_BODY: &str = concat!(
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: ping\ndata: {\"type\": \"ping\"}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Send a message_delta\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" now.\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":null,\"stop_sequence\":null},\"usage\":{\"output_tokens\":10}}\n\n",
    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":42}}\n\n",
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
);

/// Runs `stream` through a scanner in pieces of `piece` bytes (0 = whole)
/// and a tracker; returns the tracker, what it saw per event and how many
/// events it parsed.
fn run_in(dialect: Dialect, stream: &str, piece: usize) -> (StreamUsage, Vec<Seen>, usize) {
    let mut tracker = StreamUsage::new(dialect);
    let mut seen = Vec::new();
    let before = PARSES.with(|p| p.get());
    let mut scanner = Scanner::new(1 << 20);
    let mut on_event = |e: &Event| seen.push(tracker.on_event(e));
    let bytes = stream.as_bytes();
    for chunk in bytes.chunks(if piece == 0 {
        bytes.len().max(1)
    } else {
        piece
    }) {
        let fed = scanner.feed(Bytes::copy_from_slice(chunk), &mut on_event);
        assert!(fed.is_ok());
    }
    scanner.finish(&mut on_event);
    let parses = PARSES.with(|p| p.get()) - before;
    (tracker, seen, parses)
}

/// Like `run_in`, and checks that 1-, 7- and 64-byte pieces (events split
/// across many segments) give the same result.
fn run(dialect: Dialect, stream: &str) -> (StreamUsage, Vec<Seen>, usize) {
    let whole = run_in(dialect, stream, 0);
    for piece in [1, 7, 64] {
        let split = run_in(dialect, stream, piece);
        assert_eq!(split.0.usage(), whole.0.usage(), "piece {piece}");
        assert_eq!(split.0.model(), whole.0.model(), "piece {piece}");
        assert_eq!(split.1, whole.1, "piece {piece}");
        assert_eq!(split.2, whole.2, "piece {piece}");
    }
    whole
}

/// A usage from `[input, output, cache_read, cache_write, reasoning]`.
fn usage([input, output, cache_read, cache_write, reasoning]: [Option<u64>; 5]) -> Usage {
    Usage {
        input,
        output,
        cache_read,
        cache_write,
        reasoning,
    }
}

fn positions(seen: &[Seen], kind: Seen) -> Vec<usize> {
    (0..seen.len()).filter(|&i| seen[i] == kind).collect()
}

#[test]
fn chat_usage_only_chunk_with_details() {
    let (t, seen, parses) = run(Dialect::OpenAiChat, &chat_stream(300, true));
    let want = usage([Some(1117), Some(246), Some(1024), None, Some(192)]);
    assert_eq!(t.usage(), Some(want));
    assert_eq!(t.model(), Some("gpt-4o-2024-08-06"));
    assert_eq!(seen.len(), 304);
    assert_eq!(positions(&seen, Seen::UsageOnlyChunk), vec![302]);
    assert_eq!(positions(&seen, Seen::Other).len(), 303);
    assert_eq!(parses, 1, "only the usage chunk is parsed");
}

#[test]
fn chat_usage_null_chunks_are_never_candidates() {
    let (t, seen, parses) = run(Dialect::OpenAiChat, &chat_stream(50, false));
    assert_eq!(parses, 0);
    assert!(seen.iter().all(|s| *s == Seen::Other));
    assert_eq!(t.usage(), None);
    assert_eq!(t.model(), None);
    for text in [
        "data: {\"choices\":[],\"usage\":null}\n\n",
        "data: {\"choices\":[], \"usage\": null}\n\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\"\\\"usage\\\":{\"}}]}\n\n",
    ] {
        let mut s = Scanner::new(1024);
        let mut hits = 0;
        let fed = s.feed(Bytes::from(text), &mut |e| {
            hits += usize::from(is_candidate(Dialect::OpenAiChat, e));
        });
        assert!(fed.is_ok());
        assert_eq!(hits, 0, "{text}");
    }
}

#[test]
fn chat_stream_ending_early_has_no_usage() {
    let full = chat_stream(20, true);
    let cut = &full[..full.find("\"choices\":[],").map_or(0, |i| i - 40)];
    let (t, _, parses) = run(Dialect::OpenAiChat, cut);
    assert_eq!((t.usage(), parses), (None, 0));
}

#[test]
fn vllm_usage_on_last_choice_chunk() {
    let (t, seen, parses) = run(Dialect::OpenAiChat, VLLM);
    assert_eq!(seen, [Seen::Other, Seen::Other, Seen::Usage, Seen::Other]);
    assert_eq!(parses, 1);
    let want = usage([Some(21), Some(2), None, None, None]);
    assert_eq!(t.usage(), Some(want));
    assert_eq!(t.model(), Some("Qwen/Qwen2.5-7B-Instruct"));
}

#[test]
fn responses_terminal_events() {
    let want = usage([Some(36), Some(87), Some(12), None, Some(64)]);
    for (terminal, status) in [
        ("response.completed", "completed"),
        ("response.incomplete", "incomplete"),
        ("response.failed", "failed"),
    ] {
        let stream = responses_stream(terminal, status, RESPONSES_USAGE);
        let (t, seen, parses) = run(Dialect::OpenAiResponses, &stream);
        assert_eq!(t.usage(), Some(want), "{terminal}");
        assert_eq!(t.model(), Some("o4-mini-2025-04-16"));
        assert_eq!(positions(&seen, Seen::Usage), vec![5]);
        // The terminal event and the delta whose text names it.
        assert_eq!(parses, 2);
    }
}

#[test]
fn responses_without_usage() {
    let stream = responses_stream("response.failed", "failed", "null");
    let (t, seen, _) = run(Dialect::OpenAiResponses, &stream);
    assert_eq!(t.usage(), None);
    assert_eq!(t.model(), Some("o4-mini-2025-04-16"));
    assert!(seen.iter().all(|s| *s == Seen::Other));
    let (t, _, _) = run(Dialect::OpenAiResponses, &responses_stream("", "", ""));
    assert_eq!((t.usage(), t.model()), (None, None));
}

#[test]
fn anthropic_cache_tokens_and_cumulative_deltas() {
    let stream = format!("{ANTHROPIC_START}{ANTHROPIC_BODY}");
    let (t, seen, parses) = run(Dialect::Anthropic, &stream);
    let want = usage([Some(472), Some(42), Some(2048), Some(1536), None]);
    assert_eq!(t.usage(), Some(want));
    assert_eq!(t.model(), Some("claude-sonnet-4-5-20250929"));
    assert_eq!(positions(&seen, Seen::Usage), vec![0, 6, 7]);
    // message_start, two message_delta, and the text naming one.
    assert_eq!(parses, 4);
}

#[test]
fn anthropic_delta_with_input_counts_replaces_them() {
    let delta = "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"input_tokens\":500,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":3584,\"output_tokens\":77,\"server_tool_use\":{\"web_search_requests\":1}}}\n\n";
    let stream = format!("{ANTHROPIC_START}{ANTHROPIC_BODY}{delta}");
    let (t, _, _) = run(Dialect::Anthropic, &stream);
    let want = usage([Some(500), Some(77), Some(3584), Some(0), None]);
    assert_eq!(t.usage(), Some(want));
}

#[test]
fn anthropic_ending_early() {
    let (t, _, parses) = run(
        Dialect::Anthropic,
        "event: ping\ndata: {\"type\": \"ping\"}\n\n",
    );
    assert_eq!((t.usage(), t.model(), parses), (None, None, 0));
    // Cut after message_start: its counts (output 1, as reported so far).
    let (t, _, _) = run(Dialect::Anthropic, ANTHROPIC_START);
    assert_eq!(t.usage().and_then(|u| u.output), Some(1));
    assert_eq!(t.usage().and_then(|u| u.input), Some(472));
}

#[test]
fn generic_never_parses() {
    let stream = format!("{}{ANTHROPIC_START}", chat_stream(3, true));
    let (t, seen, parses) = run(Dialect::Generic, &stream);
    assert_eq!((t.usage(), t.model(), parses), (None, None, 0));
    assert!(seen.iter().all(|s| *s == Seen::Other));
}

const CHAT_BODY: &str = r#"{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion","created":1741570283,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"The image shows a wooden boardwalk.","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":1117,"completion_tokens":46,"total_tokens":1163,"prompt_tokens_details":{"cached_tokens":1024,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_fc9f1d7035"}"#;

const RESPONSES_BODY: &str = r#"{"id":"resp_67ccd3a9da748190baa7f1570fe91ac604becb25c45c1d41","object":"response","created_at":1741476777,"status":"completed","error":null,"incomplete_details":null,"model":"o4-mini-2025-04-16","output":[{"type":"reasoning","id":"rs_1","summary":[]},{"type":"message","id":"msg_1","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Hi.","annotations":[]}]}],"usage":{"input_tokens":328,"input_tokens_details":{"cached_tokens":0},"output_tokens":52,"output_tokens_details":{"reasoning_tokens":40},"total_tokens":380}}"#;

const ANTHROPIC_MESSAGE: &str = r#"{"id":"msg_013Zva2CMHLNnXjNJJKqJ2EF","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"Hi! My name is Claude."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":2095,"cache_creation_input_tokens":0,"cache_read_input_tokens":1800,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},"output_tokens":503,"service_tier":"standard"}}"#;

#[test]
fn bodies_of_each_shape() {
    let cases = [
        (
            Dialect::OpenAiChat,
            CHAT_BODY,
            "gpt-4o-2024-08-06",
            [Some(1117), Some(46), Some(1024), None, Some(0)],
        ),
        (
            Dialect::OpenAiResponses,
            RESPONSES_BODY,
            "o4-mini-2025-04-16",
            [Some(328), Some(52), Some(0), None, Some(40)],
        ),
        (
            Dialect::Anthropic,
            ANTHROPIC_MESSAGE,
            "claude-sonnet-4-5-20250929",
            [Some(2095), Some(503), Some(1800), Some(0), None],
        ),
    ];
    for (dialect, body, model, counts) in cases {
        let want = usage(counts);
        let got = from_body(dialect, body.as_bytes());
        assert_eq!(got, (Some(want), Some(model.to_owned())), "{dialect:?}");
        assert_eq!(
            from_body(Dialect::Generic, body.as_bytes()),
            got,
            "generic {dialect:?}"
        );
    }
}

#[test]
fn bodies_without_usage() {
    let error = br#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
    assert_eq!(from_body(Dialect::OpenAiChat, error), (None, None));
    let error = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    assert_eq!(from_body(Dialect::Anthropic, error), (None, None));
    assert_eq!(
        from_body(Dialect::Generic, b"<html>502</html>"),
        (None, None)
    );
    assert_eq!(
        from_body(Dialect::OpenAiChat, br#"{"model":"m","usage":null}"#),
        (None, Some("m".into()))
    );
    assert_eq!(from_body(Dialect::OpenAiChat, b""), (None, None));
}

#[test]
fn request_info_cases() {
    let info = request_info(br#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#);
    assert_eq!(
        info,
        RequestInfo {
            stream: true,
            model: Some("gpt-4o".into()),
            include_usage: Some(true),
            n: None,
        }
    );
    let info = request_info(br#"{"model":"m","stream":true,"n":3}"#);
    assert_eq!((info.stream, info.n), (true, Some(3)));
    for n in ["null", "-1", "1.5", "\"2\""] {
        let body = format!(r#"{{"model":"m","stream":true,"n":{n}}}"#);
        assert_eq!(request_info(body.as_bytes()).n, None, "{body}");
    }
    let info = request_info(b"{\n  \"model\": \"claude-sonnet-4-5\",\n  \"max_tokens\": 1024,\n  \"stream\": false,\n  \"stream_options\": {\"include_usage\": false}\n}");
    assert_eq!((info.stream, info.include_usage), (false, Some(false)));
    assert_eq!(info.model.as_deref(), Some("claude-sonnet-4-5"));
    let info = request_info(br#"{"model":"m","stream":true}"#);
    assert_eq!((info.stream, info.include_usage), (true, None));
    for body in [
        &br#"{"messages":[{"content":"\"stream\": true, \"model\": \"x\""}]}"#[..],
        br#"{"metadata":{"stream":true,"model":"x"}}"#,
        br#"{"stream":"true"}"#,
        br#"{"stream":true"#,
        br#"[{"stream":true,"model":"x"}]"#,
        br#"{"input":"no keys of interest","stream_options":{"include_usage":true}}"#,
        b"",
        b"not json",
    ] {
        assert_eq!(request_info(body), RequestInfo::default(), "{body:?}");
    }
}

/// The key pre-filter searches a body's start forwards and the rest from
/// its end: keys before, after, inside and across that boundary of a long
/// prompt are all found, and a long body without them is not parsed.
#[test]
fn request_info_finds_keys_anywhere_in_a_long_body() {
    let prompt = "x".repeat(9000);
    let cases = [
        format!(r#"{{"model":"m","stream":true,"messages":[{{"content":"{prompt}"}}]}}"#),
        format!(r#"{{"messages":[{{"content":"{prompt}"}}],"model":"m","stream":true}}"#),
        format!(
            r#"{{"a":"{}","model":"m","b":"{prompt}","stream":true,"c":"{prompt}"}}"#,
            "y".repeat(4080)
        ),
    ];
    for body in &cases {
        let info = request_info(body.as_bytes());
        assert_eq!((info.stream, info.model.as_deref()), (true, Some("m")));
    }
    for pad in 4070..4100 {
        let body = format!(
            r#"{{"a":"{}","model":"m","b":"{prompt}"}}"#,
            "y".repeat(pad)
        );
        assert_eq!(
            request_info(body.as_bytes()).model.as_deref(),
            Some("m"),
            "{pad}"
        );
    }
    let none = format!(r#"{{"messages":[{{"content":"{prompt}"}}],"n":2}}"#);
    assert_eq!(request_info(none.as_bytes()), RequestInfo::default());
}

/// Injects into `body`, checks the result is `body`'s JSON with only
/// `stream_options.include_usage` set to true, and returns it as text.
fn injected(body: &str) -> String {
    let out = inject_include_usage(body.as_bytes());
    let Some(out) = out else {
        panic!("no injection into {body}");
    };
    let got: Value = serde_json::from_slice(&out).unwrap();
    let mut want: Value = serde_json::from_str(body).unwrap();
    let opts = want
        .as_object_mut()
        .unwrap()
        .entry("stream_options")
        .or_insert(json!({}));
    if opts.is_null() {
        *opts = json!({});
    }
    opts.as_object_mut()
        .unwrap()
        .insert("include_usage".into(), json!(true));
    assert_eq!(got, want, "{body}");
    String::from_utf8(out.to_vec()).unwrap()
}

#[test]
fn inject_when_absent() {
    let cases = [
        (
            r#"{"model":"gpt-4o","stream":true}"#,
            r#"{"stream_options":{"include_usage":true},"model":"gpt-4o","stream":true}"#,
        ),
        ("{}", r#"{"stream_options":{"include_usage":true}}"#),
        (
            " {\n}\n",
            " {\"stream_options\":{\"include_usage\":true}\n}\n",
        ),
        (
            "{\r\n\t\"model\": \"m\",\r\n\t\"stream\": true\r\n}",
            "{\"stream_options\":{\"include_usage\":true},\r\n\t\"model\": \"m\",\r\n\t\"stream\": true\r\n}",
        ),
    ];
    for (body, want) in cases {
        assert_eq!(injected(body), want);
    }
}

#[test]
fn inject_into_existing_options() {
    let cases = [
        (
            r#"{"stream":true,"stream_options":{"continuous_usage_stats":false}}"#,
            r#"{"stream":true,"stream_options":{"include_usage":true,"continuous_usage_stats":false}}"#,
        ),
        (
            r#"{"stream":true,"stream_options":{}}"#,
            r#"{"stream":true,"stream_options":{"include_usage":true}}"#,
        ),
        (
            "{\"stream_options\" : { \n } , \"stream\":true}",
            "{\"stream_options\" : {\"include_usage\":true \n } , \"stream\":true}",
        ),
        (
            r#"{"stream_options":{"include_usage":false},"stream":true}"#,
            r#"{"stream_options":{"include_usage":true},"stream":true}"#,
        ),
        (
            "{\"stream_options\" : { \"x\":[1,{\"a\":\"}]\"}], \"include_usage\" : false\n}}",
            "{\"stream_options\" : { \"x\":[1,{\"a\":\"}]\"}], \"include_usage\" : true\n}}",
        ),
        (
            r#"{"stream":true,"stream_options":null}"#,
            r#"{"stream":true,"stream_options":{"include_usage":true}}"#,
        ),
    ];
    for (body, want) in cases {
        assert_eq!(injected(body), want);
    }
}

#[test]
fn inject_leaves_nested_and_string_lookalikes() {
    let cases = [
        (
            r#"{"messages":[{"role":"user","content":"set \"stream_options\":{\"include_usage\":false} \\"}],"stream":true}"#,
            r#"{"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"set \"stream_options\":{\"include_usage\":false} \\"}],"stream":true}"#,
        ),
        (
            r#"{"metadata":{"stream_options":{"include_usage":false}},"n":-1.5e3,"ok":null,"s":"héllo 😀"}"#,
            r#"{"stream_options":{"include_usage":true},"metadata":{"stream_options":{"include_usage":false}},"n":-1.5e3,"ok":null,"s":"héllo 😀"}"#,
        ),
    ];
    for (body, want) in cases {
        assert_eq!(injected(body), want);
    }
}

#[test]
fn inject_refuses() {
    for body in [
        r#"{"stream":true,"stream_options":{"include_usage":true}}"#,
        "{ \"stream_options\" : {\n \"include_usage\" : true } }",
        r#"{"stream_options":"yes"}"#,
        r#"{"stream\u005foptions":{}}"#,
        r#"{"stream_options":{"include\u005fusage":false}}"#,
        "[]",
        r#"[{"stream":true}]"#,
        r#""{}""#,
        "42",
        "null",
        r#"{"stream":true"#,
        "{} {}",
        "",
        "not json",
    ] {
        assert_eq!(inject_include_usage(body.as_bytes()), None, "{body}");
    }
}

#[test]
fn inject_and_request_info_on_every_prefix() {
    let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"a \"q\" \\ {[\u00e9]}"}],"stream":true,"stream_options":{"x":[{}],"include_usage":false}}"#;
    for end in 0..body.len() {
        let prefix = &body.as_bytes()[..end];
        assert_eq!(inject_include_usage(prefix), None, "{end}");
        let _ = request_info(prefix);
    }
    let out = injected(body);
    assert_eq!(
        out,
        body.replace("\"include_usage\":false", "\"include_usage\":true")
    );
}

#[test]
fn tracker_moves_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<StreamUsage>();
}

#[test]
fn rewrite_model_replaces_every_top_level_model_and_nothing_else() {
    let cases = [
        (
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"model"}],"stream":true}"#,
            r#"{"model":"other","messages":[{"role":"user","content":"model"}],"stream":true}"#,
        ),
        (
            r#" { "stream" : true , "model" : "a\"b" } "#,
            r#" { "stream" : true , "model" : "other" } "#,
        ),
        // Nested `model` keys are not the request's model.
        (
            r#"{"metadata":{"model":"x"},"messages":[]}"#,
            r#"{"model":"other","metadata":{"model":"x"},"messages":[]}"#,
        ),
        (r#"{}"#, r#"{"model":"other"}"#),
        // Duplicates: every one, whichever a parser believes.
        (
            r#"{"model":"a","x":1,"model":"b"}"#,
            r#"{"model":"other","x":1,"model":"other"}"#,
        ),
    ];
    for (body, want) in cases {
        let got = rewrite_model(body.as_bytes(), "other").unwrap();
        assert_eq!(std::str::from_utf8(&got).unwrap(), want);
        let v: Value = serde_json::from_str(want).unwrap();
        assert_eq!(v["model"], "other");
    }
    // Already right, or not an object: unchanged.
    assert_eq!(rewrite_model(br#"{"model":"other"}"#, "other"), None);
    assert_eq!(rewrite_model(b"[1,2]", "other"), None);
    assert_eq!(rewrite_model(b"{\"model\":", "other"), None);
    // The new name is escaped.
    let got = rewrite_model(br#"{"model":"a"}"#, "q\"uote").unwrap();
    let v: Value = serde_json::from_slice(&got).unwrap();
    assert_eq!(v["model"], "q\"uote");
}

/// The request is read for its top-level keys only: what lies inside the
/// other members is the upstream's to judge, the top level must be one
/// object, keys spelled with escapes get a full parse, and the last of
/// duplicate keys counts (as the upstream's JSON parser has it).
#[test]
fn request_info_reads_the_top_level_only() {
    let prompt = "p".repeat(200_000);
    let long = format!(
        r#"{{"messages":[{{"role":"user","content":"{prompt}"}}],"model":"m","stream":true,"stream_options":{{"include_usage":false}},"n":1}}"#
    );
    assert_eq!(
        request_info(long.as_bytes()),
        RequestInfo {
            stream: true,
            model: Some("m".into()),
            include_usage: Some(false),
            n: Some(1),
        }
    );
    // Malformed inside a member the relay does not read: its keys count.
    let info = request_info(br#"{"messages":[1,,2],"model":"m","stream":true}"#);
    assert_eq!((info.stream, info.model.as_deref()), (true, Some("m")));
    // Not one object: nothing.
    for body in [
        &br#"{"stream":true} {"model":"m"}"#[..],
        br#"{"stream":true}x"#,
        br#"{"stream" true}"#,
        br#"{"model":"m","stream":true,}"#,
    ] {
        assert_eq!(request_info(body), RequestInfo::default(), "{body:?}");
    }
    let info = request_info(b" \n{\"stream\":true,\"model\":\"m\"}\n");
    assert_eq!((info.stream, info.model.as_deref()), (true, Some("m")));
    // Escaped key: read by the full parse, as before.
    let info = request_info(br#"{"str\u0065am":true,"model":"m"}"#);
    assert_eq!((info.stream, info.model.as_deref()), (true, Some("m")));
    // Duplicates: the last one.
    let info = request_info(br#"{"stream":false,"model":"a","stream":true,"model":"b"}"#);
    assert_eq!((info.stream, info.model.as_deref()), (true, Some("b")));
    // A model that is not a string, an escaped model string.
    assert_eq!(request_info(br#"{"model":7,"stream":true}"#).model, None);
    let info = request_info(br#"{"model":"a\"b\u00e9","stream":true}"#);
    assert_eq!(info.model.as_deref(), Some("a\"bé"));
}

/// Strings are skipped quote to quote: a quote after an even run of
/// backslashes ends the string, after an odd run it is part of it. Each
/// body is checked against serde_json's reading of the same bytes.
#[test]
fn request_info_skips_strings_by_the_backslashes_before_each_quote() {
    for run in 0..7 {
        let slashes = "\\".repeat(run);
        // Odd runs escape the quote, so the string goes on and holds a
        // lookalike of a top-level key; even runs end it.
        let tail = if run % 2 == 1 {
            r#", \"stream\": true, x"}],"model":"m"}"#
        } else {
            r#"}],"stream":true,"model":"m"}"#
        };
        for lead in ["", "a", "\\n", "\\\"q\\\" "] {
            let body = format!(r#"{{"messages":[{{"content":"{lead}{slashes}"{tail}"#);
            let strict: serde_json::Value = serde_json::from_str(&body).expect(&body);
            let info = request_info(body.as_bytes());
            assert_eq!(
                (info.stream, info.model.as_deref()),
                (strict["stream"] == true, strict["model"].as_str()),
                "{body}"
            );
        }
    }
}

/// An answer's usage comes from its top level only: lookalikes inside the
/// choices do not count, the last duplicate does, a key spelled with
/// escapes still reads (full parse), and each body agrees with serde_json's
/// reading of the same bytes.
#[test]
fn answer_usage_from_the_top_level_only() {
    let text = r#"He said \"usage\": {\"prompt_tokens\": 9}\n and \\ left."#;
    let cases = [
        format!(
            r#"{{"choices":[{{"message":{{"content":"{text}"}}}}],"model":"m","usage":{{"prompt_tokens":3,"completion_tokens":4}}}}"#
        ),
        r#"{"usage":{"prompt_tokens":1},"choices":[{"usage":{"prompt_tokens":8}}],"model":"x","model":"m","usage":{"prompt_tokens":3,"completion_tokens":4}}"#.to_string(),
        r#"{"model":"m","us\u0061ge":{"prompt_tokens":3,"completion_tokens":4}}"#.to_string(),
        r#"{"model":"\u006d","usage":{"prompt_tokens":3,"completion_tokens":4}}"#.to_string(),
    ];
    for body in &cases {
        let strict: serde_json::Value = serde_json::from_str(body).expect(body);
        assert_eq!(strict["usage"]["prompt_tokens"], 3, "{body}");
        let (usage, model) = from_body(Dialect::OpenAiChat, body.as_bytes());
        let usage = usage.expect(body);
        assert_eq!((usage.input, usage.output), (Some(3), Some(4)), "{body}");
        assert_eq!(model.as_deref(), strict["model"].as_str(), "{body}");
    }
    // Not one object, or a usage that is not an object: no usage.
    for body in [
        &br#"{"usage":{"prompt_tokens":3}} {"model":"m"}"#[..],
        br#"{"usage":"3","model":"m"}"#,
        br#"[{"usage":{"prompt_tokens":3}}]"#,
    ] {
        assert_eq!(from_body(Dialect::OpenAiChat, body).0, None, "{body:?}");
    }
}
