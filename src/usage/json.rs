//! simd-json, the cheap way round: a tape instead of a value tree, parsed
//! with buffers the thread keeps.
//!
//! `to_borrowed_value` allocates simd-json's working buffers and then a
//! tree of maps and vectors for every document, which costs more than the
//! parse itself on the small bodies and usage frames read here. A tape is
//! one flat vector walked in place. The working buffers (input copy,
//! structural indexes, strings) and the tape's nodes are kept per thread
//! between parses, for inputs up to [`KEEP`] bytes.

use std::cell::RefCell;

use simd_json::Buffers;
use simd_json::tape::Tape;

/// A parsed JSON value, read in place on its tape.
pub(crate) type Json<'tape, 'input> = simd_json::tape::Value<'tape, 'input>;

/// Inputs up to this size reuse the thread's buffers; larger ones (rare:
/// usage is read from bodies up to `usage.max_body_size`) get their own, so
/// one big body does not pin its buffers for the life of the thread.
const KEEP: usize = 64 << 10;

/// A tape grown past this many nodes (a dense input near [`KEEP`]) is let
/// go after its parse rather than kept.
const KEEP_NODES: usize = 4096;

struct Scratch {
    input: Vec<u8>,
    buffers: Buffers,
    /// The tape's nodes, kept empty between parses (they borrow the
    /// input while filled).
    tape: Option<Tape<'static>>,
}

impl Scratch {
    fn new() -> Self {
        Scratch {
            input: Vec::new(),
            buffers: Buffers::default(),
            tape: None,
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::new());
}

/// Parses `json` (copied: simd-json parses in place) and hands the root
/// value to `read`; `None` if it is not valid JSON.
pub(crate) fn read<R>(json: &[u8], read: impl FnOnce(Json<'_, '_>) -> R) -> Option<R> {
    if json.len() > KEEP {
        let mut input = json.to_vec();
        let mut buffers = Buffers::new(input.len());
        let tape = simd_json::to_tape_with_buffers(&mut input, &mut buffers).ok()?;
        return Some(read(tape.as_value()));
    }
    SCRATCH.with(|scratch| {
        // Never re-entered (`read` gets a parsed value, not the scratch);
        // a failed borrow would only mean a fresh parse.
        let mut fresh;
        let mut guard = scratch.try_borrow_mut();
        let s = match guard.as_deref_mut() {
            Ok(s) => s,
            Err(_) => {
                fresh = Scratch::new();
                &mut fresh
            }
        };
        s.input.clear();
        s.input.extend_from_slice(json);
        let mut tape = s.tape.take().map_or_else(|| Tape(Vec::new()), Tape::reset);
        let out = simd_json::fill_tape(&mut s.input, &mut s.buffers, &mut tape)
            .ok()
            .map(|()| read(tape.as_value()));
        if tape.0.capacity() <= KEEP_NODES {
            s.tape = Some(tape.reset());
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use simd_json::prelude::*;

    use super::{KEEP, read};

    fn model(json: &[u8]) -> Option<Option<String>> {
        read(json, |v| {
            v.get("model").and_then(|m| m.as_str().map(str::to_owned))
        })
    }

    /// The kept tape and buffers never leak one parse into the next: a
    /// failed parse, a longer document, a shorter one, nested reads and
    /// an input over the keep limit each see only their own bytes.
    #[test]
    fn parses_share_nothing_but_memory() {
        assert_eq!(model(br#"{"model":"a","x":[1,2,{"#), None);
        assert_eq!(
            model(br#"{"model":"long-model","n":[1,2,3,4,5,6]}"#),
            Some(Some("long-model".into()))
        );
        assert_eq!(model(br#"{"model":"b"}"#), Some(Some("b".into())));
        assert_eq!(model(br#"{"other":1}"#), Some(None));
        assert_eq!(model(b"not json"), None);
        let nested = read(br#"{"model":"outer"}"#, |_| model(br#"{"model":"inner"}"#));
        assert_eq!(nested, Some(Some(Some("inner".into()))));
        let big = format!(r#"{{"pad":"{}","model":"big"}}"#, "x".repeat(KEEP));
        assert_eq!(model(big.as_bytes()), Some(Some("big".into())));
        assert_eq!(model(br#"{"model":"after"}"#), Some(Some("after".into())));
    }
}
