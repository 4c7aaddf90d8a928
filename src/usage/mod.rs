//! Token usage: what each request cost, read from the upstream's own
//! reports without slowing the stream down.
//!
//! [`StreamUsage`] follows one event stream, [`from_body`] reads a complete
//! JSON answer, and [`request_info`] / [`inject_include_usage`] read and
//! adjust the client's request (a chat stream reports usage only when asked
//! to).
//!
//! # Which frames carry usage
//!
//! - **OpenAI chat/completions**: only with `stream_options.include_usage`,
//!   in one last chunk before `[DONE]` that has `"choices": []` and a
//!   `usage` object (`prompt_tokens`, `completion_tokens`,
//!   `prompt_tokens_details.cached_tokens`,
//!   `completion_tokens_details.reasoning_tokens`). Every other chunk says
//!   `"usage":null` or has no `usage` key. Some OpenAI-compatible servers
//!   (vLLM) put the usage on the last chunk that still has choices; that
//!   chunk counts but is not a usage-only chunk ([`Seen::UsageOnlyChunk`]),
//!   so a relay that asked for usage on the client's behalf removes only the
//!   latter.
//! - **OpenAI Responses**: the terminal `response.completed`,
//!   `response.incomplete` and `response.failed` events carry
//!   `response.usage` (`input_tokens`, `input_tokens_details.cached_tokens`,
//!   `output_tokens`, `output_tokens_details.reasoning_tokens`) and
//!   `response.model`.
//! - **Anthropic messages**: `message_start` carries `message.usage`
//!   (`input_tokens`, `cache_creation_input_tokens`,
//!   `cache_read_input_tokens`, `output_tokens`) and `message.model`; each
//!   `message_delta` carries `usage.output_tokens`, which is **cumulative**:
//!   it replaces the count, never adds to it. Newer API versions repeat the
//!   input and cache counts there; those replace too.
//! - **Generic**: nothing is parsed.
//!
//! # The cost rule
//!
//! Select candidates cheaply with memmem, parse only those with simd-json.
//! A stream is hundreds of token events and a handful of usage frames, so
//! every event gets one [`Event::contains`](crate::sse::Event::contains)
//! test per marker (`"usage":{`, an event name) and only the few that match
//! are copied and parsed. The chat marker deliberately misses
//! `"usage":null`, so ordinary token chunks are never parsed. A false
//! candidate (the marker inside some text) only costs one parse: the parsed
//! `type` or `usage` value decides. Events arrive complete (the scanner
//! joins events split across chunks), so a marker split by TCP is found.
//!
//! Request bodies follow the same rule: they are parsed only when they
//! contain `"stream"` or `"model"`, and the include-usage rewrite splices
//! bytes into the client's JSON instead of re-serialising it.

mod body;
mod json;
#[cfg(feature = "internals")]
pub mod oracle;
mod request;
mod stream;
mod walk;

#[cfg(test)]
mod tests;

pub(crate) use body::from_body;
#[cfg(test)]
pub(crate) use request::RequestInfo;
pub(crate) use request::{inject_include_usage, request_info, rewrite_model};
pub use stream::{Seen, StreamUsage};

/// Token counts one request used; None = the upstream did not report that
/// kind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Prompt / input tokens (OpenAI counts cached ones in here too;
    /// Anthropic does not).
    pub input: Option<u64>,
    /// Completion / output tokens (reasoning tokens included).
    pub output: Option<u64>,
    /// Input tokens served from the prompt cache.
    pub cache_read: Option<u64>,
    /// Input tokens written to the prompt cache (Anthropic).
    pub cache_write: Option<u64>,
    /// Output tokens spent on reasoning (OpenAI).
    pub reasoning: Option<u64>,
}

impl Usage {
    /// The counts of two reports added (a count missing from both stays
    /// missing).
    pub(crate) fn plus(self, other: Usage) -> Usage {
        let add = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        };
        Usage {
            input: add(self.input, other.input),
            output: add(self.output, other.output),
            cache_read: add(self.cache_read, other.cache_read),
            cache_write: add(self.cache_write, other.cache_write),
            reasoning: add(self.reasoning, other.reasoning),
        }
    }

    /// Each count from `self`, or from `other` where `self` has none.
    fn or(self, other: Usage) -> Usage {
        Usage {
            input: self.input.or(other.input),
            output: self.output.or(other.output),
            cache_read: self.cache_read.or(other.cache_read),
            cache_write: self.cache_write.or(other.cache_write),
            reasoning: self.reasoning.or(other.reasoning),
        }
    }
}
