//! The top-level JSON walk (`usage::walk`) that reads requests (`stream`,
//! `model`, `n`, `stream_options.include_usage`) and answers (`usage`,
//! `model`), against simd-json's full parse of the same bytes.
//!
//! Header byte: unused. Checked, for arbitrary bytes: neither read panics,
//! and wherever the body is strict JSON (serde_json accepts it) and
//! simd-json parses it as one object without duplicates among the keys
//! read, the walk reads exactly what the full parse reads, for every
//! dialect. simd-json also accepts a few bytes strict JSON does not (a NUL
//! after a literal); what the walk reads from such a body is left to the
//! upstream, which rejects it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sse_edge::internals::json_walk;

fuzz_target!(|input: &[u8]| {
    let Some((_, body)) = input.split_first() else {
        return;
    };
    let strict = serde_json::from_slice::<serde_json::Value>(body).is_ok();
    // Both reads run on every input (no panic); only strict JSON compares.
    let request = json_walk::request_agrees(body);
    let answer = json_walk::answer_agrees(body);
    if !strict {
        return;
    }
    if let Err(e) = request {
        panic!("request {:?}: {e}", String::from_utf8_lossy(body));
    }
    if let Err(e) = answer {
        panic!("answer {:?}: {e}", String::from_utf8_lossy(body));
    }
});
