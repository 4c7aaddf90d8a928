//! [`FaultyUpstream`]: an OpenAI-compatible (and Anthropic-shaped) model
//! API on a real socket that fails on request, for the failover tests. It
//! speaks raw HTTP/1.1 (keep-alive, chunked event streams), so every byte,
//! pause, close and reset is the test's choice.
//!
//! **Picking a fault.** After reading a whole request, the instance takes
//! the first of: the `x-fault` request header; the JSON body's top-level
//! `model` when it starts with `fault:`; the instance's *default fault*
//! ([`FaultyUpstream::set_fault`], cleared by [`FaultyUpstream::recover`],
//! so an endpoint can fail persistently, then recover). No fault: a healthy
//! answer. A request's `model` travels to every endpoint it is sent to, so
//! faults meant for one endpoint only are default faults.
//!
//! **Vocabulary** (`fault:` is optional outside `model`; `N` a number,
//! `D` a duration such as `300ms` or `2s`):
//!
//! | spec | the answer |
//! |---|---|
//! | `503`, `429`, `401`, any status `100..=599` | that status, the dialect's JSON error body |
//! | `context` | `400`, context window exceeded (OpenAI `context_length_exceeded`; Anthropic `prompt is too long: ...`) |
//! | `policy400` | `400`, content policy (OpenAI `content_policy_violation`; Anthropic `invalid_request_error`) |
//! | `reset` | no byte; the connection is reset (RST) |
//! | `close`, `close-after-head-read` | no byte; the connection is closed (FIN) |
//! | `silent` | no byte, ever (until the peer closes) |
//! | `head-then-silent` | a `200 text/event-stream` head, then nothing |
//! | `comments-only[=D]` | the head, then a comment `: waiting for <name>` every `D` (200 ms), never an event |
//! | `partial-then-silent` | the head and half an event (`data: {"partial":"<name>"`), then nothing |
//! | `slow-first=D` | the healthy answer, its head `D` late |
//! | `cut-after=N` | the first `N` events of the healthy stream, then a reset |
//! | `truncate-after=N` | the first `N` events, then a clean end of the body (no finish, no `[DONE]`) |
//! | `stall-after=N` | the first `N` events, then nothing |
//! | `error-after=N` | the first `N` events, then the dialect's error event (OpenAI `data: {"error":{...}}`; Anthropic `event: error`, `overloaded_error`), then a clean end |
//! | `tool-then-reset` | a text piece, then a tool call cut in its arguments (OpenAI: a `tool_calls` delta; Anthropic: a `tool_use` block and an `input_json_delta`), then a reset |
//!
//! Options follow with `:`: `retry=N` adds `retry-after: N` to a status
//! answer (`fault:429:retry=2`); `times=N` applies the fault to the first
//! `N` requests carrying that spec on this instance, later ones are healthy
//! (`429:retry=1:times=1`). An unknown spec is answered `400` naming it.
//!
//! **Healthy answers** say `Hello from <name>`, or, from a *fixed*
//! instance ([`FaultyUpstream::start_fixed`]), the [`FIXED_PIECES`] every
//! fixed instance shares. `POST /v1/messages` gets
//! the Anthropic shape, anything else OpenAI chat completions; a body with
//! `"stream": true` gets an event stream ([`healthy_stream`] gives its exact
//! bytes, with the usage chunk when `stream_options.include_usage` is set),
//! other requests a JSON completion. Every answer carries
//! `x-served-by: <name>`, and the `model` of events and completions is the
//! request's `model` as this instance received it (so a relay's rewrite
//! shows). [`FaultyUpstream::hold`] pauses healthy streams after their
//! first event until [`FaultyUpstream::release`], to keep many open at once.
//!
//! **Prefill.** A fixed instance asked with a trailing `assistant` message
//! (OpenAI chat or Anthropic, its content a string or text blocks) answers
//! with the rest of the fixed answer after that text, as a model continues
//! a prefill: the piece the prefill ends in is finished, then the pieces
//! go on ([`fixed_rest`]); an Anthropic prefill that was right-trimmed gets
//! the trimmed whitespace back first. The usage it reports counts the
//! prefill as prompt ([`fixed_usage`]). A prefill the fixed answer does not
//! start with is answered `400`, and so is, on `/v1/messages`, one that
//! ends in whitespace (as Anthropic's API refuses it). The `N` of the
//! `*-after=N` faults counts the continuation's own events.
//!
//! Every request is recorded ([`FaultyRequest`]) before it is answered.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::{RawUpstream, eventually, read_request};

/// One request as a [`FaultyUpstream`] read it.
#[derive(Debug, Clone)]
pub struct FaultyRequest {
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Header names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: String,
    /// The fault spec applied to it, if any.
    pub fault: Option<String>,
    pub at: Instant,
}

impl FaultyRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }

    /// The body's top-level `model`.
    pub fn model(&self) -> Option<String> {
        self.json()?.get("model")?.as_str().map(str::to_owned)
    }

    /// The trailing `assistant` message's text (a string, or its text
    /// blocks joined), when the request ends with one: a prefill.
    pub fn prefill(&self) -> Option<String> {
        let v = self.json()?;
        let last = v["messages"].as_array()?.last()?.clone();
        if last["role"] != "assistant" {
            return None;
        }
        match &last["content"] {
            Value::String(s) => Some(s.clone()),
            Value::Array(blocks) => Some(
                blocks
                    .iter()
                    .filter_map(|b| b["text"].as_str())
                    .collect::<String>(),
            ),
            _ => None,
        }
    }

    fn parse(raw: &str) -> Self {
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or_default().split(' ');
        let method = first.next().unwrap_or_default().to_owned();
        let target = first.next().unwrap_or_default().to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let chunked = headers
            .iter()
            .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
        Self {
            method,
            target,
            headers,
            body: if chunked {
                dechunk(body)
            } else {
                body.to_owned()
            },
            fault: None,
            at: Instant::now(),
        }
    }

    fn fault_spec(&self) -> Option<String> {
        if let Some(h) = self.header("x-fault") {
            return Some(h.to_owned());
        }
        self.model().filter(|m| m.starts_with("fault:"))
    }

    fn streaming(&self) -> bool {
        self.json().is_some_and(|v| v["stream"] == true)
    }

    fn include_usage(&self) -> bool {
        self.json()
            .is_some_and(|v| v["stream_options"]["include_usage"] == true)
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = size.split(';').next().unwrap_or("0").trim();
        let n = usize::from_str_radix(size, 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].strip_prefix("\r\n").unwrap_or(&after[n..]);
    }
    out
}

// ---------------------------------------------------------------- faults

/// A parsed fault spec.
#[derive(Debug, Clone, PartialEq)]
enum Fault {
    Status {
        code: u16,
        retry_after: Option<u64>,
        kind: ErrKind,
    },
    Reset,
    Close,
    Silent,
    HeadThenSilent,
    CommentsOnly(Duration),
    PartialThenSilent,
    SlowFirst(Duration),
    /// Send this many events of the healthy stream, then end as said.
    After(usize, Ending),
    /// A text piece, a tool call cut inside its arguments, a reset.
    ToolThenReset,
    Unknown(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ErrKind {
    Plain,
    Context,
    Policy,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Ending {
    Reset,
    Clean,
    Stall,
    /// The dialect's error event, then a clean end.
    ErrorEvent,
}

/// `spec` parsed, with its `times` option.
fn parse_fault(spec: &str) -> (Fault, Option<usize>) {
    match try_parse(spec) {
        Ok(f) => f,
        Err(e) => (Fault::Unknown(format!("{spec:?}: {e}")), None),
    }
}

fn try_parse(spec: &str) -> Result<(Fault, Option<usize>), String> {
    let spec = spec.trim();
    let spec = spec.strip_prefix("fault:").unwrap_or(spec);
    let mut parts = spec.split(':');
    let head = parts.next().unwrap_or_default();
    let (name, arg) = match head.split_once('=') {
        Some((n, a)) => (n, Some(a)),
        None => (head, None),
    };
    let (mut retry_after, mut times) = (None, None);
    for opt in parts {
        match opt.split_once('=') {
            Some(("retry", v)) => retry_after = Some(v.parse().map_err(|_| "bad retry")?),
            Some(("times", v)) => times = Some(v.parse().map_err(|_| "bad times")?),
            _ => return Err(format!("unknown option {opt:?}")),
        }
    }
    let dur = |d: Option<&str>| -> Result<Duration, String> {
        humantime::parse_duration(d.ok_or("needs =DURATION")?).map_err(|e| e.to_string())
    };
    let count = |n: Option<&str>| -> Result<usize, String> {
        n.ok_or("needs =N")?
            .parse()
            .map_err(|_| "bad count".to_owned())
    };
    let status = |code, kind| Fault::Status {
        code,
        retry_after,
        kind,
    };
    let fault = match name {
        "context" => status(400, ErrKind::Context),
        "policy400" => status(400, ErrKind::Policy),
        "reset" => Fault::Reset,
        "close" | "close-after-head-read" => Fault::Close,
        "silent" => Fault::Silent,
        "head-then-silent" => Fault::HeadThenSilent,
        "comments-only" if arg.is_none() => Fault::CommentsOnly(Duration::from_millis(200)),
        "comments-only" => Fault::CommentsOnly(dur(arg)?),
        "partial-then-silent" => Fault::PartialThenSilent,
        "slow-first" => Fault::SlowFirst(dur(arg)?),
        "cut-after" => Fault::After(count(arg)?, Ending::Reset),
        "truncate-after" => Fault::After(count(arg)?, Ending::Clean),
        "stall-after" => Fault::After(count(arg)?, Ending::Stall),
        "error-after" => Fault::After(count(arg)?, Ending::ErrorEvent),
        "tool-then-reset" => Fault::ToolThenReset,
        code => match code.parse::<u16>() {
            Ok(c) if (100..=599).contains(&c) => status(c, ErrKind::Plain),
            _ => return Err("unknown fault".to_owned()),
        },
    };
    Ok((fault, times))
}

/// The status and body a status fault (`503`, `context`, `policy400`, ...)
/// answers a request for `path` with: what a client must see when such an
/// answer passes through unchanged. `None` for other faults.
pub fn fault_answer(spec: &str, path: &str) -> Option<(u16, String)> {
    match parse_fault(spec).0 {
        Fault::Status { code, kind, .. } => Some((code, error_body(code, kind, path))),
        _ => None,
    }
}

fn anthropic(path: &str) -> bool {
    path.starts_with("/v1/messages")
}

fn error_body(code: u16, kind: ErrKind, path: &str) -> String {
    if anthropic(path) {
        let (t, msg) = match (kind, code) {
            (ErrKind::Context, _) => (
                "invalid_request_error",
                "prompt is too long: 210000 tokens > 200000 maximum",
            ),
            (ErrKind::Policy, _) => (
                "invalid_request_error",
                "Output blocked by content filtering policy",
            ),
            (_, 400) => ("invalid_request_error", "invalid request"),
            (_, 401) => ("authentication_error", "invalid x-api-key"),
            (_, 403) => ("permission_error", "not allowed"),
            (_, 404) => ("not_found_error", "model not found"),
            (_, 413) => ("request_too_large", "request too large"),
            (_, 429) => ("rate_limit_error", "rate limited"),
            (_, 529) => ("overloaded_error", "Overloaded"),
            _ => ("api_error", "internal server error"),
        };
        json!({"type": "error", "error": {"type": t, "message": msg}}).to_string()
    } else {
        let (t, c, msg) = match (kind, code) {
            (ErrKind::Context, _) => (
                "invalid_request_error",
                "context_length_exceeded",
                "This model's maximum context length is 8192 tokens. However, your messages resulted in 9001 tokens. Please reduce the length of the messages.",
            ),
            (ErrKind::Policy, _) => (
                "invalid_request_error",
                "content_policy_violation",
                "Your request was rejected as a result of our safety system.",
            ),
            (_, 401) => (
                "invalid_request_error",
                "invalid_api_key",
                "Incorrect API key provided.",
            ),
            (_, 403) => (
                "invalid_request_error",
                "unsupported_country_region_territory",
                "Country, region, or territory not supported.",
            ),
            (_, 404) => (
                "invalid_request_error",
                "model_not_found",
                "The model does not exist.",
            ),
            (_, 429) => (
                "requests",
                "rate_limit_exceeded",
                "Rate limit reached for requests.",
            ),
            (_, c) if c < 500 => ("invalid_request_error", "invalid_request", "Bad request."),
            _ => (
                "server_error",
                "server_error",
                "The server had an error while processing your request.",
            ),
        };
        json!({"error": {"message": msg, "type": t, "param": null, "code": c}}).to_string()
    }
}

// ---------------------------------------------------------------- healthy answers

const PIECES: usize = 3;

fn pieces(name: &str) -> [String; PIECES] {
    ["Hello".to_owned(), " from ".to_owned(), name.to_owned()]
}

/// The answer of every fixed instance, in the pieces it streams (one per
/// delta, about a token each). A cut after the `"\n\n"` piece leaves a
/// text that ends in whitespace, which an Anthropic prefill must trim.
pub const FIXED_PIECES: [&str; 13] = [
    "The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog.", "\n\n", "Then",
    " it", " rests.",
];

/// Prompt tokens every answer reports, the prefill aside.
pub const PROMPT_TOKENS: u64 = 9;

/// The fixed answer's whole text.
pub fn fixed_answer() -> String {
    FIXED_PIECES.concat()
}

/// The pieces a fixed instance continues `prefill` with: the rest of the
/// piece the prefill ends in, then the pieces after it. `None` when the
/// fixed answer does not start with `prefill`.
pub fn fixed_rest(prefill: &str) -> Option<Vec<String>> {
    let full = fixed_answer();
    if !full.starts_with(prefill) {
        return None;
    }
    let cut = prefill.len();
    let mut rest = Vec::new();
    let mut at = 0;
    for piece in FIXED_PIECES {
        let end = at + piece.len();
        if end > cut {
            rest.push(full[cut.max(at)..end].to_owned());
        }
        at = end;
    }
    Some(rest)
}

/// The usage a fixed instance reports for a request with `prefill` (or
/// none): `(prompt, completion)`. The prompt counts the prefill's pieces
/// (each piece it starts in); the completion, the pieces it streams.
pub fn fixed_usage(prefill: Option<&str>) -> (u64, u64) {
    let Some(prefill) = prefill else {
        return (PROMPT_TOKENS, FIXED_PIECES.len() as u64);
    };
    let mut at = 0;
    let mut started = 0;
    for piece in FIXED_PIECES {
        if at < prefill.len() {
            started += 1;
        }
        at += piece.len();
    }
    let rest = fixed_rest(prefill).map_or(0, |r| r.len());
    (PROMPT_TOKENS + started, rest as u64)
}

/// What an answer says: its pieces, and the prompt tokens it reports.
struct Script {
    pieces: Vec<String>,
    prompt: u64,
}

impl Script {
    fn hello(name: &str) -> Self {
        Self {
            pieces: pieces(name).to_vec(),
            prompt: PROMPT_TOKENS,
        }
    }

    /// The fixed answer, or its rest after `prefill`.
    fn fixed(prefill: Option<&str>) -> Option<Self> {
        let pieces = match prefill {
            Some(p) => fixed_rest(p)?,
            None => FIXED_PIECES.iter().map(|p| (*p).to_owned()).collect(),
        };
        let (prompt, _) = fixed_usage(prefill);
        Some(Self { pieces, prompt })
    }

    fn completion(&self) -> u64 {
        self.pieces.len() as u64
    }
}

/// The events (each a whole `data: ...\n\n` or `event: ...\ndata: ...\n\n`
/// frame) of the healthy stream instance `name` answers a request for
/// `path` carrying `model` with.
pub fn healthy_events(name: &str, model: &str, path: &str, include_usage: bool) -> Vec<String> {
    events(name, model, path, include_usage, &Script::hello(name))
}

/// The events a fixed instance named `name` streams for a request of
/// `path` with `model`, continuing `prefill` when there is one. `None`
/// when the fixed answer does not start with `prefill`.
pub fn fixed_events(
    name: &str,
    model: &str,
    path: &str,
    include_usage: bool,
    prefill: Option<&str>,
) -> Option<Vec<String>> {
    let script = Script::fixed(prefill)?;
    Some(events(name, model, path, include_usage, &script))
}

fn sse(event: Option<&str>, v: &Value) -> String {
    match event {
        Some(t) => format!("event: {t}\ndata: {v}\n\n"),
        None => format!("data: {v}\n\n"),
    }
}

fn message_start(name: &str, model: &str, prompt: u64) -> String {
    let v = json!({"type": "message_start", "message": {"id": format!("msg_{name}"),
        "type": "message", "role": "assistant", "content": [], "model": model,
        "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": prompt, "output_tokens": 1}}});
    sse(Some("message_start"), &v)
}

fn block_start(index: usize, block: Value) -> String {
    let v = json!({"type": "content_block_start", "index": index, "content_block": block});
    sse(Some("content_block_start"), &v)
}

fn block_delta(index: usize, delta: Value) -> String {
    let v = json!({"type": "content_block_delta", "index": index, "delta": delta});
    sse(Some("content_block_delta"), &v)
}

fn block_stop(index: usize) -> String {
    let v = json!({"type": "content_block_stop", "index": index});
    sse(Some("content_block_stop"), &v)
}

/// One OpenAI chat chunk of instance `name`'s answer.
fn chunk(name: &str, model: &str, include_usage: bool, delta: Value, finish: Value) -> String {
    let mut v = json!({"id": format!("chatcmpl-{name}"), "object": "chat.completion.chunk",
        "created": 1_700_000_000, "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
    if include_usage {
        v["usage"] = Value::Null;
    }
    sse(None, &v)
}

fn events(name: &str, model: &str, path: &str, include_usage: bool, s: &Script) -> Vec<String> {
    if anthropic(path) {
        let mut out = vec![
            message_start(name, model, s.prompt),
            block_start(0, json!({"type": "text", "text": ""})),
        ];
        for p in &s.pieces {
            out.push(block_delta(0, json!({"type": "text_delta", "text": p})));
        }
        out.push(block_stop(0));
        let delta = json!({"type": "message_delta", "delta": {"stop_reason": "end_turn",
            "stop_sequence": null}, "usage": {"output_tokens": s.completion()}});
        out.push(sse(Some("message_delta"), &delta));
        out.push(sse(Some("message_stop"), &json!({"type": "message_stop"})));
        return out;
    }
    let chunk = |delta: Value, finish: Value| chunk(name, model, include_usage, delta, finish);
    let mut out = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    for p in &s.pieces {
        out.push(chunk(json!({"content": p}), Value::Null));
    }
    out.push(chunk(json!({}), json!("stop")));
    if include_usage {
        let (p, c) = (s.prompt, s.completion());
        out.push(sse(
            None,
            &json!({"id": format!("chatcmpl-{name}"),
            "object": "chat.completion.chunk", "created": 1_700_000_000, "model": model,
            "choices": [], "usage": {"prompt_tokens": p, "completion_tokens": c,
            "total_tokens": p + c}}),
        ));
    }
    out.push("data: [DONE]\n\n".to_owned());
    out
}

/// The events of `tool-then-reset` before its reset: the first piece of
/// the answer as text, then a tool call whose arguments are cut short.
pub fn tool_events(name: &str, model: &str, path: &str, first_piece: &str) -> Vec<String> {
    let args = r#"{"city": "Pa"#;
    if anthropic(path) {
        let tool = json!({"type": "tool_use", "id": format!("toolu_{name}"),
            "name": "get_weather", "input": {}});
        return vec![
            message_start(name, model, PROMPT_TOKENS),
            block_start(0, json!({"type": "text", "text": ""})),
            block_delta(0, json!({"type": "text_delta", "text": first_piece})),
            block_stop(0),
            block_start(1, tool),
            block_delta(1, json!({"type": "input_json_delta", "partial_json": args})),
        ];
    }
    let chunk = |delta: Value| chunk(name, model, false, delta, Value::Null);
    vec![
        chunk(json!({"role": "assistant", "content": ""})),
        chunk(json!({"content": first_piece})),
        chunk(
            json!({"tool_calls": [{"index": 0, "id": format!("call_{name}"),
            "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
        ),
        chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": args}}]})),
    ]
}

/// The error event `error-after=N` sends for a request of `path`.
pub fn error_event(path: &str) -> String {
    if anthropic(path) {
        let v = json!({"type": "error", "error": {"type": "overloaded_error",
            "message": "Overloaded"}});
        return sse(Some("error"), &v);
    }
    let v = json!({"error": {"message": "The server is overloaded; try again later.",
        "type": "server_error", "param": null, "code": "overloaded"}});
    sse(None, &v)
}

/// The whole healthy stream body (see [`healthy_events`]).
pub fn healthy_stream(name: &str, model: &str, path: &str, include_usage: bool) -> String {
    healthy_events(name, model, path, include_usage).concat()
}

/// The healthy non-streaming answer body.
pub fn healthy_json(name: &str, model: &str, path: &str) -> String {
    json_answer(name, model, path, &Script::hello(name))
}

fn json_answer(name: &str, model: &str, path: &str, s: &Script) -> String {
    let text = s.pieces.concat();
    let (p, c) = (s.prompt, s.completion());
    if anthropic(path) {
        json!({"id": format!("msg_{name}"), "type": "message", "role": "assistant",
            "model": model, "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": p, "output_tokens": c}})
        .to_string()
    } else {
        json!({"id": format!("chatcmpl-{name}"), "object": "chat.completion",
            "created": 1_700_000_000, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
            "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": p, "completion_tokens": c,
            "total_tokens": p + c}})
        .to_string()
    }
}

// ---------------------------------------------------------------- the upstream

struct State {
    name: String,
    /// Answers with the fixed answer (and honours a prefill).
    fixed: bool,
    default_fault: Mutex<Option<String>>,
    /// Requests each spec was applied to (for `times=N`).
    applied: Mutex<HashMap<String, usize>>,
    requests: Mutex<Vec<FaultyRequest>>,
    /// True while healthy streams pause after their first event.
    holding: watch::Sender<bool>,
    /// Answers begun and not finished (streams held or still being written).
    open: AtomicUsize,
}

impl State {
    /// The fault for `req` (and its spec), after `times` is accounted.
    fn pick(&self, req: &FaultyRequest) -> Option<(String, Fault)> {
        let spec = req
            .fault_spec()
            .or_else(|| self.default_fault.lock().unwrap().clone())?;
        let (fault, times) = parse_fault(&spec);
        let mut applied = self.applied.lock().unwrap();
        let n = applied.entry(spec.clone()).or_insert(0);
        *n += 1;
        match times {
            Some(limit) if *n > limit => None,
            _ => Some((spec, fault)),
        }
    }
}

/// A fault-injecting model API upstream (see the module docs).
pub struct FaultyUpstream {
    pub name: String,
    pub addr: SocketAddr,
    raw: RawUpstream,
    state: Arc<State>,
}

impl FaultyUpstream {
    /// A healthy instance named `name` on 127.0.0.1:0.
    pub async fn start(name: &str) -> FaultyUpstream {
        Self::launch(name, false).await
    }

    /// A healthy instance that answers with the fixed answer
    /// ([`FIXED_PIECES`]) and continues a prefill (see the module docs).
    pub async fn start_fixed(name: &str) -> FaultyUpstream {
        Self::launch(name, true).await
    }

    /// A fixed instance that starts with the default fault `spec`.
    pub async fn fixed_failing(name: &str, spec: &str) -> FaultyUpstream {
        let up = Self::start_fixed(name).await;
        up.set_fault(spec);
        up
    }

    async fn launch(name: &str, fixed: bool) -> FaultyUpstream {
        let state = Arc::new(State {
            name: name.to_owned(),
            fixed,
            default_fault: Mutex::new(None),
            applied: Mutex::new(HashMap::new()),
            requests: Mutex::new(Vec::new()),
            holding: watch::channel(false).0,
            open: AtomicUsize::new(0),
        });
        let st = state.clone();
        let raw = RawUpstream::start(move |s, _| serve(s, st.clone())).await;
        FaultyUpstream {
            name: name.to_owned(),
            addr: raw.addr,
            raw,
            state,
        }
    }

    /// An instance that starts with the default fault `spec`.
    pub async fn failing(name: &str, spec: &str) -> FaultyUpstream {
        let up = Self::start(name).await;
        up.set_fault(spec);
        up
    }

    pub fn url(&self) -> String {
        self.raw.url()
    }

    /// Applies `spec` to every request that names no fault of its own.
    pub fn set_fault(&self, spec: &str) {
        *self.state.default_fault.lock().unwrap() = Some(spec.to_owned());
    }

    /// Clears the default fault: healthy again.
    pub fn recover(&self) {
        *self.state.default_fault.lock().unwrap() = None;
    }

    /// Healthy streams begun from now on pause after their first event.
    pub fn hold(&self) {
        self.state.holding.send_replace(true);
    }

    /// Lets every paused stream go on.
    pub fn release(&self) {
        self.state.holding.send_replace(false);
    }

    pub fn requests(&self) -> Vec<FaultyRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn request_count(&self) -> usize {
        self.state.requests.lock().unwrap().len()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.raw.accepted.load(Ordering::SeqCst)
    }

    /// Answers begun and not yet finished.
    pub fn open_answers(&self) -> usize {
        self.state.open.load(Ordering::SeqCst)
    }

    pub async fn wait_requests(&self, n: usize) {
        let what = format!("{n} requests at {}", self.name);
        eventually(Duration::from_secs(10), &what, || self.request_count() >= n).await;
    }
}

/// Counts an answer as open while it lives.
struct Open(Arc<State>);

impl Open {
    fn new(st: &Arc<State>) -> Self {
        st.open.fetch_add(1, Ordering::SeqCst);
        Self(st.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What the connection does after an answer.
enum Next {
    KeepAlive,
    Done,
}

async fn serve(mut s: TcpStream, st: Arc<State>) {
    let mut buf = Vec::new();
    while let Some(raw) = read_request(&mut s, &mut buf).await {
        let mut req = FaultyRequest::parse(&raw);
        let fault = st.pick(&req);
        req.fault = fault.as_ref().map(|(spec, _)| spec.clone());
        st.requests.lock().unwrap().push(req.clone());
        let _open = Open::new(&st);
        let next = match fault.map(|(_, f)| f) {
            None => healthy(&mut s, &st, &req, None).await,
            Some(f) => faulty(&mut s, &st, &req, f).await,
        };
        match next {
            Ok(Next::KeepAlive) => {}
            Ok(Next::Done) | Err(_) => return,
        }
    }
}

type Written = std::io::Result<Next>;

async fn faulty(s: &mut TcpStream, st: &State, req: &FaultyRequest, fault: Fault) -> Written {
    match fault {
        Fault::Status {
            code,
            retry_after,
            kind,
        } => {
            let body = error_body(code, kind, &req.target);
            let retry = retry_after.map(|n| format!("retry-after: {n}\r\n"));
            let extra = retry.unwrap_or_default();
            write_json(s, st, code, &extra, &body).await
        }
        Fault::Unknown(what) => {
            let body = json!({"error": {"message": format!("faulty upstream: unknown fault {what}"),
                "type": "invalid_request_error", "param": null, "code": "unknown_fault"}});
            write_json(s, st, 400, "", &body.to_string()).await
        }
        Fault::Reset => {
            let _ = socket2::SockRef::from(&*s).set_linger(Some(Duration::ZERO));
            Ok(Next::Done)
        }
        Fault::Close => {
            s.shutdown().await?;
            Ok(Next::Done)
        }
        Fault::Silent => wait_closed(s).await,
        Fault::HeadThenSilent => {
            write_stream_head(s, st).await?;
            wait_closed(s).await
        }
        Fault::PartialThenSilent => {
            write_stream_head(s, st).await?;
            write_chunk(s, &format!("data: {{\"partial\":\"{}\"", st.name)).await?;
            wait_closed(s).await
        }
        Fault::CommentsOnly(every) => {
            write_stream_head(s, st).await?;
            loop {
                write_chunk(s, &format!(": waiting for {}\n\n", st.name)).await?;
                tokio::time::sleep(every).await;
            }
        }
        Fault::SlowFirst(d) => {
            tokio::time::sleep(d).await;
            healthy(s, st, req, None).await
        }
        Fault::After(n, ending) => healthy(s, st, req, Some((n, ending))).await,
        Fault::ToolThenReset => {
            let model = req.model().unwrap_or_else(|| "unknown".to_owned());
            let first = match script(st, req) {
                Ok(script) => script.pieces.first().cloned().unwrap_or_default(),
                Err(_) => String::new(),
            };
            write_stream_head(s, st).await?;
            for ev in tool_events(&st.name, &model, &req.target, &first) {
                write_chunk(s, &ev).await?;
            }
            end_early(s, Ending::Reset, &req.target).await
        }
    }
}

/// What `req` is answered with: `Hello from <name>`, or for a fixed
/// instance the fixed answer or its rest after the request's prefill; an
/// `Err` (a `400`'s message) for a prefill it cannot continue.
fn script(st: &State, req: &FaultyRequest) -> Result<Script, String> {
    if !st.fixed {
        return Ok(Script::hello(&st.name));
    }
    let prefill = req.prefill();
    if let Some(p) = &prefill {
        if anthropic(&req.target) && p.trim_end() != p {
            return Err(
                "messages: final assistant content cannot end with trailing whitespace".to_owned(),
            );
        }
    }
    Script::fixed(prefill.as_deref()).ok_or_else(|| {
        format!("faulty upstream: the fixed answer does not start with the prefill {prefill:?}")
    })
}

/// A `400` in the dialect's shape, saying `msg`.
fn invalid_body(path: &str, msg: &str) -> String {
    if anthropic(path) {
        json!({"type": "error", "error": {"type": "invalid_request_error", "message": msg}})
            .to_string()
    } else {
        json!({"error": {"message": msg, "type": "invalid_request_error", "param": null,
            "code": "invalid_prefill"}})
        .to_string()
    }
}

/// The healthy answer; for a stream cut short, its first `n` events and
/// then `ending`.
async fn healthy(
    s: &mut TcpStream,
    st: &State,
    req: &FaultyRequest,
    cut: Option<(usize, Ending)>,
) -> Written {
    let model = req.model().unwrap_or_else(|| "unknown".to_owned());
    let path = req.target.as_str();
    let script = match script(st, req) {
        Ok(script) => script,
        Err(msg) => return write_json(s, st, 400, "", &invalid_body(path, &msg)).await,
    };
    if !req.streaming() {
        return write_json(
            s,
            st,
            200,
            "",
            &json_answer(&st.name, &model, path, &script),
        )
        .await;
    }
    let events = events(&st.name, &model, path, req.include_usage(), &script);
    let mut holding = st.holding.subscribe();
    let held = *holding.borrow_and_update();
    write_stream_head(s, st).await?;
    for (i, ev) in events.iter().enumerate() {
        if let Some((_, ending)) = cut.filter(|(n, _)| *n == i) {
            return end_early(s, ending, path).await;
        }
        write_chunk(s, ev).await?;
        if i == 0 && held {
            // Paused until released (or the peer leaves).
            tokio::select! {
                _ = holding.wait_for(|h| !*h) => {}
                r = wait_closed(s) => return r,
            }
        }
    }
    s.write_all(b"0\r\n\r\n").await?;
    Ok(Next::KeepAlive)
}

async fn end_early(s: &mut TcpStream, ending: Ending, path: &str) -> Written {
    match ending {
        Ending::Reset => {
            // Let the events be read first: a reset can discard what the
            // peer's kernel holds unread.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = socket2::SockRef::from(&*s).set_linger(Some(Duration::ZERO));
            Ok(Next::Done)
        }
        Ending::Clean => {
            s.write_all(b"0\r\n\r\n").await?;
            Ok(Next::KeepAlive)
        }
        Ending::Stall => wait_closed(s).await,
        Ending::ErrorEvent => {
            write_chunk(s, &error_event(path)).await?;
            s.write_all(b"0\r\n\r\n").await?;
            Ok(Next::KeepAlive)
        }
    }
}

async fn write_json(s: &mut TcpStream, st: &State, code: u16, extra: &str, body: &str) -> Written {
    let reason = http::StatusCode::from_u16(code)
        .ok()
        .and_then(|c| c.canonical_reason())
        .unwrap_or("Unknown");
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-served-by: {}\r\n{extra}\r\n",
        body.len(),
        st.name
    );
    s.write_all(format!("{head}{body}").as_bytes()).await?;
    Ok(Next::KeepAlive)
}

async fn write_stream_head(s: &mut TcpStream, st: &State) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nx-served-by: {}\r\ntransfer-encoding: chunked\r\n\r\n",
        st.name
    );
    s.write_all(head.as_bytes()).await
}

async fn write_chunk(s: &mut TcpStream, data: &str) -> std::io::Result<()> {
    let framed = format!("{:x}\r\n{data}\r\n", data.len());
    s.write_all(framed.as_bytes()).await
}

/// Says nothing until the peer closes (or resets) the connection.
async fn wait_closed(s: &mut TcpStream) -> Written {
    let mut sink = [0u8; 1024];
    loop {
        match s.read(&mut sink).await {
            Ok(0) | Err(_) => return Ok(Next::Done),
            Ok(_) => {}
        }
    }
}
