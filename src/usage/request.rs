//! The client's JSON request: what the relay reads from it, and the one
//! change it may make (asking a chat stream to report usage).
//!
//! Bodies are parsed only when they contain `"stream"` or `"model"`. The
//! include-usage rewrite never re-serialises: simd-json first checks that
//! the body is a JSON object and what it says, then a small structural
//! walker (strings with escapes, nesting) finds the top-level members' byte
//! ranges and the new bytes are spliced in, so every other byte the client
//! sent goes upstream unchanged. Where the two disagree (a key spelled with
//! escapes, say) the body is left alone.

use std::ops::Range;
use std::sync::LazyLock;

use bytes::Bytes;
use memchr::memmem::{Finder, FinderRev};
use simd_json::prelude::*;

use super::body::model_of;
use super::json::{self, Json};

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
fn names_a_key(body: &[u8]) -> bool {
    let head = &body[..body.len().min(HEAD)];
    STREAM_KEY.find(head).is_some()
        || MODEL_KEY.find(head).is_some()
        || (body.len() > HEAD
            && (STREAM_KEY_REV.rfind(body).is_some() || MODEL_KEY_REV.rfind(body).is_some()))
}

/// Reads the top-level `stream`, `model`, `n` and
/// `stream_options.include_usage` keys; invalid JSON or a non-object gives
/// the default.
pub(crate) fn request_info(body: &[u8]) -> RequestInfo {
    if !names_a_key(body) {
        return RequestInfo::default();
    }
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

fn options<'t, 'i>(value: Json<'t, 'i>) -> Option<Json<'t, 'i>> {
    value.get("stream_options")
}

/// What simd-json says about the keys the rewrite touches.
struct Parsed {
    has_options: bool,
    has_include_key: bool,
}

/// None when the body is not a JSON object or already asks for usage.
fn check(body: &[u8]) -> Option<Parsed> {
    json::read(body, |value| {
        if !value.is_object() {
            return None;
        }
        let include = options(value).and_then(|o| o.get("include_usage"));
        if include.and_then(|i| i.as_bool()) == Some(true) {
            return None;
        }
        Some(Parsed {
            has_options: options(value).is_some(),
            has_include_key: include.is_some(),
        })
    })
    .flatten()
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
    let parsed = check(body)?;
    let open = skip_ws(body, 0);
    let top = members(body, open)?;
    let Some(opts) = last(body, &top, b"stream_options") else {
        if parsed.has_options {
            return None;
        }
        let at = open + 1;
        let sep = separator(&top);
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

/// One object member: the key's raw bytes between its quotes and the
/// value's byte range.
struct Member {
    key: Range<usize>,
    value: Range<usize>,
}

/// The last member whose raw key is `name`.
fn last<'m>(body: &[u8], members: &'m [Member], name: &[u8]) -> Option<&'m Member> {
    members.iter().rev().find(|m| &body[m.key.clone()] == name)
}

/// The members of the object whose `{` is at `open`; None when the bytes
/// are not an object there.
fn members(body: &[u8], open: usize) -> Option<Vec<Member>> {
    if body.get(open) != Some(&b'{') {
        return None;
    }
    let mut out = Vec::new();
    let mut i = skip_ws(body, open + 1);
    if body.get(i) == Some(&b'}') {
        return Some(out);
    }
    loop {
        if body.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = string_end(body, i)?;
        let colon = skip_ws(body, key_end);
        if body.get(colon) != Some(&b':') {
            return None;
        }
        let start = skip_ws(body, colon + 1);
        let end = value_end(body, start)?;
        out.push(Member {
            key: i + 1..key_end - 1,
            value: start..end,
        });
        i = skip_ws(body, end);
        match body.get(i) {
            Some(b',') => i = skip_ws(body, i + 1),
            Some(b'}') => return Some(out),
            _ => return None,
        }
    }
}

fn skip_ws(body: &[u8], mut i: usize) -> usize {
    while matches!(body.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The index just past the string whose opening quote is at `open`.
fn string_end(body: &[u8], open: usize) -> Option<usize> {
    let mut i = open + 1;
    loop {
        i += memchr::memchr2(b'"', b'\\', body.get(i..)?)?;
        if body[i] == b'"' {
            return Some(i + 1);
        }
        i += 2; // a backslash and the byte it escapes
    }
}

/// The index just past the value starting at `start`.
fn value_end(body: &[u8], start: usize) -> Option<usize> {
    match body.get(start)? {
        b'"' => string_end(body, start),
        b'{' | b'[' => container_end(body, start),
        _ => {
            let rest = &body[start..];
            let len = rest
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(rest.len());
            (len > 0).then_some(start + len)
        }
    }
}

/// The index just past the object or array opening at `open`.
fn container_end(body: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = open;
    while let Some(&b) = body.get(i) {
        match b {
            b'"' => {
                i = string_end(body, i)?;
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}
