//! The injection property on arbitrary bytes, chunking and injection
//! points (`0xFE` in the input).
//!
//! Header byte: even selects the comment frames, odd Anthropic's `ping`.
//!
//! Checked: after every step the scanner's position equals the WHATWG
//! reference parser's on the bytes written so far; the reference parse of
//! the downstream equals the upstream's (with `ping`: equal once pings are
//! removed, and exactly one more ping per full frame written); the
//! scanner's events replay to the upstream's events.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sse_edge::internals::whatwg::{self, Dispatched};
use sse_edge::internals::{Keepalive, Scanner};

#[path = "common.rs"]
mod common;

use common::{Step, dispatched, steps, upstream};

fuzz_target!(|input: &[u8]| {
    let Some((&header, stream)) = input.split_first() else {
        return;
    };
    let ping = header % 2 == 1;
    let ka = if ping {
        Keepalive::anthropic_ping()
    } else {
        Keepalive::comment()
    };
    let upstream = upstream(stream);
    let mut scanner = Scanner::new(1 << 20);
    let mut client = whatwg::Parser::new();
    let (mut output, mut parsed, mut fulls) = (vec![], vec![], 0);
    let mut on_event = |e: &sse_edge::internals::Event| parsed.push(e.parse());
    for step in steps(stream) {
        let bytes = match step {
            Step::Inject => match ka.frame(&mut scanner) {
                Some(frame) => {
                    fulls += usize::from(&frame == ka.full());
                    frame
                }
                None => continue,
            },
            Step::Chunk(chunk) => {
                match scanner.feed(Bytes::copy_from_slice(chunk), &mut on_event) {
                    Ok(out) => out,
                    Err(o) => panic!("no event can reach 1 MiB here: {o}"),
                }
            }
        };
        output.extend_from_slice(&bytes);
        client.feed(&bytes);
        assert_eq!(scanner.position(), client.position());
    }
    output.extend_from_slice(&scanner.finish(&mut on_event));
    let want = whatwg::parse(&upstream);
    assert_eq!(dispatched(&parsed), want);
    let got = whatwg::parse(&output);
    if ping {
        let is_ping = |e: &Dispatched| e.event_type == "ping";
        let pings = |v: &[Dispatched]| v.iter().filter(|e| is_ping(e)).count();
        assert_eq!(pings(&got), pings(&want) + fulls);
        let strip = |v: Vec<Dispatched>| v.into_iter().filter(|e| !is_ping(e)).collect::<Vec<_>>();
        assert_eq!(strip(got), strip(want));
    } else {
        assert_eq!(got, want);
    }
});
