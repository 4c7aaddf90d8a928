//! The pre-filter `ending` had before it looked at line starts, kept
//! verbatim as the oracle that the new one must match on every input: two
//! (chat) or up to two (named) substring searches over the whole raw event,
//! then the same parse-and-classify step.
//!
//! Shared by the unit tests (`dialect::stream::tests`), the `ending` bench
//! and the `ending` fuzz target through `#[path]`; each includer provides
//! `Dialect`, `Ending` and `Event` in the parent module.

use std::sync::LazyLock;

use memchr::memmem::Finder;

use super::{Dialect, Ending, Event};

/// Classifies one complete upstream event (the old way).
pub(crate) fn ending(dialect: Dialect, event: &Event) -> Ending {
    match dialect {
        Dialect::OpenAiChat => chat_ending(event),
        Dialect::OpenAiResponses => named_ending(event, &RESPONSES_END, RESPONSES_END_RESTS),
        Dialect::Anthropic => named_ending(event, &MESSAGE_STOP, &[b""]),
        Dialect::Generic => Ending::None,
    }
}

static DONE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"[DONE]"));
static QUOTED_ERROR: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"error\""));
static ERROR: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"error"));
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
