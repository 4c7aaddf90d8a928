//! The `json_walk` fuzz target's checks: what the top-level walk reads
//! from a request or an answer, against simd-json's full parse of the
//! same bytes. Compiled with the `internals` feature only.
//!
//! The walk may read more than the full parse: it does not validate what
//! lies inside values it skips, so a body simd-json rejects is not
//! compared. Duplicate keys are not compared either (the walk keeps the
//! last, and the full parse's choice is simd-json's).

use super::{body, json, request, walk};
use crate::dialect::Dialect;

/// Keys the request and answer reads look at.
const READ: [&[u8]; 6] = [
    b"stream",
    b"model",
    b"n",
    b"stream_options",
    b"usage",
    b"include_usage",
];

/// Whether `body` is a JSON object by the full parse, with no duplicates
/// among the keys the reads look at (at its top level or in
/// `stream_options`).
fn comparable(body: &[u8]) -> bool {
    if json::read(body, |v| v.is_object()) != Some(true) {
        return false;
    }
    let Some(top) = walk::top_level(body) else {
        return true; // the walk must then agree that nothing is there
    };
    let twice = |members: &[walk::Member]| {
        READ.iter().any(|k| {
            members
                .iter()
                .filter(|m| &body[m.key.clone()] == *k)
                .count()
                > 1
        })
    };
    let options = walk::last(body, &top.members, b"stream_options")
        .and_then(|m| walk::members(body, m.value.start));
    !twice(&top.members) && !options.is_some_and(|o| twice(&o))
}

/// The walk's request read against the full parse's; `Err` says how they
/// differ. Never panics, whatever the bytes.
pub fn request_agrees(body: &[u8]) -> Result<(), String> {
    let walked = request::request_info(body);
    if !comparable(body) {
        return Ok(());
    }
    // Both sides keep the key pre-filter: a body that never spells
    // `"stream"` or `"model"` reads as nothing either way.
    let parsed = if request::names_a_key(body) {
        request::parsed_info(body)
    } else {
        request::RequestInfo::default()
    };
    if walked == parsed {
        Ok(())
    } else {
        Err(format!("walk {walked:?}, full parse {parsed:?}"))
    }
}

/// The walk's answer read (usage and model) against the full parse's, for
/// every dialect.
pub fn answer_agrees(body: &[u8]) -> Result<(), String> {
    let dialects = [
        Dialect::OpenAiChat,
        Dialect::OpenAiResponses,
        Dialect::Anthropic,
        Dialect::Generic,
    ];
    let walked: Vec<_> = dialects.iter().map(|&d| body::from_body(d, body)).collect();
    if !comparable(body) {
        return Ok(());
    }
    for (d, walked) in dialects.into_iter().zip(walked) {
        let parsed = body::parsed(d, body);
        if walked != parsed {
            return Err(format!("{d:?}: walk {walked:?}, full parse {parsed:?}"));
        }
    }
    Ok(())
}
