//! The client's JSON request: what the relay reads from it, and the one
//! change it may make (asking a chat stream to report usage).
//!
//! The relay needs four top-level keys (`stream`, `model`, `n`,
//! `stream_options`) of bodies that carry long prompts, so it never parses
//! the whole body: a small structural walker (strings with escapes,
//! nesting; the string scans are `memchr`) finds the top-level members'
//! byte ranges, and simd-json reads only the values it needs. What lies
//! inside the other members (the messages) is not validated here: the
//! upstream judges it, as it does anyway. A body whose top level is not
//! one well-formed object reads as no keys at all. A key spelled with
//! escapes (`"str\u0065am"`) is not compared raw: such a body gets the full
//! simd-json parse, so it reads as it always did.
//!
//! The include-usage rewrite never re-serialises: the new bytes are
//! spliced in at the members' ranges, so every other byte the client sent
//! goes upstream unchanged.

use std::ops::Range;
use std::sync::LazyLock;

use bytes::Bytes;
use memchr::memmem::{Finder, FinderRev};
use simd_json::prelude::*;

use super::body::model_of;
use super::json::{self, Json};
use super::walk::{self, Member, Top, last, members, skip_ws, top_level};

/// What the relay needs from a JSON request body, from one parse (only
/// when the body contains `"stream"` or `"model"`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct RequestInfo {
    /// `"stream": true` at the top level.
    pub stream: bool,
    /// The top-level `model` string.
    pub model: Option<String>,
    /// `stream_options.include_usage` as sent (None = absent)
    pub include_usage: Option<bool>,
    /// The top-level `n` (how many choices an OpenAI answer holds) as
    /// sent, when an unsigned integer (None = absent, or anything else).
    pub n: Option<u64>,
}

/// Searchers built once: building one costs more than searching a small
/// body with it.
static STREAM_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"stream\""));
static MODEL_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"model\""));
static STREAM_KEY_REV: LazyLock<FinderRev<'static>> =
    LazyLock::new(|| FinderRev::new(b"\"stream\""));
static MODEL_KEY_REV: LazyLock<FinderRev<'static>> = LazyLock::new(|| FinderRev::new(b"\"model\""));

/// How much of a body's start is searched forwards before the rest is
/// searched from its end.
const HEAD: usize = 4096;

/// Whether `"stream"` or `"model"` occurs anywhere in `body`. Clients send
/// them before the messages (most examples, curl) or after them (OpenAI's
/// Python SDK), so the start is searched first and then the whole body
/// from its end: a long prompt is crossed only when neither key is there.
pub(super) fn names_a_key(body: &[u8]) -> bool {
    let head = &body[..body.len().min(HEAD)];
    STREAM_KEY.find(head).is_some()
        || MODEL_KEY.find(head).is_some()
        || (body.len() > HEAD
            && (STREAM_KEY_REV.rfind(body).is_some() || MODEL_KEY_REV.rfind(body).is_some()))
}

/// Reads the top-level `stream`, `model`, `n` and
/// `stream_options.include_usage` keys; a body whose top level is not a
/// JSON object gives the default. With duplicate keys the last one counts.
pub(crate) fn request_info(body: &[u8]) -> RequestInfo {
    if !names_a_key(body) {
        return RequestInfo::default();
    }
    let Some(top) = top_level(body) else {
        return RequestInfo::default();
    };
    if top.escaped {
        return parsed_info(body);
    }
    let value = |name: &[u8]| last(body, &top.members, name).map(|m| &body[m.value.clone()]);
    RequestInfo {
        stream: value(b"stream") == Some(b"true"),
        model: value(b"model").and_then(walk::string),
        include_usage: value(b"stream_options").and_then(include_usage_in),
        n: value(b"n").and_then(|v| json::read(v, |v| v.as_u64())?),
    }
}

/// [`request_info`] by a full parse (keys spelled with escapes).
pub(super) fn parsed_info(body: &[u8]) -> RequestInfo {
    json::read(body, |value| {
        if !value.is_object() {
            return RequestInfo::default();
        }
        RequestInfo {
            stream: value.get("stream").and_then(|s| s.as_bool()) == Some(true),
            model: model_of(value),
            include_usage: options(value)
                .and_then(|o| o.get("include_usage"))
                .and_then(|i| i.as_bool()),
            n: value.get("n").and_then(|n| n.as_u64()),
        }
    })
    .unwrap_or_default()
}

/// `include_usage` of a `stream_options` value, when a boolean.
fn include_usage_in(options: &[u8]) -> Option<bool> {
    json::read(options, |o| {
        o.get("include_usage").and_then(|i| i.as_bool())
    })?
}

fn options<'t, 'i>(value: Json<'t, 'i>) -> Option<Json<'t, 'i>> {
    value.get("stream_options")
}

/// What the rewrite needs to know of `stream_options`.
struct Parsed {
    has_options: bool,
    has_include_key: bool,
}

/// None when the body is not a JSON object, has keys spelled with escapes,
/// or already asks for usage.
fn check(body: &[u8], top: &Top) -> Option<Parsed> {
    if top.escaped {
        return None;
    }
    let Some(opts) = last(body, &top.members, b"stream_options") else {
        return Some(Parsed {
            has_options: false,
            has_include_key: false,
        });
    };
    let include = json::read(&body[opts.value.clone()], |o| {
        o.get("include_usage").map(|i| i.as_bool())
    })?;
    if include == Some(Some(true)) {
        return None;
    }
    Some(Parsed {
        has_options: true,
        has_include_key: include.is_some(),
    })
}

/// Returns the body with `stream_options.include_usage` set to true, by
/// splicing bytes (never re-serialising the JSON): inserts
/// `"stream_options":{"include_usage":true}` as the first top-level member
/// when absent, inserts `"include_usage":true` as the first member of an
/// existing `stream_options` object, replaces an existing non-true
/// `include_usage` value, or replaces `"stream_options":null`. None when the
/// body is not a JSON object, include_usage is already true, or
/// `stream_options` is neither an object nor null. With duplicate keys the
/// last one is edited.
pub(crate) fn inject_include_usage(body: &[u8]) -> Option<Bytes> {
    let top = top_level(body)?;
    let parsed = check(body, &top)?;
    let open = top.open;
    let Some(opts) = last(body, &top.members, b"stream_options") else {
        if parsed.has_options {
            return None;
        }
        let at = open + 1;
        let sep = separator(&top.members);
        return Some(splice(body, at..at, &[OPTIONS_MEMBER, sep]));
    };
    match body.get(opts.value.start) {
        Some(b'n') => Some(splice(body, opts.value.clone(), &[OPTIONS_VALUE])),
        Some(b'{') => into_options(body, opts.value.start, &parsed),
        _ => None,
    }
}

/// `body` with its top-level `model` set to `model` (every `model` member
/// replaced, or one added first when there is none), every other byte
/// unchanged; `None` when `body` is not a JSON object or already names
/// `model` alone.
pub(crate) fn rewrite_model(body: &[u8], model: &str) -> Option<Bytes> {
    let open = skip_ws(body, 0);
    let top = members(body, open)?;
    let mut quoted = String::with_capacity(model.len() + 2);
    quoted.push('"');
    crate::json::escape_into(&mut quoted, model);
    quoted.push('"');
    let quoted = quoted.as_bytes();
    let named: Vec<&Member> = top
        .iter()
        .filter(|m| &body[m.key.clone()] == b"model")
        .collect();
    if named.is_empty() {
        let at = open + 1;
        return Some(splice(
            body,
            at..at,
            &[b"\"model\":", quoted, separator(&top)],
        ));
    }
    if named.iter().all(|m| body[m.value.clone()] == *quoted) {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() + quoted.len() * named.len());
    let mut at = 0;
    for m in named {
        out.extend_from_slice(&body[at..m.value.start]);
        out.extend_from_slice(quoted);
        at = m.value.end;
    }
    out.extend_from_slice(&body[at..]);
    Some(Bytes::from(out))
}

const OPTIONS_MEMBER: &[u8] = br#""stream_options":{"include_usage":true}"#;
const OPTIONS_VALUE: &[u8] = br#"{"include_usage":true}"#;
const INCLUDE_MEMBER: &[u8] = br#""include_usage":true"#;

/// Sets `include_usage` inside the `stream_options` object at `open`.
fn into_options(body: &[u8], open: usize, parsed: &Parsed) -> Option<Bytes> {
    let inner = members(body, open)?;
    match last(body, &inner, b"include_usage") {
        Some(m) => Some(splice(body, m.value.clone(), &[b"true"])),
        None if parsed.has_include_key => None,
        None => {
            let at = open + 1;
            Some(splice(body, at..at, &[INCLUDE_MEMBER, separator(&inner)]))
        }
    }
}

/// A comma after an inserted first member, unless the object was empty.
fn separator(members: &[Member]) -> &'static [u8] {
    if members.is_empty() { b"" } else { b"," }
}

/// `body` with `range` replaced by `parts`.
fn splice(body: &[u8], range: Range<usize>, parts: &[&[u8]]) -> Bytes {
    let added: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = Vec::with_capacity(body.len() + added);
    out.extend_from_slice(&body[..range.start]);
    for part in parts {
        out.extend_from_slice(part);
    }
    out.extend_from_slice(&body[range.end..]);
    Bytes::from(out)
}
