//! `ending` against the pre-filter it had before (`reference`): the same
//! result on every input. Targeted cases for each edge of the line-start
//! filter, then a differential run over generated events.

use bytes::Bytes;

use super::{Dialect, Ending, Event, ending, reference};

const DIALECTS: [Dialect; 4] = [
    Dialect::OpenAiChat,
    Dialect::OpenAiResponses,
    Dialect::Anthropic,
    Dialect::Generic,
];

fn event(parts: &[&[u8]]) -> Event {
    let mut e = Event::default();
    for p in parts {
        e.push(Bytes::copy_from_slice(p));
    }
    e
}

/// `ending` for `raw` whole and split into two and three segments at every
/// pair of points, checked against the reference for every dialect;
/// returns the whole event's result for `dialect`.
fn check(dialect: Dialect, raw: &[u8]) -> Ending {
    let want = |d| reference::ending(d, &event(&[raw]));
    for d in DIALECTS {
        assert_eq!(ending(d, &event(&[raw])), want(d), "{d:?} {raw:?}");
    }
    for a in 0..=raw.len() {
        for b in a..=raw.len() {
            let e = event(&[&raw[..a], &raw[a..b], &raw[b..]]);
            for d in DIALECTS {
                assert_eq!(ending(d, &e), want(d), "{d:?} {a} {b} {raw:?}");
            }
        }
    }
    ending(dialect, &event(&[raw]))
}

fn chat(raw: &str) -> Ending {
    check(Dialect::OpenAiChat, raw.as_bytes())
}

#[test]
fn chat_done() {
    assert_eq!(chat("data: [DONE]\n\n"), Ending::Complete);
    assert_eq!(chat("data:[DONE]\n\n"), Ending::Complete);
    assert_eq!(chat("data: [DONE]\r\n\r\n"), Ending::Complete);
    assert_eq!(chat("data: [DONE]\r\r"), Ending::Complete);
    assert_eq!(chat("data: [DONE]"), Ending::Complete);
    assert_eq!(chat(": keep\rid: 7\r\ndata: [DONE]\n\n"), Ending::Complete);
    assert_eq!(chat("event: x\ndata: [DONE]\n\n"), Ending::Complete);
    // Not exactly `[DONE]`: a second space, a trailing one, a second line.
    assert_eq!(chat("data:  [DONE]\n\n"), Ending::None);
    assert_eq!(chat("data: [DONE] \n\n"), Ending::None);
    assert_eq!(chat("data: [DONE]\ndata: [DONE]\n\n"), Ending::None);
    assert_eq!(chat("data: [DONE]\ndata\n\n"), Ending::None);
    assert_eq!(chat("data: x [DONE]\n\n"), Ending::None);
}

#[test]
fn chat_done_needs_a_data_field() {
    assert_eq!(chat(": data: [DONE]\n\n"), Ending::None);
    assert_eq!(chat("DATA: [DONE]\n\n"), Ending::None);
    assert_eq!(chat("data : [DONE]\n\n"), Ending::None);
    assert_eq!(chat("xdata: [DONE]\n\n"), Ending::None);
    assert_eq!(chat("id: [DONE]\n\n"), Ending::None);
    // A BOM inside the event is content: it poisons the field name.
    assert_eq!(chat("\u{feff}data: [DONE]\n\n"), Ending::None);
    assert_eq!(chat("data: x\n\u{feff}data: [DONE]\n\n"), Ending::None);
}

#[test]
fn chat_parse_stops_at_the_first_blank_line() {
    assert_eq!(chat("data: x\n\ndata: [DONE]\n\n"), Ending::None);
    assert_eq!(chat("data: x\r\rdata: [DONE]\n\n"), Ending::None);
    assert_eq!(chat("\ndata: [DONE]\n\n"), Ending::None);
    // CR LF is one line end, not a blank line.
    assert_eq!(chat("id: 1\r\ndata: [DONE]\r\n\r\n"), Ending::Complete);
}

#[test]
fn chat_error_data() {
    assert_eq!(
        chat("data: {\"error\":{\"message\":\"x\"}}\n\n"),
        Ending::Error
    );
    assert_eq!(chat("data:{\"error\":1}\n\n"), Ending::Error);
    assert_eq!(chat("data:   {\"error\":1}\n\n"), Ending::Error);
    assert_eq!(
        chat("data: \t\x0b\x0c {\"error\":1}\r\n\r\n"),
        Ending::Error
    );
    // Whitespace-only data lines before it: joined with LF, then trimmed.
    assert_eq!(
        chat("data\ndata:\ndata:  \n data\ndata: {\"error\"\n\n"),
        Ending::Error
    );
    assert_eq!(chat("data: x\ndata: {\"error\":1}\n\n"), Ending::None);
    assert_eq!(chat("data: {\"id\":1,\"error\":2}\n\n"), Ending::None);
    assert_eq!(chat("data: { \"error\":1}\n\n"), Ending::None);
    assert_eq!(chat("data: {\"error\n\n"), Ending::None);
    assert_eq!(chat(": {\"error\":1}\n\n"), Ending::None);
    assert_eq!(chat("data: [\"error\"]\n\n"), Ending::None);
}

#[test]
fn chat_error_after_unicode_whitespace() {
    // `str::trim_start` removes Unicode White_Space, not only ASCII.
    for ws in [
        "\u{85}",
        "\u{a0}",
        "\u{1680}",
        "\u{2000}",
        "\u{200a}",
        "\u{2028}",
        "\u{2029}",
        "\u{202f}",
        "\u{205f}",
        "\u{3000}",
        " \u{3000}\t\u{a0}",
    ] {
        let raw = format!("data:{ws}{{\"error\":1}}\n\n");
        assert_eq!(chat(&raw), Ending::Error, "{raw:?}");
        let raw = format!("data:{ws}\ndata:{ws}{{\"error\":1}}\n\n");
        assert_eq!(chat(&raw), Ending::Error, "{raw:?}");
    }
    // Not White_Space: a BOM, U+180E, U+200B, the ASCII separators 0x1C-0x1F.
    for other in ["\u{feff}", "\u{180e}", "\u{200b}", "\u{1c}", "\u{1f}", "\0"] {
        let raw = format!("data: {other}{{\"error\":1}}\n\n");
        assert_eq!(chat(&raw), Ending::None, "{raw:?}");
    }
}

#[test]
fn chat_error_after_invalid_utf8() {
    // Invalid bytes decode to U+FFFD, which the trim keeps.
    let e = check(Dialect::OpenAiChat, b"data: \xff{\"error\":1}\n\n");
    assert_eq!(e, Ending::None);
    let e = check(Dialect::OpenAiChat, b"data: \xc2{\"error\":1}\n\n");
    assert_eq!(e, Ending::None);
    let e = check(Dialect::OpenAiChat, b"data: \xe3\x80{\"error\":1}\n\n");
    assert_eq!(e, Ending::None);
    let e = check(Dialect::OpenAiChat, b"data: \xc2\xa0{\"error\":1}\n\n");
    assert_eq!(e, Ending::Error);
}

#[test]
fn chat_event_error() {
    assert_eq!(chat("event: error\ndata: {\"error\":1}\n\n"), Ending::Error);
    assert_eq!(
        chat("event:error\r\ndata: {\"x\":{\"error\":1}}\r\n\r\n"),
        Ending::Error
    );
    assert_eq!(chat("event: error\rdata: [\"error\"]\r\r"), Ending::Error);
    // No data: nothing dispatched.
    assert_eq!(chat("event: error\n: \"error\"\n\n"), Ending::None);
    // The last `event` line wins.
    assert_eq!(
        chat("event: error\nevent: x\ndata: {\"x\":\"error\"}\n\n"),
        Ending::None
    );
    assert_eq!(
        chat("event: x\nevent: error\ndata: \"error\"\n\n"),
        Ending::Error
    );
    assert_eq!(chat("event: error \ndata: \"error\"\n\n"), Ending::None);
    assert_eq!(chat("event:  error\ndata: \"error\"\n\n"), Ending::None);
}

/// Kept from the old pre-filter (see `chat_ending`): an `event: error`
/// is an Error only if `[DONE]` or `"error"` occurs somewhere in the raw
/// bytes, even in a comment or after the dispatching blank line.
#[test]
fn chat_event_error_needs_a_needle_somewhere() {
    assert_eq!(
        chat("event: error\ndata: {\"message\":\"x\"}\n\n"),
        Ending::None
    );
    assert_eq!(chat("event: error\ndata: x\n: [DONE]\n\n"), Ending::Error);
    assert_eq!(chat("event: error\ndata: x\n\n: \"error\""), Ending::Error);
    assert_eq!(
        chat("event: error\ndata: x\n\ndata: [DONE]\n\n"),
        Ending::Error
    );
    assert_eq!(chat("event: error\ndata: x\n\n\"err"), Ending::None);
}

#[test]
fn chat_ordinary_chunks() {
    let chunk = "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"[DONE] \\\"error\\\"\"},\"finish_reason\":null}]}\n\n";
    assert_eq!(chat(chunk), Ending::None);
    assert_eq!(chat(": ping\n\n"), Ending::None);
    assert_eq!(chat("\n"), Ending::None);
    assert_eq!(chat(""), Ending::None);
    assert_eq!(ending(Dialect::OpenAiChat, &Event::default()), Ending::None);
}

fn named(dialect: Dialect, raw: &str) -> Ending {
    check(dialect, raw.as_bytes())
}

#[test]
fn anthropic() {
    let a = Dialect::Anthropic;
    let stop = "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    assert_eq!(named(a, stop), Ending::Complete);
    assert_eq!(named(a, "event:message_stop\r\n\r\n"), Ending::Complete);
    assert_eq!(named(a, "id: 1\revent: message_stop\r\r"), Ending::Complete);
    assert_eq!(
        named(a, "event: ping\nevent: message_stop\n\n"),
        Ending::Complete
    );
    assert_eq!(
        named(a, "event: message_stop\nevent: ping\n\n"),
        Ending::None
    );
    // An empty value leaves the type as it was.
    assert_eq!(named(a, "event: message_stop\nevent:\n\n"), Ending::None);
    assert_eq!(named(a, "event: message_stop\nevent\n\n"), Ending::None);
    assert_eq!(named(a, "event: message_stop \n\n"), Ending::None);
    assert_eq!(named(a, "event:  message_stop\n\n"), Ending::None);
    assert_eq!(named(a, "event: message_stopped\n\n"), Ending::None);
    assert_eq!(
        named(a, "data: {\"type\":\"message_stop\"}\n\n"),
        Ending::None
    );
    assert_eq!(named(a, ": event: message_stop\n\n"), Ending::None);
    assert_eq!(named(a, "\u{feff}event: message_stop\n\n"), Ending::None);
    assert_eq!(
        named(a, "event: ping\n\nevent: message_stop\n\n"),
        Ending::None
    );
    let error = "event: error\ndata: {\"type\":\"error\",\"error\":{}}\n\n";
    assert_eq!(named(a, error), Ending::Error);
    assert_eq!(named(a, "event:error\n\n"), Ending::Error);
    assert_eq!(named(a, "event: errors\ndata: error\n\n"), Ending::None);
    let delta = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"message_stop error\"}}\n\n";
    assert_eq!(named(a, delta), Ending::None);
}

#[test]
fn responses() {
    let r = Dialect::OpenAiResponses;
    for name in ["completed", "incomplete", "failed"] {
        let raw = format!("event: response.{name}\ndata: {{}}\n\n");
        assert_eq!(named(r, &raw), Ending::Complete, "{raw}");
        let raw = format!("event:response.{name}\r\n\r\n");
        assert_eq!(named(r, &raw), Ending::Complete, "{raw}");
    }
    assert_eq!(named(r, "event: response.created\n\n"), Ending::None);
    assert_eq!(named(r, "event: response.completedx\n\n"), Ending::None);
    assert_eq!(named(r, "event: response.\n\n"), Ending::None);
    assert_eq!(named(r, "event: error\ndata: {}\n\n"), Ending::Error);
    let delta = "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"response.completed error\"}\n\n";
    assert_eq!(named(r, delta), Ending::None);
    assert_eq!(
        named(r, "data: {\"type\":\"response.completed\"}\n\n"),
        Ending::None
    );
}

#[test]
fn generic_is_never_an_ending() {
    assert_eq!(named(Dialect::Generic, "data: [DONE]\n\n"), Ending::None);
    assert_eq!(
        named(Dialect::Generic, "event: error\ndata: {\"error\"}\n\n"),
        Ending::None
    );
}

/// Tiny deterministic PRNG (xorshift64).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, from: &[&'a [u8]]) -> &'a [u8] {
        from[self.below(from.len())]
    }
}

const NAMES: &[&[u8]] = &[
    b"data",
    b"data",
    b"data",
    b"event",
    b"event",
    b"id",
    b"retry",
    b"",
    b"Data",
    b"dat",
    b"datum",
    b"data ",
    b" data",
    b"\xef\xbb\xbfdata",
    b"\xef\xbb\xbfevent",
    b"eventx",
];
const COLONS: &[&[u8]] = &[b": ", b": ", b":", b":  ", b"", b"::", b": \t"];
const VALUES: &[&[u8]] = &[
    b"[DONE]",
    b"[DONE]",
    b"[DONE",
    b"DONE]",
    b"{\"error\"",
    b"{\"error\":{\"message\":\"x\"}}",
    b"{\"error\"",
    b"{\"err",
    b"or\"",
    b"\"error\"",
    b"error",
    b"error",
    b"errors",
    b"{",
    b"\"",
    b"message_stop",
    b"message_stop",
    b"message_",
    b"stop",
    b"response.",
    b"response.completed",
    b"response.incomplete",
    b"response.failed",
    b"response.created",
    b"completed",
    b"{\"id\":\"chatcmpl-1\",\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}",
    b"{\"type\":\"content_block_delta\"}",
    b"x",
    b"",
    b" ",
    b"  ",
    b"\t",
    b"\x0b",
    b"\x0c",
    b"\x1c",
    b"\0",
    b"\xc2\x85",
    b"\xc2\xa0",
    b"\xe1\x9a\x80",
    b"\xe2\x80\x80",
    b"\xe2\x80\xa8",
    b"\xe3\x80\x80",
    b"\xef\xbb\xbf",
    b"\xe2\x80\x8b",
    b"\xff",
    b"\xc2",
    b"\xe3\x80",
    b":",
];
/// Whole lines as real streams have them.
const LINES: &[&[u8]] = &[
    b"event: error",
    b"event:error",
    b"event: ping",
    b"event: message_stop",
    b"event: response.completed",
    b"event: response.output_text.delta",
    b"data: [DONE]",
    b"data: {\"error\":{\"message\":\"x\"}}",
    b"data: {\"type\":\"error\",\"error\":{}}",
    b"data: {\"id\":\"chatcmpl-1\",\"choices\":[]}",
    b"data: x",
    b"data:",
    b": [DONE]",
    b": \"error\"",
    b": keepalive",
    b"id: 7",
];
const ENDS: &[&[u8]] = &[b"\n", b"\n", b"\r\n", b"\r", b""];

/// A random event: whole lines as in real streams, and lines of random
/// field names, colons and values (one fragment half the time, else two to
/// four); random line ends, sometimes comments, blank lines inside or no
/// final blank line, and a leading BOM.
fn random_event(rng: &mut XorShift) -> Vec<u8> {
    let mut raw = vec![];
    if rng.below(16) == 0 {
        raw.extend_from_slice(b"\xef\xbb\xbf");
    }
    for _ in 0..1 + rng.below(4) {
        if rng.below(3) == 0 {
            raw.extend_from_slice(rng.pick(LINES));
            raw.extend_from_slice(rng.pick(ENDS));
            continue;
        }
        match rng.below(10) {
            0 => raw.push(b':'),
            1 if rng.below(3) == 0 => {}
            _ => {
                raw.extend_from_slice(rng.pick(NAMES));
                raw.extend_from_slice(rng.pick(COLONS));
            }
        }
        let fragments = if rng.below(2) == 0 {
            1
        } else {
            2 + rng.below(3)
        };
        for _ in 0..fragments {
            raw.extend_from_slice(rng.pick(VALUES));
        }
        raw.extend_from_slice(rng.pick(ENDS));
    }
    if rng.below(8) != 0 {
        raw.extend_from_slice(rng.pick(&[b"\n", b"\r\n", b"\r"]));
    }
    raw
}

/// Splits `raw` into one to four segments at random points.
fn random_segments(rng: &mut XorShift, raw: &[u8]) -> Event {
    let mut cuts: Vec<usize> = (0..rng.below(4))
        .map(|_| rng.below(raw.len() + 1))
        .collect();
    cuts.sort_unstable();
    let mut e = Event::default();
    let mut from = 0;
    for cut in cuts.into_iter().chain([raw.len()]) {
        e.push(Bytes::copy_from_slice(&raw[from..cut]));
        from = cut;
    }
    e
}

#[test]
fn same_as_reference_on_random_events() {
    let mut rng = XorShift(0x5eed_e0d1);
    let mut seen = [[0usize; 3]; 4];
    // Chat events typed `error` with data, by the reference's result: both
    // sides of the needle condition kept in `chat_ending`.
    let mut typed_error = [0usize; 3];
    for _ in 0..200_000 {
        let raw = random_event(&mut rng);
        let whole = event(&[&raw]);
        let split = random_segments(&mut rng, &raw);
        for (i, d) in DIALECTS.into_iter().enumerate() {
            let want = reference::ending(d, &whole);
            assert_eq!(ending(d, &whole), want, "{d:?} {raw:?}");
            assert_eq!(ending(d, &split), want, "{d:?} {:?}", split.segments());
            seen[i][want as usize] += 1;
        }
        let parsed = whole.parse();
        if parsed.event.as_deref() == Some("error") && parsed.data.is_some() {
            typed_error[reference::ending(Dialect::OpenAiChat, &whole) as usize] += 1;
        }
    }
    // The generator reaches every outcome for every dialect that has one.
    for (d, counts) in DIALECTS.into_iter().zip(seen) {
        let min = if d == Dialect::Generic { 0 } else { 1_000 };
        assert!(counts.iter().skip(1).all(|&n| n >= min), "{d:?} {counts:?}");
    }
    assert!(
        typed_error[0] >= 1_000 && typed_error[2] >= 1_000,
        "{typed_error:?}"
    );
}
