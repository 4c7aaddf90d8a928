//! The dialect's own signal that an answer is complete, for upstreams that
//! close a stream without its terminal event.
//!
//! Self-hosted OpenAI-compatible servers (and proxies in front of any
//! upstream) sometimes close a finished stream without `data: [DONE]`;
//! `message_stop` can go missing the same way. Calling such a stream cut
//! turns a complete answer into a failure, so the answer's own signal
//! decides:
//!
//! - **OpenAI chat**: every choice reported a `finish_reason` (a non-empty
//!   string), and the usage chunk arrived if the request asked for one
//!   ([`ChatAsk`]). The choices are `0..n` (`n` from the request, 1 when
//!   absent) and every index a parsed chunk names. The chunks of an
//!   unfinished choice are never parsed, so their index is not known: their
//!   bytes do not tell it reliably (a `tool_calls` delta carries `"index"`
//!   keys of its own, and servers that sort keys write `delta` before
//!   `index`). The request's `n` says which choices exist instead.
//! - **Anthropic**: a `message_delta` whose `delta.stop_reason` is a
//!   non-empty string (the event that comes right before `message_stop`).
//! - **Responses**: no signal beyond the terminal events themselves
//!   (`response.completed`, `response.incomplete`, `response.failed`).
//! - **Generic**: none (a generic stream has no known end at all).
//!
//! The cost rule of the module above holds. A chat event costs one memmem
//! search for `"finish_reason":` and a look at the bytes after each hit:
//! every chunk says `"finish_reason":null` until its choice ends, so only
//! the few chunks with another value (one per choice) are parsed. The
//! marker misses `"finish_reason" :` (a space before the colon) and escaped
//! key spellings; such a stream is then never complete by its signal, which
//! is what it was before. An Anthropic event costs one line-start pass
//! ([`any_line`]) for `event: message_delta`; only those events (one per
//! answer) are parsed.

use std::sync::LazyLock;

use memchr::memmem::Finder;
use simd_json::prelude::*;

use super::{Dialect, Event, any_line, field_value};

/// What an OpenAI chat request says about the end of its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChatAsk {
    /// How many choices the answer holds (the request's `n`).
    pub choices: u64,
    /// A usage chunk was asked for, by the client or by the relay.
    pub usage: bool,
}

/// One stream followed towards its dialect's signal.
#[derive(Debug)]
pub(crate) enum Finish {
    /// No signal: Responses, generic, or a chat request the relay did not
    /// read.
    Never,
    Chat(Chat),
    /// Anthropic: whether a `message_delta` gave a stop reason.
    Anthropic {
        stopped: bool,
    },
}

/// An OpenAI chat stream's choices and usage.
#[derive(Debug)]
pub(crate) struct Chat {
    /// Choices `0..known` exist (the request's `n`, raised by the indexes
    /// parsed chunks name).
    known: u64,
    /// The indexes whose `finish_reason` arrived: sorted, unique, each
    /// below `known`.
    finished: Vec<u64>,
    usage_asked: bool,
    usage_seen: bool,
}

/// `data: [DONE]`, which OpenAI chat clients wait for.
const CHAT_DONE: &[u8] = b"data: [DONE]\n\n";

/// The terminal event the relay adds when the dialect's signal ended a
/// stream whose clients wait for one: `data: [DONE]` for OpenAI chat, none
/// for the others (Anthropic's SDKs finish without `message_stop`).
pub(crate) fn sentinel(dialect: Dialect) -> Option<&'static [u8]> {
    match dialect {
        Dialect::OpenAiChat => Some(CHAT_DONE),
        _ => None,
    }
}

impl Finish {
    /// `ask` is what an OpenAI chat request said (None: not read).
    pub(crate) fn new(dialect: Dialect, ask: Option<ChatAsk>) -> Self {
        match (dialect, ask) {
            (Dialect::OpenAiChat, Some(ask)) => Finish::Chat(Chat {
                known: ask.choices.max(1),
                finished: Vec::new(),
                usage_asked: ask.usage,
                usage_seen: false,
            }),
            (Dialect::Anthropic, _) => Finish::Anthropic { stopped: false },
            _ => Finish::Never,
        }
    }

    /// Looks at one complete upstream event.
    pub(crate) fn on_event(&mut self, event: &Event) {
        match self {
            Finish::Never => {}
            Finish::Chat(chat) => {
                // One choice: a chunk has one `finish_reason` key, so the
                // first hit decides (no second search per chunk).
                if has_finish_reason(event, chat.known > 1) {
                    chat.read(event);
                }
            }
            Finish::Anthropic { stopped } => {
                if !*stopped {
                    *stopped = anthropic_stop(event);
                }
            }
        }
    }

    /// A usage-carrying event arrived (OpenAI chat: the usage chunk, or a
    /// chunk with choices that also carries usage).
    pub(crate) fn usage_arrived(&mut self) {
        if let Finish::Chat(chat) = self {
            chat.usage_seen = true;
        }
    }

    /// The signal says the answer is complete.
    pub(crate) fn is_complete(&self) -> bool {
        match self {
            Finish::Never => false,
            Finish::Chat(chat) => chat.is_complete(),
            Finish::Anthropic { stopped } => *stopped,
        }
    }
}

impl Chat {
    /// Every known choice finished (at least one is known), and the usage
    /// arrived if it was asked for.
    fn is_complete(&self) -> bool {
        debug_assert!(self.finished.iter().all(|&i| i < self.known));
        self.finished.len() as u64 == self.known && (self.usage_seen || !self.usage_asked)
    }

    /// Records the choices of a chunk with a non-null `finish_reason`.
    fn read(&mut self, event: &Event) {
        let Some(data) = event.parse().data else {
            return;
        };
        let mut bytes = data.into_bytes();
        let Ok(chunk) = simd_json::to_borrowed_value(&mut bytes) else {
            return;
        };
        let Some(choices) = chunk.get("choices").and_then(|c| c.as_array()) else {
            return;
        };
        for (at, choice) in choices.iter().enumerate() {
            let index = choice
                .get("index")
                .and_then(|i| i.as_u64())
                .unwrap_or(at as u64);
            let Some(next) = index.checked_add(1) else {
                self.known = u64::MAX; // never all finished
                continue;
            };
            self.known = self.known.max(next);
            let reason = choice.get("finish_reason").and_then(|r| r.as_str());
            if reason.is_some_and(|r| !r.is_empty()) {
                if let Err(slot) = self.finished.binary_search(&index) {
                    self.finished.insert(slot, index);
                }
            }
        }
    }
}

/// Built once (building a searcher costs more than searching a chunk).
static FINISH_REASON: LazyLock<Finder<'static>> =
    LazyLock::new(|| Finder::new(b"\"finish_reason\":"));

/// True if `"finish_reason":` occurs with a value other than `null` after
/// it (JSON whitespace skipped). Inside a JSON string the quotes would be
/// escaped, so every hit is a key.
/// `every`: look at every occurrence (several choices), not only the first.
fn has_finish_reason(event: &Event, every: bool) -> bool {
    match event.segments() {
        [one] => non_null_in(one, every),
        // Split across chunks (rare): search a joined copy.
        many => non_null_in(&many.concat(), every),
    }
}

fn non_null_in(hay: &[u8], every: bool) -> bool {
    let n = FINISH_REASON.needle().len();
    let non_null = |at: usize| {
        let value = &hay[at + n..];
        let start = value
            .iter()
            .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            .unwrap_or(value.len());
        !value[start..].starts_with(b"null")
    };
    if every {
        FINISH_REASON.find_iter(hay).any(non_null)
    } else {
        FINISH_REASON.find(hay).is_some_and(non_null)
    }
}

/// An Anthropic `message_delta` event whose `delta.stop_reason` is a
/// non-empty string. The parse's event type is the last `event` line's
/// value, so an event with no `event: message_delta` line is never one.
fn anthropic_stop(event: &Event) -> bool {
    let named = |line: &[u8]| field_value(line, b"event") == Some(b"message_delta".as_slice());
    if !any_line(event, named) {
        return false;
    }
    let parsed = event.parse();
    if parsed.event.as_deref() != Some("message_delta") {
        return false;
    }
    let Some(data) = parsed.data else {
        return false;
    };
    let mut bytes = data.into_bytes();
    let Ok(value) = simd_json::to_borrowed_value(&mut bytes) else {
        return false;
    };
    value
        .get("delta")
        .and_then(|d| d.get("stop_reason"))
        .and_then(|r| r.as_str())
        .is_some_and(|r| !r.is_empty())
}

#[cfg(test)]
mod tests;
