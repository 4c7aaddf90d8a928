//! The structural walk of a JSON document's top level: which members the
//! outermost object holds, as byte ranges of their keys and values,
//! without parsing (or validating) what lies inside the values. Strings
//! are crossed with `memchr` from quote to quote and containers by their
//! bracket depth, so the walk costs about one search per string, not a
//! parse per byte. Both the request read ([`super::request`]) and the
//! answer's usage ([`super::body`]) use it; simd-json then reads only the
//! few values they need.

use std::ops::Range;

use simd_json::prelude::*;

use super::json;

/// The top-level members of a body that is one JSON object (whitespace
/// around it allowed), as the walker sees it.
pub(super) struct Top {
    pub(super) open: usize,
    pub(super) members: Vec<Member>,
    /// Some key holds a backslash: raw comparison would misread it.
    pub(super) escaped: bool,
}

pub(super) fn top_level(body: &[u8]) -> Option<Top> {
    let open = skip_ws(body, 0);
    let (members, end) = object(body, open)?;
    if skip_ws(body, end) != body.len() {
        return None; // something after the object
    }
    let escaped = members.iter().any(|m| body[m.key.clone()].contains(&b'\\'));
    Some(Top {
        open,
        members,
        escaped,
    })
}

/// One object member: the key's raw bytes between its quotes and the
/// value's byte range.
pub(super) struct Member {
    pub(super) key: Range<usize>,
    pub(super) value: Range<usize>,
}

/// The last member whose raw key is `name`.
pub(super) fn last<'m>(body: &[u8], members: &'m [Member], name: &[u8]) -> Option<&'m Member> {
    members.iter().rev().find(|m| &body[m.key.clone()] == name)
}

/// The members of the object whose `{` is at `open`; None when the bytes
/// are not an object there.
pub(super) fn members(body: &[u8], open: usize) -> Option<Vec<Member>> {
    object(body, open).map(|(members, _)| members)
}

/// The members of the object whose `{` is at `open`, and the index just
/// past its `}`.
fn object(body: &[u8], open: usize) -> Option<(Vec<Member>, usize)> {
    if body.get(open) != Some(&b'{') {
        return None;
    }
    // Requests and answers hold a dozen top-level members or fewer: one
    // allocation instead of growing through 4, 8 and 16.
    let mut out = Vec::with_capacity(16);
    let mut i = skip_ws(body, open + 1);
    if body.get(i) == Some(&b'}') {
        return Some((out, i + 1));
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
            Some(b'}') => return Some((out, i + 1)),
            _ => return None,
        }
    }
}

pub(super) fn skip_ws(body: &[u8], mut i: usize) -> usize {
    while matches!(body.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The index just past the string whose opening quote is at `open`.
///
/// Jumps from quote to quote (`memchr` for one byte, not `memchr2` for the
/// quote and the backslash: prose and code put a `\n` or `\"` every few
/// dozen bytes, and each stop restarts the search). A quote ends the
/// string unless an odd run of backslashes stands right before it; each
/// backslash is counted at most once, so the walk stays linear.
fn string_end(body: &[u8], open: usize) -> Option<usize> {
    let mut from = open + 1;
    loop {
        let quote = from + memchr::memchr(b'"', body.get(from..)?)?;
        let run = body[from..quote]
            .iter()
            .rev()
            .take_while(|&&b| b == b'\\')
            .count();
        if run % 2 == 0 {
            return Some(quote + 1);
        }
        from = quote + 1;
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

/// The text of a JSON string value (its bytes with the quotes); None when
/// the value is not a string. A string without escapes or control bytes
/// is its own text and is taken as it stands (after the UTF-8 check
/// simd-json would make); any other goes through simd-json.
pub(super) fn string(value: &[u8]) -> Option<String> {
    let inner = value.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    if !inner.iter().any(|&b| b == b'\\' || b < 0x20) {
        return std::str::from_utf8(inner).ok().map(str::to_owned);
    }
    json::read(value, |v| v.as_str().map(str::to_owned))?
}
