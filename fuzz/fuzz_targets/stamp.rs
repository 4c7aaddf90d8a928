//! Resume stamping on arbitrary bytes and chunking: every complete event
//! the scanner hands over is re-emitted whole with `id: <token>:<seq>` as
//! its last field (blocks of comments alone are dropped).
//!
//! Checked: a WHATWG parser reads from the stamped output the same event
//! types and data, in order, as from the upstream; every dispatched event's
//! last-event-ID is the relay's, with strictly increasing seq.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sse_edge::internals::Token;
use sse_edge::internals::Stamp;
use sse_edge::internals::{Event, Scanner, whatwg};

#[path = "common.rs"]
mod common;

use common::{Step, steps, upstream};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

fuzz_target!(|input: &[u8]| {
    let Some((_, stream)) = input.split_first() else {
        return;
    };
    let token = Token::parse(TOKEN).expect("valid token");
    let mut stamp = Stamp::new(token);
    let mut scanner = Scanner::new(1 << 20);
    let mut out: Vec<(u64, Bytes)> = Vec::new();
    let mut on_event = |e: &Event| {
        if e.has_field() {
            stamp.event(e.segments(), e.terminator_len(), &mut out);
        }
    };
    for step in steps(stream) {
        if let Step::Chunk(chunk) = step {
            if let Err(o) = scanner.feed(Bytes::copy_from_slice(chunk), &mut on_event) {
                panic!("no event can reach 1 MiB here: {o}");
            }
        }
    }
    let _ = scanner.finish(&mut on_event);
    let stamped: Vec<u8> = out.iter().flat_map(|(_, b)| b.iter().copied()).collect();
    let want: Vec<_> = whatwg::parse(&upstream(stream))
        .into_iter()
        .map(|e| (e.event_type, e.data))
        .collect();
    let got = whatwg::parse(&stamped);
    let pairs: Vec<_> = got
        .iter()
        .map(|e| (e.event_type.clone(), e.data.clone()))
        .collect();
    assert_eq!(pairs, want);
    let mut last = 0u64;
    for e in &got {
        let seq = e
            .last_event_id
            .strip_prefix(TOKEN)
            .and_then(|s| s.strip_prefix(':'))
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("not the relay's id: {:?}", e.last_event_id));
        assert!(seq > last, "ids must increase: {seq} after {last}");
        last = seq;
    }
});
