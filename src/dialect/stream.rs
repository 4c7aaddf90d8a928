//! What a dialect's streams look like: keepalive frames and terminal
//! events.
//!
//! Terminal events tell a complete stream from one the upstream cut short:
//! OpenAI chat ends with `data: [DONE]`; the Responses API with
//! `response.completed`, `response.incomplete` or `response.failed`;
//! Anthropic with `message_stop`. An upstream `error` event also ends a
//! stream (the client has been told). Generic streams have no known end.
//! A stream that closes without its terminal event is still complete when
//! the answer's own signal says so ([`Finish`]: every OpenAI chat choice
//! has its `finish_reason`, an Anthropic `message_delta` its
//! `stop_reason`); the relay then adds the terminal event clients wait for
//! ([`sentinel`]).
//!
//! Every upstream event is classified, so the common case has to be cheap:
//! one pass over the event finds its line ends, and each line is judged by
//! its field name and the first bytes of its value (see [`any_line`]). Only
//! the rare events with a line that could make the parse see an ending are
//! parsed; [`Event::parse`] then decides.

use std::sync::LazyLock;

use memchr::memmem::Finder;

use super::Dialect;
use crate::sse::{Event, Keepalive};

pub(crate) use finish::{ChatAsk, Finish, sentinel};

mod finish;
#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;

/// The dialect's keepalive frames: Anthropic's own `ping` event at event
/// boundaries, a comment plus blank line for the others; a bare comment
/// line inside events for all.
pub(crate) fn keepalive(dialect: Dialect) -> Keepalive {
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
        Dialect::OpenAiResponses => named_ending(event, b"response.", RESPONSES_END_RESTS),
        Dialect::Anthropic => named_ending(event, b"message_stop", &[b""]),
        Dialect::Generic => Ending::None,
    }
}

/// `response.completed`, `response.incomplete`, `response.failed`.
const RESPONSES_END_RESTS: &[&[u8]] = &[b"completed", b"incomplete", b"failed"];

/// Searchers built once (see [`chat_ending`] for the rare events that
/// still need them).
static DONE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"[DONE]"));
static QUOTED_ERROR: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"error\""));

/// `data: [DONE]` is Complete; data that starts (after whitespace) with
/// `{"error"` is Error; so is an `event: error` with data, but only when
/// `[DONE]` or `"error"` occurs somewhere in the raw event.
///
/// That last condition comes from the pre-filter this function had before
/// the line-start one: an event was parsed only when one of those two
/// substrings occurred anywhere in it (a comment and the bytes after the
/// blank line included). It is kept so that the result stays the same for
/// every input; such events are rare, and only they pay for the searches.
fn chat_ending(event: &Event) -> Ending {
    if !any_line(event, chat_line) {
        return Ending::None;
    }
    let parsed = event.parse();
    let Some(data) = parsed.data.as_deref() else {
        return Ending::None;
    };
    if data == "[DONE]" {
        Ending::Complete
    } else if data.trim_start().starts_with("{\"error\"")
        || (parsed.event.as_deref() == Some("error")
            && (event.contains_with(&DONE) || event.contains_with(&QUOTED_ERROR)))
    {
        Ending::Error
    } else {
        Ending::None
    }
}

/// True for every line that can make [`chat_ending`] classify the parse
/// of its event as an ending (and for a few more):
///
/// - `data == "[DONE]"`: data from two or more lines holds an LF, so this
///   is one `data` line whose value is exactly `[DONE]` (lossy decoding
///   turns invalid bytes into U+FFFD, never into ASCII).
/// - `data.trim_start()` starting with `{"error"`: that text holds no LF,
///   so it lies in one `data` value, after nothing but whitespace there
///   (and in the data lines before it). `str::trim_start` removes Unicode
///   `White_Space`: the ASCII ones (tab, LF, VT, FF, CR, space) are bytes
///   up to 0x20, and every byte of the others' UTF-8 form is 0x80 or above. An invalid byte decodes to
///   U+FFFD, which is not whitespace and ends the trim. So skipping the
///   value's leading bytes up to 0x20 or from 0x80 stops at that `{`.
/// - `event == "error"`: an `event` line whose value is exactly `error`.
fn chat_line(line: &[u8]) -> bool {
    if let Some(value) = field_value(line, b"data") {
        value == b"[DONE]" || skip_blank(value).starts_with(b"{\"error\"")
    } else {
        field_value(line, b"event") == Some(b"error")
    }
}

/// The terminal event names are `prefix` followed by one of `rests`.
///
/// The parse's event type is the value of the last `event` line before
/// the blank line (none if that value is empty). For it to be `error` or a
/// terminal name, which are ASCII (so not the product of lossy decoding),
/// that line must carry exactly that value, and [`any_line`] sees it.
fn named_ending(event: &Event, prefix: &[u8], rests: &[&[u8]]) -> Ending {
    let terminal = |name: &[u8]| {
        name.strip_prefix(prefix)
            .is_some_and(|rest| rests.contains(&rest))
    };
    let candidate = any_line(event, |line| {
        field_value(line, b"event").is_some_and(|name| name == b"error" || terminal(name))
    });
    if !candidate {
        return Ending::None;
    }
    match event.parse().event.as_deref() {
        Some("error") => Ending::Error,
        Some(name) if terminal(name.as_bytes()) => Ending::Complete,
        _ => Ending::None,
    }
}

/// True if `pred` holds for some non-empty line of the event's raw bytes.
///
/// The lines tried are the non-empty spans that start at the beginning or
/// right after a CR or LF and run to the next CR or LF (or the end). Every
/// line [`Event::parse`] acts on is one of them, byte for byte: it splits
/// at CRLF, LF or a lone CR and stops at the first blank line, and an
/// empty line sets no field. Treating CR and LF alike only adds empty
/// spans (inside a CRLF), and reading past the blank line only adds lines;
/// neither can hide one. So when `pred` holds for every line that can make
/// the parse an ending, this is a superset filter.
///
/// One `memchr2` per non-empty line, from its start to its end: every byte
/// is looked at once. An event split across chunks (rare) is joined first,
/// so lines that straddle a chunk boundary are seen whole.
fn any_line(event: &Event, pred: impl Fn(&[u8]) -> bool) -> bool {
    match event.segments() {
        [one] => any_line_in(one, pred),
        many => any_line_in(&many.concat(), pred),
    }
}

fn any_line_in(raw: &[u8], pred: impl Fn(&[u8]) -> bool) -> bool {
    let mut rest = raw;
    loop {
        // Line ends in a row: empty lines, no search needed. (After the
        // usual one-line event, this is its blank line and the end.)
        let Some(start) = rest.iter().position(|&b| b != b'\n' && b != b'\r') else {
            return false;
        };
        rest = &rest[start..];
        match memchr::memchr2(b'\n', b'\r', rest) {
            Some(end) if pred(&rest[..end]) => return true,
            Some(end) => rest = &rest[end + 1..],
            None => return pred(rest),
        }
    }
}

/// The value of `line` if it is a `name` field, as [`Event::parse`] reads
/// it: the name runs to the first `:` (a line without one is a field with
/// an empty value) and one leading space of the value is dropped. `name`
/// holds no `:`, so the first `:` is the one right after it.
fn field_value<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    match line.strip_prefix(name)?.split_first() {
        None => Some(&[]),
        Some((b':', value)) => Some(value.strip_prefix(b" ").unwrap_or(value)),
        Some(_) => None,
    }
}

/// `bytes` without its leading bytes up to 0x20 or from 0x80: at least
/// what `str::trim_start` removes (see [`chat_line`]).
fn skip_blank(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| b > b' ' && b < 0x80)
        .unwrap_or(bytes.len());
    &bytes[start..]
}
