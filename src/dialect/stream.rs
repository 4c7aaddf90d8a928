//! What a dialect's streams look like: keepalive frames and terminal
//! events.
//!
//! Terminal events tell a complete stream from one the upstream cut short:
//! OpenAI chat ends with `data: [DONE]`; the Responses API with
//! `response.completed`, `response.incomplete` or `response.failed`;
//! Anthropic with `message_stop`. An upstream `error` event also ends a
//! stream (the client has been told). Generic streams have no known end.
//!
//! Each event is first tested with a substring search over its raw bytes;
//! only the rare candidates are parsed.

use std::sync::LazyLock;

use memchr::memmem::Finder;

use super::Dialect;
use crate::sse::{Event, Keepalive};

/// The dialect's keepalive frames: Anthropic's own `ping` event at event
/// boundaries, a comment plus blank line for the others; a bare comment
/// line inside events for all.
pub fn keepalive(dialect: Dialect) -> Keepalive {
    match dialect {
        Dialect::Anthropic => Keepalive::anthropic_ping(),
        _ => Keepalive::comment(),
    }
}

/// How a complete upstream event bears on the stream's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Not an ending.
    None,
    /// The dialect's normal last event.
    Complete,
    /// The upstream reported an error in-band.
    Error,
}

/// Classifies one complete upstream event.
pub fn ending(dialect: Dialect, event: &Event) -> Ending {
    match dialect {
        Dialect::OpenAiChat => chat_ending(event),
        Dialect::OpenAiResponses => named_ending(event, &RESPONSES_END, RESPONSES_END_RESTS),
        Dialect::Anthropic => named_ending(event, &MESSAGE_STOP, &[b""]),
        Dialect::Generic => Ending::None,
    }
}

/// Searchers built once: every event of a stream is tested with them.
static DONE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"[DONE]"));
static QUOTED_ERROR: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"error\""));
static ERROR: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"error"));
/// `response.completed`, `response.incomplete`, `response.failed`: one
/// search for the shared prefix.
static RESPONSES_END: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"response."));
const RESPONSES_END_RESTS: &[&[u8]] = &[b"completed", b"incomplete", b"failed"];
static MESSAGE_STOP: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"message_stop"));

fn chat_ending(event: &Event) -> Ending {
    let done = event.contains_with(&DONE);
    if !done && !event.contains_with(&QUOTED_ERROR) {
        return Ending::None;
    }
    let parsed = event.parse();
    let Some(data) = parsed.data.as_deref() else {
        return Ending::None;
    };
    if data == "[DONE]" {
        Ending::Complete
    } else if data.trim_start().starts_with("{\"error\"")
        || parsed.event.as_deref() == Some("error")
    {
        Ending::Error
    } else {
        Ending::None
    }
}

/// The terminal event names are `prefix` followed by one of `rests`.
fn named_ending(event: &Event, prefix: &Finder<'static>, rests: &[&[u8]]) -> Ending {
    let candidate = event.contains_with(&ERROR) || event.contains_prefixed(prefix, rests);
    if !candidate {
        return Ending::None;
    }
    let terminal = |name: &str| {
        name.as_bytes()
            .strip_prefix(prefix.needle())
            .is_some_and(|rest| rests.contains(&rest))
    };
    match event.parse().event.as_deref() {
        Some("error") => Ending::Error,
        Some(name) if terminal(name) => Ending::Complete,
        _ => Ending::None,
    }
}
