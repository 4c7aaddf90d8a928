//! `dialect::stream::ending` against the pre-filter it replaced
//! (`src/dialect/stream/reference.rs`) on every event the scanner hands
//! out, for arbitrary bytes and chunking (so events split across chunks
//! too).
//!
//! Header byte: unused. Checked: for every dialect, `ending` equals the
//! reference on every event, including one that `finish` hands out.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sse_edge::internals::Dialect;
use sse_edge::internals::{Ending, ending};
use sse_edge::internals::{Event, Scanner};

#[path = "common.rs"]
mod common;

/// The pre-change `ending`, verbatim (also the unit tests' oracle).
#[path = "../../src/dialect/stream/reference.rs"]
mod reference;

use common::{Step, steps};

const DIALECTS: [Dialect; 4] = [
    Dialect::OpenAiChat,
    Dialect::OpenAiResponses,
    Dialect::Anthropic,
    Dialect::Generic,
];

fn check(e: &Event) {
    for d in DIALECTS {
        let want: Ending = reference::ending(d, e);
        assert_eq!(ending(d, e), want, "{d:?} {:?}", e.segments());
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((_, stream)) = input.split_first() else {
        return;
    };
    let mut scanner = Scanner::new(1 << 20);
    let mut on_event = |e: &Event| check(e);
    for step in steps(stream) {
        if let Step::Chunk(chunk) = step {
            if let Err(o) = scanner.feed(Bytes::copy_from_slice(chunk), &mut on_event) {
                panic!("no event can reach 1 MiB here: {o}");
            }
        }
    }
    let _ = scanner.finish(&mut on_event);
});
