//! simd-json, the cheap way round: a tape instead of a value tree, parsed
//! with buffers the thread keeps.
//!
//! `to_borrowed_value` allocates simd-json's working buffers and then a
//! tree of maps and vectors for every document, which costs more than the
//! parse itself on the small bodies and usage frames read here. A tape is
//! one flat vector walked in place, and the working buffers (input copy,
//! structural indexes, strings) are kept per thread between parses, up to
//! [`KEEP`] bytes of input.

use std::cell::RefCell;

use simd_json::Buffers;

/// A parsed JSON value, read in place on its tape.
pub(crate) type Json<'tape, 'input> = simd_json::tape::Value<'tape, 'input>;

/// Inputs up to this size reuse the thread's buffers; larger ones (rare:
/// usage is read from bodies up to `usage.max_body_size`) get their own, so
/// one big body does not pin its buffers for the life of the thread.
const KEEP: usize = 64 << 10;

struct Scratch {
    input: Vec<u8>,
    buffers: Buffers,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch {
        input: Vec::new(),
        buffers: Buffers::default(),
    });
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
                fresh = Scratch {
                    input: Vec::new(),
                    buffers: Buffers::default(),
                };
                &mut fresh
            }
        };
        s.input.clear();
        s.input.extend_from_slice(json);
        let tape = simd_json::to_tape_with_buffers(&mut s.input, &mut s.buffers).ok()?;
        Some(read(tape.as_value()))
    })
}
