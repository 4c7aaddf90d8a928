//! The demo's script: the two requests the demo client sends and what the
//! simulated API answers, in each dialect's wire format (OpenAI chat
//! completions chunks ending in `data: [DONE]`; Anthropic `message_start`,
//! `content_block_*`, `message_delta`, `message_stop`).

use bytes::Bytes;
use http::StatusCode;

use crate::json::escape_into as json_escape_into;

/// Model name used when a request names none.
pub(super) const DEFAULT_MODEL: &str = "demo-model";

/// The answer streamed for OpenAI chat completions, one word per token.
pub const OPENAI_ANSWER: &str = "While the model was thinking, the relay sent keepalive comments, \
so no proxy between you and the API closed the silent connection.";

/// The answer streamed for Anthropic messages, one word per token.
pub const ANTHROPIC_ANSWER: &str = "Ping events filled every silence and the SDKs skip them \
as they always do, so this answer arrived whole and on time.";

/// The API shape a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    OpenAi,
    Anthropic,
}

/// One demo request.
pub(super) struct Scenario {
    pub title: &'static str,
    pub dialect: Dialect,
    pub path: &'static str,
    pub headers: &'static [(&'static str, &'static str)],
    pub body: &'static str,
}

/// The requests the demo streams through the relay, in order.
pub(super) const SCENARIOS: [Scenario; 2] = [
    Scenario {
        title: "OpenAI chat completions",
        dialect: Dialect::OpenAi,
        path: "/v1/chat/completions",
        headers: &[("authorization", "Bearer demo-key")],
        body: r#"{"model":"demo-model","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Why do long model streams need heartbeats?"}]}"#,
    },
    Scenario {
        title: "Anthropic messages",
        dialect: Dialect::Anthropic,
        path: "/v1/messages",
        headers: &[
            ("x-api-key", "demo-key"),
            ("anthropic-version", "2023-06-01"),
        ],
        body: r#"{"model":"demo-model","max_tokens":256,"stream":true,"messages":[{"role":"user","content":"And what does the Anthropic dialect send instead?"}]}"#,
    },
];

/// One answer of the simulated API, rendered frame by frame.
pub(super) struct Reply {
    dialect: Dialect,
    /// The model name, JSON-escaped.
    model: String,
    id: String,
    prompt_tokens: u64,
    tokens: Vec<String>,
}

impl Reply {
    pub(super) fn new(dialect: Dialect, model: &str, prompt_tokens: u64, n: u64) -> Self {
        let mut escaped = String::new();
        json_escape_into(&mut escaped, model);
        let (id, answer) = match dialect {
            Dialect::OpenAi => (format!("chatcmpl-demo-{n}"), OPENAI_ANSWER),
            Dialect::Anthropic => (format!("msg_demo_{n}"), ANTHROPIC_ANSWER),
        };
        let tokens = answer
            .split_whitespace()
            .enumerate()
            .map(|(i, w)| {
                if i == 0 {
                    w.to_owned()
                } else {
                    format!(" {w}")
                }
            })
            .collect();
        Self {
            dialect,
            model: escaped,
            id,
            prompt_tokens,
            tokens,
        }
    }

    /// How many tokens the answer streams.
    pub(super) fn token_count(&self) -> usize {
        self.tokens.len()
    }

    fn completion_tokens(&self) -> u64 {
        self.tokens.len() as u64
    }

    /// The event sent with the headers.
    pub(super) fn opening(&self, created: u64) -> Bytes {
        match self.dialect {
            Dialect::OpenAi => self.chunk(created, r#"{"role":"assistant","content":""}"#, "null"),
            Dialect::Anthropic => {
                let (id, model, input) = (&self.id, &self.model, self.prompt_tokens);
                let message = format!(
                    r#"{{"id":"{id}","type":"message","role":"assistant","model":"{model}","content":[],"stop_reason":null,"stop_sequence":null,"usage":{{"input_tokens":{input},"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}}"#
                );
                event(
                    "message_start",
                    &format!(r#"{{"type":"message_start","message":{message}}}"#),
                )
            }
        }
    }

    /// One event per token (the first Anthropic one also opens the text
    /// block).
    pub(super) fn token_events(&self, created: u64) -> Vec<Bytes> {
        let mut text = String::new();
        let mut one = |(i, token): (usize, &String)| {
            text.clear();
            json_escape_into(&mut text, token);
            match self.dialect {
                Dialect::OpenAi => {
                    self.chunk(created, &format!(r#"{{"content":"{text}"}}"#), "null")
                }
                Dialect::Anthropic => anthropic_delta(i == 0, &text),
            }
        };
        self.tokens.iter().enumerate().map(&mut one).collect()
    }

    /// The events after the last token: finish, usage, end of stream.
    pub(super) fn closing(&self, created: u64, include_usage: bool) -> Vec<Bytes> {
        match self.dialect {
            Dialect::OpenAi => {
                let mut frames = vec![self.chunk(created, "{}", r#""stop""#)];
                if include_usage {
                    let (id, model, usage) = (&self.id, &self.model, self.openai_usage());
                    frames.push(data(&format!(
                        r#"{{"id":"{id}","object":"chat.completion.chunk","created":{created},"model":"{model}","choices":[],"usage":{usage}}}"#
                    )));
                }
                frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
                frames
            }
            Dialect::Anthropic => {
                let output = self.completion_tokens();
                vec![
                    event(
                        "content_block_stop",
                        r#"{"type":"content_block_stop","index":0}"#,
                    ),
                    event(
                        "message_delta",
                        &format!(
                            r#"{{"type":"message_delta","delta":{{"stop_reason":"end_turn","stop_sequence":null}},"usage":{{"output_tokens":{output}}}}}"#
                        ),
                    ),
                    event("message_stop", r#"{"type":"message_stop"}"#),
                ]
            }
        }
    }

    /// The non-streaming answer.
    pub(super) fn whole(&self, created: u64) -> String {
        let mut text = String::new();
        json_escape_into(&mut text, &self.tokens.concat());
        let (id, model) = (&self.id, &self.model);
        match self.dialect {
            Dialect::OpenAi => {
                let usage = self.openai_usage();
                format!(
                    r#"{{"id":"{id}","object":"chat.completion","created":{created},"model":"{model}","choices":[{{"index":0,"message":{{"role":"assistant","content":"{text}"}},"logprobs":null,"finish_reason":"stop"}}],"usage":{usage}}}"#
                )
            }
            Dialect::Anthropic => {
                let (input, output) = (self.prompt_tokens, self.completion_tokens());
                format!(
                    r#"{{"id":"{id}","type":"message","role":"assistant","model":"{model}","content":[{{"type":"text","text":"{text}"}}],"stop_reason":"end_turn","stop_sequence":null,"usage":{{"input_tokens":{input},"output_tokens":{output}}}}}"#
                )
            }
        }
    }

    /// An OpenAI chunk with one choice.
    fn chunk(&self, created: u64, delta: &str, finish_reason: &str) -> Bytes {
        let (id, model) = (&self.id, &self.model);
        data(&format!(
            r#"{{"id":"{id}","object":"chat.completion.chunk","created":{created},"model":"{model}","choices":[{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":{finish_reason}}}]}}"#
        ))
    }

    fn openai_usage(&self) -> String {
        let (prompt, completion) = (self.prompt_tokens, self.completion_tokens());
        let total = prompt + completion;
        format!(
            r#"{{"prompt_tokens":{prompt},"completion_tokens":{completion},"total_tokens":{total}}}"#
        )
    }
}

/// A `content_block_delta` event with JSON-escaped `text`, preceded by
/// `content_block_start` for the first.
fn anthropic_delta(first: bool, text: &str) -> Bytes {
    let mut frame = Vec::new();
    if first {
        frame.extend_from_slice(&event(
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        ));
    }
    let delta = format!(
        r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":"{text}"}}}}"#
    );
    frame.extend_from_slice(&event("content_block_delta", &delta));
    Bytes::from(frame)
}

/// A `data:` event.
fn data(json: &str) -> Bytes {
    Bytes::from(format!("data: {json}\n\n"))
}

/// A named event.
fn event(name: &str, json: &str) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {json}\n\n"))
}

/// An error body in the dialect's shape.
pub(super) fn error_body(dialect: Dialect, status: StatusCode, message: &str) -> String {
    let mut text = String::new();
    json_escape_into(&mut text, message);
    let kind = if status == StatusCode::NOT_FOUND {
        "not_found_error"
    } else {
        "invalid_request_error"
    };
    match dialect {
        Dialect::OpenAi => format!(
            r#"{{"error":{{"message":"{text}","type":"{kind}","param":null,"code":null}}}}"#
        ),
        Dialect::Anthropic => {
            format!(r#"{{"type":"error","error":{{"type":"{kind}","message":"{text}"}}}}"#)
        }
    }
}
