//! Continuing an answer an upstream cut, on another endpoint, inside the
//! same client stream.
//!
//! Three pieces, all rare-path (they run at a cut and on the
//! continuation's events, never on an ordinary stream):
//!
//! - [`delivered`] reads the events the client already has and says what
//!   the answer was so far: its text, how many deltas carried it, and
//!   whether it can be continued at all (one choice, plain text only: a
//!   cut inside a tool call, function arguments or a thinking block, or
//!   after any of those, cannot be put back as a prefill);
//! - [`request`] turns the original request into the continuation request:
//!   the text delivered so far as a trailing assistant message, in the
//!   endpoint's declared [`Mechanism`];
//! - [`Splice`] makes the continuation's events read as the rest of the
//!   answer the client is accumulating: the duplicate opening frames go
//!   (OpenAI's role delta; Anthropic's `message_start` and the
//!   `content_block_start` of the block that was open), Anthropic block
//!   indices continue from the client's, a whitespace the prefill had to
//!   trim is not repeated, and the usage the client sees covers the whole
//!   answer.
//!
//! Usage, as the client sees it: the continuation's own report, with the
//! deltas delivered before the cut moved from the prompt side (where the
//! prefill counted them) to the answer side. OpenAI chat:
//! `completion_tokens + delivered`, `prompt_tokens - delivered`, the same
//! `total_tokens`. Anthropic: `output_tokens + delivered`. Both streams
//! send about one token per delta, so `delivered` is an estimate.

use bytes::Bytes;
use simd_json::prelude::*;
use simd_json::{OwnedValue, StaticNode};

use super::Dialect;
use crate::sse::{Event, Scanner};

/// How an endpoint continues a trailing assistant message, as it declares
/// it (`continuation` on an endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mechanism {
    /// Anthropic messages: a last `assistant` message is continued (its
    /// text must not end in whitespace).
    AnthropicPrefill,
    /// vLLM and SGLang: `continue_final_message: true` with
    /// `add_generation_prompt: false`.
    ContinueFinalMessage,
    /// A trailing assistant message and nothing else, for servers that
    /// continue it by themselves.
    AssistantMessage,
}

impl Mechanism {
    /// The mechanisms a dialect's requests can carry.
    pub(crate) fn fits(self, dialect: Dialect) -> bool {
        match self {
            Mechanism::AnthropicPrefill => dialect == Dialect::Anthropic,
            Mechanism::ContinueFinalMessage | Mechanism::AssistantMessage => {
                dialect == Dialect::OpenAiChat
            }
        }
    }
}

/// What the client holds of an answer at its cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Delivered {
    dialect: Dialect,
    /// The answer's text so far.
    pub text: String,
    /// Deltas that carried it (about one token each).
    pub tokens: u64,
    /// Anthropic: the content block left open by the cut, which the
    /// continuation's first block continues.
    open_block: Option<u64>,
    /// Anthropic: blocks the client has seen started.
    blocks: u64,
}

impl Delivered {
    pub(crate) fn dialect(&self) -> Dialect {
        self.dialect
    }
}

/// Reads the events the client has (their raw bytes, in order) and says
/// what was delivered, or why the answer cannot be continued.
pub(crate) fn delivered(dialect: Dialect, raw: &[Bytes]) -> Result<Delivered, &'static str> {
    let mut d = Delivered {
        dialect,
        text: String::new(),
        tokens: 0,
        open_block: None,
        blocks: 0,
    };
    let mut scanner = Scanner::new(usize::MAX);
    let mut outcome = Ok(());
    let mut on_event = |ev: &Event| {
        if outcome.is_ok() {
            outcome = match dialect {
                Dialect::OpenAiChat => chat_event(ev, &mut d),
                Dialect::Anthropic => anthropic_event(ev, &mut d),
                _ => Err("only OpenAI chat and Anthropic messages streams can be continued"),
            };
        }
    };
    for chunk in raw {
        // Whole events by construction; the scanner cannot overflow.
        let _ = scanner.feed(chunk.clone(), &mut on_event);
    }
    outcome.map(|()| d)
}

fn json_data(ev: &Event) -> Option<(Option<String>, OwnedValue)> {
    let p = ev.parse();
    let mut data = p.data?.into_bytes();
    let v = simd_json::to_owned_value(&mut data).ok()?;
    Some((p.event, v))
}

fn chat_event(ev: &Event, d: &mut Delivered) -> Result<(), &'static str> {
    let Some((_, v)) = json_data(ev) else {
        return Ok(()); // `[DONE]`, comments: nothing of the answer
    };
    let Some(choices) = v.get("choices").and_then(|c| c.as_array()) else {
        return Ok(());
    };
    if choices.len() > 1 {
        return Err("the answer has several choices");
    }
    let Some(choice) = choices.first() else {
        return Ok(()); // the usage chunk
    };
    if choice.get("index").and_then(|i| i.as_u64()).unwrap_or(0) != 0 {
        return Err("the answer has several choices");
    }
    if choice.get("finish_reason").is_some_and(|f| !f.is_null()) {
        return Err("the answer had already finished");
    }
    let Some(delta) = choice.get("delta") else {
        return Ok(());
    };
    if delta.get("tool_calls").is_some_and(|t| !t.is_null())
        || delta.get("function_call").is_some_and(|t| !t.is_null())
    {
        return Err("the answer holds a tool call");
    }
    let reasoning = ["reasoning_content", "reasoning"].iter().any(|k| {
        delta
            .get(*k)
            .and_then(|r| r.as_str())
            .is_some_and(|r| !r.is_empty())
    });
    if let Some(text) = delta.get("content").and_then(|c| c.as_str()) {
        if !text.is_empty() {
            d.text.push_str(text);
            d.tokens += 1;
            return Ok(());
        }
    }
    if reasoning {
        // Reasoning is not part of the text a prefill carries: a cut in it
        // (before any content) cannot be continued.
        if d.text.is_empty() {
            return Err("the cut fell in reasoning, before any content");
        }
        return Err("the answer went back to reasoning after its content");
    }
    Ok(())
}

fn anthropic_event(ev: &Event, d: &mut Delivered) -> Result<(), &'static str> {
    let Some((_, v)) = json_data(ev) else {
        return Ok(());
    };
    match v.get("type").and_then(|t| t.as_str()) {
        Some("content_block_start") => {
            let kind = v
                .get("content_block")
                .and_then(|b| b.get("type"))
                .and_then(|t| t.as_str());
            if kind != Some("text") {
                return Err("the answer holds a block that is not text (tool use or thinking)");
            }
            d.open_block = v.get("index").and_then(|i| i.as_u64()).or(Some(d.blocks));
            d.blocks += 1;
        }
        Some("content_block_delta") => {
            let delta = v.get("delta");
            match delta.and_then(|x| x.get("type")).and_then(|t| t.as_str()) {
                Some("text_delta") => {
                    let text = delta
                        .and_then(|x| x.get("text"))
                        .and_then(|t| t.as_str())
                        .unwrap_or_default();
                    d.text.push_str(text);
                    d.tokens += 1;
                }
                _ => return Err("the answer holds a delta that is not text"),
            }
        }
        Some("content_block_stop") => d.open_block = None,
        Some("message_delta")
            if v.get("delta")
                .and_then(|x| x.get("stop_reason"))
                .is_some_and(|s| !s.is_null()) =>
        {
            return Err("the answer had already stopped");
        }
        _ => {}
    }
    Ok(())
}

/// The continuation request: `original` with the delivered text as a
/// trailing assistant message in `mechanism`'s form. `None` when the
/// original is not a request this can extend (no `messages` array), or
/// the mechanism does not fit the dialect.
pub(crate) fn request(original: &[u8], d: &Delivered, mechanism: Mechanism) -> Option<Bytes> {
    if !mechanism.fits(d.dialect) {
        return None;
    }
    let mut copy = original.to_vec();
    let mut v = simd_json::to_owned_value(&mut copy).ok()?;
    let text = match mechanism {
        // The API refuses a prefill that ends in whitespace.
        Mechanism::AnthropicPrefill => d.text.trim_end(),
        _ => d.text.as_str(),
    };
    let obj = v.as_object_mut()?;
    if !text.is_empty() {
        let messages = obj.get_mut("messages")?.as_array_mut()?;
        let mut message = simd_json::owned::Object::default();
        message.insert("role".into(), OwnedValue::from("assistant"));
        message.insert("content".into(), OwnedValue::from(text));
        messages.push(OwnedValue::from(message));
        if mechanism == Mechanism::ContinueFinalMessage {
            obj.insert(
                "continue_final_message".into(),
                OwnedValue::Static(StaticNode::Bool(true)),
            );
            obj.insert(
                "add_generation_prompt".into(),
                OwnedValue::Static(StaticNode::Bool(false)),
            );
        }
    }
    simd_json::to_vec(&v).ok().map(Bytes::from)
}

/// What to do with one event of a continuation.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Spliced {
    Keep,
    Drop,
    /// The event, rewritten.
    Replace(Bytes),
}

/// Filters a continuation's events into the client's stream (see the
/// module documentation).
pub(crate) struct Splice {
    dialect: Dialect,
    /// Deltas delivered before the cut (usage).
    tokens: u64,
    /// Whitespace the prefill left out, not to be repeated.
    trimmed: String,
    /// Anthropic: the client's index for the continuation's block 0.
    base: u64,
    /// Anthropic: the continuation's first `content_block_start` is the
    /// open block's, already started for the client.
    skip_first_start: bool,
    first_text: bool,
}

impl Splice {
    pub(crate) fn new(d: &Delivered) -> Self {
        // Only Anthropic's prefill is trimmed (see `request`).
        let trimmed = match d.dialect {
            Dialect::Anthropic => d.text[d.text.trim_end().len()..].to_owned(),
            _ => String::new(),
        };
        Self {
            dialect: d.dialect,
            tokens: d.tokens,
            trimmed,
            base: d.open_block.unwrap_or(d.blocks),
            skip_first_start: d.open_block.is_some(),
            first_text: true,
        }
    }

    pub(crate) fn event(&mut self, ev: &Event) -> Spliced {
        match self.dialect {
            Dialect::OpenAiChat => self.chat(ev),
            Dialect::Anthropic => self.anthropic(ev),
            _ => Spliced::Keep,
        }
    }

    fn chat(&mut self, ev: &Event) -> Spliced {
        let Some((_, mut v)) = json_data(ev) else {
            return Spliced::Keep;
        };
        let mut changed = false;
        if let Some(usage) = v.get_mut("usage").and_then(|u| u.as_object_mut()) {
            let get = |u: &simd_json::owned::Object, k: &str| u.get(k).and_then(|x| x.as_u64());
            if let (Some(p), Some(c)) =
                (get(usage, "prompt_tokens"), get(usage, "completion_tokens"))
            {
                let moved = self.tokens.min(p);
                usage.insert("prompt_tokens".into(), OwnedValue::from(p - moved));
                usage.insert("completion_tokens".into(), OwnedValue::from(c + moved));
                changed = true;
            }
        }
        let delta = v
            .get_mut("choices")
            .and_then(|c| c.as_array_mut())
            .and_then(|c| c.first_mut())
            .and_then(|c| c.get_mut("delta"))
            .and_then(|d| d.as_object_mut());
        if let Some(delta) = delta {
            if delta.remove("role").is_some() {
                let empty = delta
                    .get("content")
                    .is_none_or(|c| c.as_str().is_none_or(str::is_empty))
                    && delta.keys().all(|k| k == "content" || k == "refusal");
                let finish = v
                    .get("choices")
                    .and_then(|c| c.as_array())
                    .and_then(|c| c.first())
                    .and_then(|c| c.get("finish_reason"))
                    .is_some_and(|f| !f.is_null());
                if empty && !finish && !changed {
                    return Spliced::Drop;
                }
                changed = true;
            }
        }
        if changed {
            Spliced::Replace(data_event(&v))
        } else {
            Spliced::Keep
        }
    }

    fn anthropic(&mut self, ev: &Event) -> Spliced {
        let Some((name, mut v)) = json_data(ev) else {
            return Spliced::Keep;
        };
        let kind = v.get("type").and_then(|t| t.as_str()).map(str::to_owned);
        match kind.as_deref() {
            Some("message_start") => return Spliced::Drop,
            Some("content_block_start") if self.skip_first_start => {
                self.skip_first_start = false;
                return Spliced::Drop;
            }
            Some("content_block_start" | "content_block_delta" | "content_block_stop") => {
                let index = v.get("index").and_then(|i| i.as_u64()).unwrap_or(0);
                if let Some(obj) = v.as_object_mut() {
                    obj.insert("index".into(), OwnedValue::from(index + self.base));
                }
                if kind.as_deref() == Some("content_block_delta") && self.first_text {
                    self.first_text = false;
                    self.strip_trimmed(&mut v);
                }
            }
            Some("message_delta") => {
                if let Some(usage) = v.get_mut("usage").and_then(|u| u.as_object_mut()) {
                    if let Some(out) = usage.get("output_tokens").and_then(|x| x.as_u64()) {
                        usage.insert("output_tokens".into(), OwnedValue::from(out + self.tokens));
                    }
                }
            }
            _ => return Spliced::Keep,
        }
        Spliced::Replace(named_event(name.as_deref(), &v))
    }

    /// The continuation usually starts with the whitespace the prefill had
    /// to leave out; the client has it already.
    fn strip_trimmed(&self, v: &mut OwnedValue) {
        if self.trimmed.is_empty() {
            return;
        }
        let Some(delta) = v.get_mut("delta").and_then(|d| d.as_object_mut()) else {
            return;
        };
        let Some(text) = delta.get("text").and_then(|t| t.as_str()) else {
            return;
        };
        if let Some(rest) = text.strip_prefix(self.trimmed.as_str()) {
            let rest = rest.to_owned();
            delta.insert("text".into(), OwnedValue::from(rest));
        }
    }
}

fn data_event(v: &OwnedValue) -> Bytes {
    named_event(None, v)
}

fn named_event(name: Option<&str>, v: &OwnedValue) -> Bytes {
    let json = simd_json::to_string(v).unwrap_or_default();
    let mut out = String::with_capacity(json.len() + 32);
    if let Some(name) = name {
        out.push_str("event: ");
        out.push_str(name);
        out.push('\n');
    }
    out.push_str("data: ");
    out.push_str(&json);
    out.push_str("\n\n");
    Bytes::from(out)
}

#[cfg(test)]
mod tests;
