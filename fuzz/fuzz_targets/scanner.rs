//! Scanner invariants on arbitrary bytes and chunking, no injection.
//!
//! Header byte: below 0x80 the event cap is 1 MiB, otherwise
//! `(header - 0x7F) * 4` bytes, so overflow is fuzzed too.
//!
//! Checked: no panic; after every chunk the position equals the WHATWG
//! reference parser's; forwarded bytes (incl. `Overflow::forward` and
//! `finish`) == input; events == the whole-buffer split, less the events
//! longer than the cap; their parses replay to the reference's events when
//! nothing overflowed.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sse_edge::internals::{Scanner, whatwg};

#[path = "common.rs"]
mod common;

use common::{Step, dispatched, split_events, steps, upstream};

fuzz_target!(|input: &[u8]| {
    let Some((&header, stream)) = input.split_first() else {
        return;
    };
    let max = if header < 0x80 {
        1 << 20
    } else {
        usize::from(header - 0x7F) * 4
    };
    let upstream = upstream(stream);
    let mut scanner = Scanner::new(max);
    let mut reference = whatwg::Parser::new();
    let (mut forwarded, mut events, mut parsed, mut overflows) = (vec![], vec![], vec![], 0);
    let mut on_event = |e: &sse_edge::internals::Event| {
        assert!(e.len() <= max && !e.is_empty());
        events.push(e.segments().concat());
        parsed.push(e.parse());
    };
    for step in steps(stream) {
        let Step::Chunk(chunk) = step else { continue };
        let out = scanner.feed(Bytes::copy_from_slice(chunk), &mut on_event);
        let out = out.unwrap_or_else(|o| {
            overflows += 1;
            o.forward
        });
        forwarded.extend_from_slice(&out);
        reference.feed(chunk);
        assert_eq!(scanner.position(), reference.position());
    }
    forwarded.extend_from_slice(&scanner.finish(&mut on_event));
    assert_eq!(forwarded, upstream);
    let all = split_events(&upstream);
    let long = all.iter().filter(|e| e.len() > max).count();
    let fitting: Vec<_> = all.into_iter().filter(|e| e.len() <= max).collect();
    assert_eq!(events, fitting);
    assert!(long == 0 || overflows > 0);
    if overflows == 0 {
        assert_eq!(dispatched(&parsed), whatwg::parse(&upstream));
    }
});
