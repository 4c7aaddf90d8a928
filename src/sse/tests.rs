//! Scanner tests: every 2- and 3-way split of handcrafted streams, with and
//! without empty chunks, against the reference parser and an independent
//! whole-buffer event splitter. Injection properties are in `property`.

mod property;

use bytes::Bytes;

use super::whatwg::{self, Dispatched};
use super::{Event, Keepalive, ParsedEvent, Position, Scanner};

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Handcrafted streams: line-end mixes, BOMs, comments, odd fields.
pub(super) const CASES: [&[u8]; 18] = [
    b"data: {\"id\":\"c1\",\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: [DONE]\n\n",
    b"event: message_start\ndata: {\"type\":\"message_start\"}\n\nevent: ping\ndata: {\"type\": \"ping\"}\n\n",
    b"event: response.created\r\ndata: {\"sequence_number\":0}\r\n\r\ndata: b\r\n\r\n",
    b"data: a\r\rdata: b\r\r",
    b"data: a\r\n\rdata: b\n\r\ndata: c\r\r\n: tail\n",
    b"\xEF\xBB\xBFdata: bom\n\ndata: x\n\n",
    b"\xEF\xBB\xBF\xEF\xBB\xBFdata: two boms\n\ndata: y\n\n",
    b"\xEF\xBBdata: half bom\n\ndata: z\n\n",
    b": hello\n\n: mid\ndata: y\n: c\r\n\n",
    b"data: a\n\ndata: unterminated",
    b"data: a\n\ndata: b\r",
    b"\n\r\n\r\rdata: after blanks\n\n",
    b"data\n\ndata\ndata:\n\n",
    b"id: 1\ndata: a\n\nid\n\nid: 2\r\ndata: b\r\r",
    b"data: ends with blank cr\n\r",
    b"retry: 100\nevent: x\n\ndata:  two spaces \n\n",
    b"\r",
    b"",
];

/// What one scanner run produced.
pub(super) struct Outcome {
    pub forwarded: Vec<u8>,
    pub events: Vec<Vec<u8>>,
    pub parsed: Vec<ParsedEvent>,
    pub overflows: usize,
}

fn record(events: &mut Vec<Vec<u8>>, parsed: &mut Vec<ParsedEvent>) -> impl FnMut(&Event) {
    move |e: &Event| {
        assert_eq!(e.len(), e.segments().iter().map(Bytes::len).sum::<usize>());
        events.push(e.segments().concat());
        parsed.push(e.parse());
    }
}

/// Feeds `chunks` without injecting, checking the position against the
/// reference after every chunk; then finishes.
pub(super) fn scan_all(chunks: &[&[u8]], max_event: usize) -> Outcome {
    let mut s = Scanner::new(max_event);
    let mut reference = whatwg::Parser::new();
    let (mut events, mut parsed, mut forwarded, mut overflows) = (vec![], vec![], vec![], 0);
    let mut on_event = record(&mut events, &mut parsed);
    for chunk in chunks {
        let out = match s.feed(Bytes::copy_from_slice(chunk), &mut on_event) {
            Ok(b) => b,
            Err(o) => {
                overflows += 1;
                o.forward
            }
        };
        forwarded.extend_from_slice(&out);
        reference.feed(chunk);
        assert_eq!(s.position(), reference.position(), "after {chunks:?}");
    }
    forwarded.extend_from_slice(&s.finish(&mut on_event));
    drop(on_event);
    Outcome {
        forwarded,
        events,
        parsed,
        overflows,
    }
}

/// An independent, whole-buffer splitter: the raw bytes of every event
/// whose blank line is terminated (a final CR counts, as at EOF).
pub(super) fn split_events(input: &[u8]) -> Vec<Vec<u8>> {
    let mut rest = input.strip_prefix(BOM).unwrap_or(input);
    let (mut events, mut current) = (vec![], vec![]);
    while let Some(i) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
        let crlf = rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n');
        let end = i + 1 + usize::from(crlf);
        current.extend_from_slice(&rest[..end]);
        if i == 0 {
            events.push(std::mem::take(&mut current));
        }
        rest = &rest[end..];
    }
    events
}

/// Replays parsed events the way a WHATWG parser dispatches them.
pub(super) fn dispatched(parsed: &[ParsedEvent]) -> Vec<Dispatched> {
    let mut last_id = String::new();
    let mut out = vec![];
    for p in parsed {
        if let Some(id) = &p.id {
            last_id.clone_from(id);
        }
        if let Some(data) = &p.data {
            out.push(Dispatched {
                event_type: p.event.clone().unwrap_or_else(|| "message".into()),
                data: data.clone(),
                last_event_id: last_id.clone(),
            });
        }
    }
    out
}

/// All ways to cut `input` into at most three pieces, each optionally
/// separated by empty chunks.
fn splits(input: &[u8]) -> Vec<Vec<&[u8]>> {
    let n = input.len();
    let mut out = vec![];
    for a in 0..=n {
        for b in a..=n {
            let (x, y, z) = (&input[..a], &input[a..b], &input[b..]);
            out.push(vec![x, y, z]);
            out.push(vec![&[][..], x, &[], y, &[], z, &[]]);
        }
    }
    out
}

#[test]
fn sse_every_split_matches_reference_and_splitter() {
    for input in CASES {
        let want_events = split_events(input);
        let want_dispatched = whatwg::parse(input);
        for chunks in splits(input) {
            let out = scan_all(&chunks, 1 << 20);
            assert_eq!(out.forwarded, input, "forwarded, {chunks:?}");
            assert_eq!(out.events, want_events, "events, {chunks:?}");
            assert_eq!(
                dispatched(&out.parsed),
                want_dispatched,
                "parse, {chunks:?}"
            );
            assert_eq!(out.overflows, 0);
        }
    }
}

#[test]
fn sse_events_are_zero_copy_slices_and_forwarding_is_the_chunk() {
    let chunk = Bytes::from_static(b"data: a\n\ndata: b\n\ndata: c");
    let mut s = Scanner::new(64);
    let mut seen = vec![];
    let range = chunk.as_ptr_range();
    let out = s.feed(chunk.clone(), &mut |e| {
        for seg in e.segments() {
            assert!(
                range.contains(&seg.as_ptr()),
                "segment is a slice of the chunk"
            );
        }
        seen.push(e.segments().concat());
    });
    let out = out.ok().unwrap_or_default();
    assert_eq!((out.as_ptr(), out.len()), (chunk.as_ptr(), chunk.len()));
    assert_eq!(seen, [&b"data: a\n\n"[..], b"data: b\n\n"]);
    assert_eq!(s.position(), Position::InLine);
}

#[test]
fn sse_event_completion_waits_for_the_byte_after_a_cr() {
    let mut s = Scanner::new(64);
    let mut seen: Vec<Vec<u8>> = vec![];
    let feed = |s: &mut Scanner, b: &'static [u8], seen: &mut Vec<Vec<u8>>| {
        let r = s.feed(Bytes::from_static(b), &mut |e| {
            seen.push(e.segments().concat())
        });
        r.map(|b| b.len()).ok()
    };
    assert_eq!(feed(&mut s, b"data: a\r\r", &mut seen), Some(9));
    assert!(seen.is_empty(), "the blank line's CR may still take an LF");
    assert_eq!(s.position(), Position::AfterCr);
    assert_eq!(feed(&mut s, b"\ndata: b\r\r", &mut seen), Some(10));
    assert_eq!(seen, [b"data: a\r\r\n"]);
    assert_eq!(feed(&mut s, b"x", &mut seen), Some(1));
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1], b"data: b\r\r");
    assert_eq!(s.position(), Position::InLine);
    // finish() hands out an event dispatched by a final CR.
    assert_eq!(feed(&mut s, b"\r\r", &mut seen), Some(2));
    let rest = s.finish(&mut |e| seen.push(e.segments().concat()));
    assert!(rest.is_empty());
    assert_eq!(seen.last().map(Vec::as_slice), Some(&b"x\r\r"[..]));
}

#[test]
fn sse_bom_prefix_is_held_then_released_or_dropped() {
    let ka = Keepalive::comment();
    for inject in [false, true] {
        for cut in [1, 2] {
            let mut s = Scanner::new(64);
            assert!(s.at_stream_start());
            let mut out = vec![];
            let push = |out: &mut Vec<u8>, b: Result<Bytes, _>| {
                out.extend_from_slice(&b.ok().unwrap_or_default());
            };
            push(
                &mut out,
                s.feed(Bytes::copy_from_slice(&BOM[..cut]), &mut |_| {}),
            );
            assert!(!s.at_stream_start());
            assert_eq!(s.position(), Position::EventBoundary);
            if inject {
                let frame = ka.frame(&mut s).unwrap_or_default();
                out.extend_from_slice(&frame);
            }
            push(
                &mut out,
                s.feed(Bytes::copy_from_slice(&BOM[cut..]), &mut |_| {}),
            );
            push(
                &mut out,
                s.feed(Bytes::from_static(b"data: a\n\n"), &mut |_| {}),
            );
            let want: &[u8] = if inject {
                b": keepalive\n\ndata: a\n\n"
            } else {
                b"\xEF\xBB\xBFdata: a\n\n"
            };
            assert_eq!(out, want, "inject {inject} cut {cut}");
        }
    }
}

#[test]
fn sse_not_a_bom_prefix_is_released_whole() {
    let mut s = Scanner::new(64);
    let mut events = vec![];
    let first = s.feed(Bytes::from_static(b"\xEF"), &mut |_| {});
    assert_eq!(first.ok().map(|b| b.len()), Some(0));
    let ka = Keepalive::comment();
    assert_eq!(ka.frame(&mut s).as_deref(), Some(&b": keepalive\n\n"[..]));
    let out = s.feed(Bytes::from_static(b"\xBBx\n\n"), &mut |e| {
        events.push(e.segments().concat())
    });
    assert_eq!(out.ok().as_deref(), Some(&b"\xEF\xBBx\n\n"[..]));
    assert_eq!(events, [b"\xEF\xBBx\n\n"]);
    // A stream that is only a BOM prefix gives its bytes back at finish.
    let mut s = Scanner::new(64);
    let _ = s.feed(Bytes::from_static(b"\xEF\xBB"), &mut |_| {});
    assert_eq!(&s.finish(&mut |_| {})[..], b"\xEF\xBB");
}

#[test]
fn sse_overflow_is_reported_once_and_the_event_skipped() {
    let input: &[u8] = b"data: a\n\ndata: 0123456789\n: more\n\ndata: b\n\n";
    for chunks in splits(input) {
        let out = scan_all(&chunks, 16);
        assert_eq!(out.overflows, 1, "{chunks:?}");
        assert_eq!(
            out.events,
            [&b"data: a\n\n"[..], b"data: b\n\n"],
            "{chunks:?}"
        );
        assert_eq!(out.forwarded, input, "Overflow::forward keeps the chunk");
    }
    // An event of exactly max_event bytes fits, one more does not.
    let exact: &[u8] = b"data: 0123456\n\n";
    assert_eq!(scan_all(&[exact], exact.len()).overflows, 0);
    assert_eq!(scan_all(&[exact], exact.len() - 1).overflows, 1);
    // Once overflowed, nothing more of the event is held: a long event in
    // small chunks is reported once.
    let long = [&b"data: "[..], &[b'x'; 300], b"\n\ndata: b\n\n"].concat();
    let out = scan_all(&long.chunks(7).collect::<Vec<_>>(), 16);
    assert_eq!((out.overflows, out.events.len()), (1, 1));
    // Held bytes are released at every dispatch: many small events are fine.
    let many = b"data: x\n\n".repeat(1000);
    let out = scan_all(&many.chunks(7).collect::<Vec<_>>(), 9);
    assert_eq!((out.overflows, out.events.len()), (0, 1000));
}

#[test]
fn sse_overflow_error_carries_the_forward_bytes() {
    let mut s = Scanner::new(12);
    let r = s.feed(Bytes::from_static(b"data: 0123456789"), &mut |_| {});
    let err = r.err();
    let want = Some((12, &b"data: 0123456789"[..]));
    assert_eq!(err.as_ref().map(|o| (o.limit, &o.forward[..])), want);
    assert!(err.is_some_and(|o| o.to_string().contains("12 bytes")));
    // The rest of the event is skipped without another error; position
    // tracking goes on.
    let r = s.feed(Bytes::from_static(b"45\r"), &mut |_| {
        panic!("skipped event")
    });
    assert!(r.is_ok());
    assert_eq!(s.position(), Position::AfterCr);
    let mut n = 0;
    let r = s.feed(Bytes::from_static(b"\n\ndata: ok\n\n"), &mut |_| n += 1);
    assert!(r.is_ok());
    assert_eq!((n, s.position()), (1, Position::EventBoundary));
}

#[test]
fn sse_large_event_in_tiny_chunks_is_linear() {
    // 256 KiB in one line fed byte by byte: a rescan per chunk would take
    // about 3 * 10^10 steps; linear work finishes at once.
    let mut line = b"data: ".to_vec();
    line.resize(1 << 18, b'x');
    line.extend_from_slice(b"\n\n");
    let line = Bytes::from(line);
    let mut s = Scanner::new(1 << 20);
    let mut got = 0;
    for i in 0..line.len() {
        let _ = s.feed(line.slice(i..i + 1), &mut |e| got = e.len());
    }
    assert_eq!(got, line.len());
}

#[test]
fn has_field_and_terminator_len() {
    let cases: &[(&[u8], bool, usize)] = &[
        (b"data: x\n\n", true, 1),
        (b": c\n: d\r\n\r\n", false, 2),
        (b": c\rid\r\r", true, 1),
        (b"retry: 1\r\n\n", true, 1),
        (b": a\n\r\n", false, 2),
        (b"\n", false, 1),
        (b":x\r\r", false, 1),
        (b"foo: 1\ndat: 2\n\n", false, 1),
        (b"data: a\n\n\xEF\xBB\xBFdata: x\n\n", false, 1),
        (b"data: a\n\n\xEF\xBB\xBFx\ndata\n\n", true, 1),
        (b"event\r\n\r\n", true, 2),
    ];
    for &(raw, field, term) in cases {
        let mut scanner = Scanner::new(1 << 10);
        let mut seen = Vec::new();
        let fed = scanner.feed(Bytes::copy_from_slice(raw), &mut |ev| {
            seen.push((ev.has_field(), ev.terminator_len()));
        });
        assert!(fed.is_ok());
        let mut held = scanner.finish(&mut |ev| seen.push((ev.has_field(), ev.terminator_len())));
        held.clear();
        assert_eq!(seen.last(), Some(&(field, term)), "{raw:?}");
    }
}
