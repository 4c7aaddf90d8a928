//! What the demo client makes of each item of a stream, per dialect: tokens
//! printed inline, keepalives marked, usage and the end of the stream shown,
//! and whether the stream ended the way its dialect says a complete answer
//! ends (OpenAI chat `data: [DONE]`, Anthropic `message_stop`).

use simd_json::BorrowedValue;
use simd_json::prelude::*;

use super::client::Item;
use super::output::{Mark, Output};
use super::script::Dialect;

/// One streamed answer as the client saw it.
#[derive(Debug)]
pub(super) struct Transcript {
    dialect: Dialect,
    /// The answer's text, tokens joined.
    pub text: String,
    /// Keepalives seen (comments and `ping` events).
    pub keepalives: usize,
    /// Token counts the upstream reported, by their wire names.
    pub usage: Vec<(String, u64)>,
    done: bool,
}

impl Transcript {
    pub(super) fn new(dialect: Dialect) -> Self {
        Self {
            dialect,
            text: String::new(),
            keepalives: 0,
            usage: Vec::new(),
            done: false,
        }
    }

    /// Whether the dialect's last event arrived.
    pub(super) fn complete(&self) -> bool {
        self.done
    }

    /// Prints `item` and records what it says.
    pub(super) fn show(&mut self, item: Item, out: &mut Output) {
        match item {
            Item::Comment(text) => {
                self.keepalives += 1;
                let what = if text == "keepalive" {
                    "keepalive"
                } else {
                    "comment"
                };
                out.mark(
                    Mark::Keepalive,
                    &format!("{what}  {}", out.dim(&format!("(: {text})"))),
                );
            }
            Item::Event { name, data } if name == "ping" => {
                self.keepalives += 1;
                let wire = out.dim(&format!("(event: ping, data: {data})"));
                out.mark(Mark::Keepalive, &format!("ping event  {wire}"));
            }
            Item::Event { name, data } => match self.dialect {
                Dialect::OpenAi => self.openai(&data, out),
                Dialect::Anthropic => self.anthropic(&name, &data, out),
            },
        }
    }

    fn openai(&mut self, data: &str, out: &mut Output) {
        if data == "[DONE]" {
            self.done = true;
            out.mark(Mark::Done, "data: [DONE]  the stream is complete");
            return;
        }
        let mut bytes = data.as_bytes().to_vec();
        let Ok(chunk) = simd_json::to_borrowed_value(&mut bytes) else {
            return out.mark(Mark::Error, &format!("not JSON: {data}"));
        };
        if let Some(e) = chunk.get("error") {
            return self.error(e, out);
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.record_usage(
                usage,
                &["prompt_tokens", "completion_tokens", "total_tokens"],
            );
            self.show_usage("usage-only chunk", out);
        }
        let Some(choice) = chunk
            .get("choices")
            .and_then(|c| c.as_array())
            .and_then(|c| c.first())
        else {
            return;
        };
        let delta = choice.get("delta");
        if let Some(role) = delta.and_then(|d| d.get("role")).and_then(|r| r.as_str()) {
            out.mark(
                Mark::Event,
                &format!("first chunk from the model API (role: {role})"),
            );
        }
        if let Some(text) = delta
            .and_then(|d| d.get("content"))
            .and_then(|c| c.as_str())
        {
            self.token(text, out);
        }
        if let Some(reason) = choice.get("finish_reason").and_then(|r| r.as_str()) {
            out.mark(Mark::Event, &format!("finish_reason: {reason}"));
        }
    }

    fn anthropic(&mut self, name: &str, data: &str, out: &mut Output) {
        let mut bytes = data.as_bytes().to_vec();
        let Ok(event) = simd_json::to_borrowed_value(&mut bytes) else {
            return out.mark(
                Mark::Error,
                &format!("event: {name} with data that is not JSON: {data}"),
            );
        };
        match name {
            "message_start" => {
                let message = event.get("message");
                if let Some(usage) = message.and_then(|m| m.get("usage")) {
                    self.record_usage(usage, &["input_tokens", "output_tokens"]);
                }
                let model = message
                    .and_then(|m| m.get("model"))
                    .and_then(|m| m.as_str());
                out.mark(
                    Mark::Event,
                    &format!("message_start  model {}", model.unwrap_or("?")),
                );
                self.show_usage("message_start", out);
            }
            "content_block_delta" => {
                let delta = event.get("delta");
                if let Some(text) = delta.and_then(|d| d.get("text")).and_then(|t| t.as_str()) {
                    self.token(text, out);
                }
            }
            "message_delta" => {
                if let Some(usage) = event.get("usage") {
                    self.record_usage(usage, &["input_tokens", "output_tokens"]);
                }
                self.show_usage("message_delta, output_tokens is cumulative", out);
            }
            "message_stop" => {
                self.done = true;
                out.mark(Mark::Done, "message_stop  the stream is complete");
            }
            "error" => self.error(event.get("error").unwrap_or(&event), out),
            other => out.mark(Mark::Event, other),
        }
    }

    fn token(&mut self, text: &str, out: &mut Output) {
        if !text.is_empty() {
            self.text.push_str(text);
            out.token(text);
        }
    }

    /// Replaces the recorded count of each of `keys` that `usage` has.
    fn record_usage(&mut self, usage: &BorrowedValue<'_>, keys: &[&str]) {
        for key in keys {
            let Some(n) = usage.get(*key).and_then(|v| v.as_u64()) else {
                continue;
            };
            match self.usage.iter_mut().find(|(k, _)| k == key) {
                Some((_, count)) => *count = n,
                None => self.usage.push(((*key).to_owned(), n)),
            }
        }
    }

    fn show_usage(&self, from: &str, out: &mut Output) {
        let counts: Vec<String> = self.usage.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let from = out.dim(&format!("  ({from})"));
        out.mark(Mark::Usage, &format!("usage  {}{from}", counts.join(" · ")));
    }

    fn error(&self, error: &BorrowedValue<'_>, out: &mut Output) {
        let message = error
            .get("message")
            .and_then(|m| m.as_str())
            .unwrap_or("(no message)");
        out.mark(Mark::Error, &format!("error event: {message}"));
    }
}
