//! Usage of one event stream, from the few events that carry it.
//!
//! Every event costs one memmem search: its dialect's markers share a
//! prefix (`"usage":`, `response.`, `message_`), searched for with a
//! searcher built once per process, and each hit's next bytes are compared
//! with the markers' rests. Only candidates are copied and parsed. The chat markers are `"usage":{` and `"usage": {`,
//! the spellings OpenAI and the compatible servers send; a server writing
//! `"usage" : {` would go uncounted, never misparsed. What a parsed event's JSON says then
//! decides: a candidate whose `type` or `usage` is not what the dialect's
//! usage frame has is [`Seen::Other`] and changes nothing.

use std::sync::LazyLock;

use memchr::memmem::Finder;
use simd_json::prelude::*;

use super::Usage;
use super::body::{anthropic_usage, chat_usage, model_of, responses_usage};
use super::json::{self, Json};
use crate::dialect::Dialect;
use crate::sse::Event;

/// The Responses events that carry `response.usage`.
const RESPONSES_TERMINAL: [&str; 3] = [
    "response.completed",
    "response.incomplete",
    "response.failed",
];

/// The candidate markers per dialect: a prefix, searched for once per event
/// (searcher built once per process), and what may follow it.
#[derive(Debug)]
struct Markers {
    prefix: LazyLock<Finder<'static>>,
    rests: &'static [&'static [u8]],
}

static CHAT_MARKERS: Markers = Markers {
    prefix: LazyLock::new(|| Finder::new(b"\"usage\":")),
    rests: &[b"{", b" {"],
};
static RESPONSES_MARKERS: Markers = Markers {
    prefix: LazyLock::new(|| Finder::new(b"response.")),
    rests: &[b"completed", b"incomplete", b"failed"],
};
static ANTHROPIC_MARKERS: Markers = Markers {
    prefix: LazyLock::new(|| Finder::new(b"message_")),
    rests: &[b"start", b"delta"],
};

#[cfg(test)]
thread_local! {
    /// How many events this thread's trackers parsed (tests prove that
    /// non-candidates never are).
    pub(super) static PARSES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Follows one event stream's usage.
#[derive(Debug, Clone)]
pub struct StreamUsage {
    dialect: Dialect,
    markers: Option<&'static Markers>,
    usage: Option<Usage>,
    model: Option<String>,
}

/// What the tracker made of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// No usage in it (most events; never parsed).
    Other,
    /// It carried usage, now recorded.
    Usage,
    /// OpenAI chat: the usage-only final chunk (`"choices": []` with a
    /// `usage` object) — a relay that injected include_usage removes it
    /// from the client's stream.
    UsageOnlyChunk,
}

impl StreamUsage {
    pub fn new(dialect: Dialect) -> Self {
        StreamUsage {
            dialect,
            markers: markers(dialect),
            usage: None,
            model: None,
        }
    }

    /// Looks at one complete event; parses only candidate events (cheap
    /// memmem test first).
    pub fn on_event(&mut self, event: &Event) -> Seen {
        if !matches(self.markers, event) {
            return Seen::Other;
        }
        let Some(data) = event.parse().data else {
            return Seen::Other;
        };
        #[cfg(test)]
        PARSES.with(|p| p.set(p.get() + 1));
        let dialect = self.dialect;
        json::read(data.as_bytes(), |value| match dialect {
            Dialect::OpenAiChat => self.chat(value),
            Dialect::OpenAiResponses => self.responses(value),
            Dialect::Anthropic => self.anthropic(value),
            Dialect::Generic => Seen::Other,
        })
        .unwrap_or(Seen::Other)
    }

    /// None until a usage-carrying frame was seen.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// The model the stream reported (chat: the usage chunk's, else the
    /// first candidate's; Responses: `response.model`; Anthropic:
    /// `message_start.message.model`). Only read from frames parsed anyway.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// A chat chunk: usage replaces any earlier report (servers that send
    /// usage on every chunk send running totals).
    fn chat(&mut self, chunk: Json<'_, '_>) -> Seen {
        let model = model_of(chunk);
        let Some(u) = chunk.get("usage").filter(Json::is_object) else {
            if self.model.is_none() {
                self.model = model;
            }
            return Seen::Other;
        };
        self.usage = Some(chat_usage(u));
        if model.is_some() {
            self.model = model;
        }
        let no_choices = chunk
            .get("choices")
            .and_then(|c| c.as_array())
            .is_some_and(|c| c.is_empty());
        if no_choices {
            Seen::UsageOnlyChunk
        } else {
            Seen::Usage
        }
    }

    /// A terminal Responses event: `response.usage`, `response.model`.
    fn responses(&mut self, event: Json<'_, '_>) -> Seen {
        let terminal = event
            .get("type")
            .is_some_and(|t| t.as_str().is_some_and(|t| RESPONSES_TERMINAL.contains(&t)));
        let Some(response) = event.get("response").filter(|_| terminal) else {
            return Seen::Other;
        };
        if let Some(m) = model_of(response) {
            self.model = Some(m);
        }
        match response.get("usage").filter(Json::is_object) {
            Some(u) => {
                self.usage = Some(responses_usage(u));
                Seen::Usage
            }
            None => Seen::Other,
        }
    }

    /// `message_start` sets everything; `message_delta` replaces the counts
    /// it carries (cumulative, never added).
    fn anthropic(&mut self, event: Json<'_, '_>) -> Seen {
        let kind = event.get("type");
        match kind.as_ref().and_then(|t| t.as_str()) {
            Some("message_start") => {
                let Some(message) = event.get("message") else {
                    return Seen::Other;
                };
                if let Some(m) = model_of(message) {
                    self.model = Some(m);
                }
                self.replace_anthropic(message.get("usage"))
            }
            Some("message_delta") => self.replace_anthropic(event.get("usage")),
            _ => Seen::Other,
        }
    }

    fn replace_anthropic(&mut self, usage: Option<Json<'_, '_>>) -> Seen {
        let Some(u) = usage.filter(Json::is_object) else {
            return Seen::Other;
        };
        let before = self.usage.unwrap_or_default();
        self.usage = Some(anthropic_usage(u).or(before));
        Seen::Usage
    }
}

fn markers(dialect: Dialect) -> Option<&'static Markers> {
    match dialect {
        Dialect::OpenAiChat => Some(&CHAT_MARKERS),
        Dialect::OpenAiResponses => Some(&RESPONSES_MARKERS),
        Dialect::Anthropic => Some(&ANTHROPIC_MARKERS),
        Dialect::Generic => None,
    }
}

/// The cheap test: might this event carry usage for `dialect`? Chat looks
/// for a `usage` key followed by an object, so `"usage":null` chunks never
/// match.
#[cfg(test)]
pub(super) fn is_candidate(dialect: Dialect, event: &Event) -> bool {
    matches(markers(dialect), event)
}

/// True if one of `markers`' needles occurs in the event (matches across
/// segments included).
fn matches(markers: Option<&Markers>, event: &Event) -> bool {
    markers.is_some_and(|m| event.contains_prefixed(&m.prefix, m.rests))
}
