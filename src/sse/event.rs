//! One complete upstream event as zero-copy slices of the chunks it came in.
//!
//! The raw bytes are every line of the event (comments included) up to and
//! including the dispatching blank line with its whole terminator. They
//! never include a stream-leading BOM. Nothing is copied until a caller
//! asks for [`Event::contains`] across a chunk boundary or [`Event::parse`].

use bytes::Bytes;
use memchr::memmem;

/// One complete upstream event: its raw bytes (all lines incl. comments, up
/// to and including the dispatching blank line) as zero-copy slices of the
/// chunks.
#[derive(Debug, Default)]
pub struct Event {
    segments: Vec<Bytes>,
    len: usize,
}

/// The WHATWG field parse of one event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedEvent {
    /// The `event` field's value; `None` when absent or empty (type
    /// `message`).
    pub event: Option<String>,
    /// The `data` lines' values joined with `\n`; `None` when the event has
    /// no `data` field (a WHATWG parser then dispatches nothing).
    pub data: Option<String>,
    /// The last `id` field of this event without a NUL; `None` when there is
    /// none. (The stream's last-event-ID carries across events; this is only
    /// what this event sets.)
    pub id: Option<String>,
}

impl Event {
    /// The raw bytes, in order.
    pub fn segments(&self) -> &[Bytes] {
        &self.segments
    }

    /// Total raw length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true for an event handed out by the scanner (it holds at least
    /// its blank line).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True if `needle` occurs in the raw bytes, also when it straddles
    /// segment boundaries.
    #[cfg(test)]
    pub(crate) fn contains(&self, needle: &[u8]) -> bool {
        self.contains_with(&memmem::Finder::new(needle))
    }

    /// [`Event::contains`] with a searcher built once by the caller (on the
    /// per-event path, building the searcher costs more than the search).
    pub fn contains_with(&self, finder: &memmem::Finder<'_>) -> bool {
        let n = finder.needle().len();
        if n == 0 {
            return true;
        }
        if self.segments.iter().any(|s| finder.find(s).is_some()) {
            return true;
        }
        self.segments.len() > 1 && self.straddles(finder, n)
    }

    /// True if `prefix` occurs directly followed by one of `rests`: one
    /// search for several needles that share a prefix, instead of one
    /// search per needle.
    pub fn contains_prefixed(&self, prefix: &memmem::Finder<'_>, rests: &[&[u8]]) -> bool {
        match self.segments.as_slice() {
            [one] => prefixed_in(one, prefix, rests),
            // Split across chunks (rare): search a joined copy.
            _ => prefixed_in(&self.segments.concat(), prefix, rests),
        }
    }

    /// Looks for matches that start in one segment and end in a later one:
    /// each boundary is searched in the last `n - 1` bytes before it joined
    /// with the first `n - 1` bytes after it.
    fn straddles(&self, finder: &memmem::Finder<'_>, n: usize) -> bool {
        let keep = n - 1;
        let mut carry: Vec<u8> = Vec::with_capacity(2 * keep);
        let mut joint: Vec<u8> = Vec::with_capacity(2 * keep);
        for seg in &self.segments {
            if !carry.is_empty() {
                joint.clear();
                joint.extend_from_slice(&carry);
                joint.extend_from_slice(&seg[..seg.len().min(keep)]);
                if finder.find(&joint).is_some() {
                    return true;
                }
            }
            if seg.len() >= keep {
                carry.clear();
                carry.extend_from_slice(&seg[seg.len() - keep..]);
            } else {
                carry.extend_from_slice(seg);
                let excess = carry.len().saturating_sub(keep);
                carry.drain(..excess);
            }
        }
        false
    }

    /// True if a line sets one of the fields a parser acts on (`data`,
    /// `event`, `id`, `retry`). Comments and unknown fields (a field name
    /// after a mid-stream BOM included) change nothing: a block of only
    /// those makes no parser do anything.
    pub fn has_field(&self) -> bool {
        let joined;
        let raw: &[u8] = match self.segments.as_slice() {
            [one] => one,
            many => {
                joined = many.concat();
                &joined
            }
        };
        raw.split(|&b| b == b'\n' || b == b'\r').any(|line| {
            let name = line.split(|&b| b == b':').next().unwrap_or(line);
            matches!(name, b"data" | b"event" | b"id" | b"retry")
        })
    }

    /// The length of the dispatching blank line's terminator at the end of
    /// the raw bytes: 2 for CRLF, 1 for LF or CR. (The blank line is always
    /// last, and a CR before a final LF always pairs with it.)
    pub fn terminator_len(&self) -> usize {
        let mut tail = self.segments.iter().rev().flat_map(|s| s.iter().rev());
        match (tail.next(), tail.next()) {
            (Some(b'\n'), Some(b'\r')) => 2,
            (Some(_), _) => 1,
            (None, _) => 0,
        }
    }

    /// WHATWG field parse of this event. Copies the raw bytes once; meant
    /// for the few events a caller selects with [`Event::contains`].
    pub fn parse(&self) -> ParsedEvent {
        let raw = self.segments.concat();
        let mut parsed = ParsedEvent::default();
        let mut data: Option<Vec<u8>> = None;
        for line in Lines::new(&raw) {
            if line.is_empty() {
                break;
            }
            apply_field(line, &mut parsed, &mut data);
        }
        if let Some(mut data) = data {
            data.pop(); // the LF appended after the last data line
            parsed.data = Some(String::from_utf8_lossy(&data).into_owned());
        }
        parsed
    }

    /// Appends a slice (the scanner's only way to build events).
    pub(crate) fn push(&mut self, seg: Bytes) {
        if !seg.is_empty() {
            self.len += seg.len();
            self.segments.push(seg);
        }
    }

    /// Empties the event, keeping its allocation.
    pub(crate) fn clear(&mut self) {
        self.segments.clear();
        self.len = 0;
    }
}

fn prefixed_in(hay: &[u8], prefix: &memmem::Finder<'_>, rests: &[&[u8]]) -> bool {
    let n = prefix.needle().len();
    prefix
        .find_iter(hay)
        .any(|at| rests.iter().any(|r| hay[at + n..].starts_with(r)))
}

/// Splits a field line at the first `:` and drops one leading space of the
/// value.
pub(crate) fn split_field(line: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b':', line) {
        Some(i) => {
            let value = &line[i + 1..];
            (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
        }
        None => (line, &[]),
    }
}

fn apply_field(line: &[u8], parsed: &mut ParsedEvent, data: &mut Option<Vec<u8>>) {
    if line[0] == b':' {
        return;
    }
    let (name, value) = split_field(line);
    match name {
        b"event" => {
            parsed.event = (!value.is_empty()).then(|| lossy(value));
        }
        b"data" => {
            let buf = data.get_or_insert_with(Vec::new);
            buf.extend_from_slice(value);
            buf.push(b'\n');
        }
        b"id" if !value.contains(&0) => parsed.id = Some(lossy(value)),
        _ => {}
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Lines of a complete buffer, split at CRLF, LF or CR; a trailing
/// unterminated piece is yielded too.
struct Lines<'a> {
    rest: &'a [u8],
}

impl<'a> Lines<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Lines { rest: buf }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let rest = self.rest;
        let Some(i) = memchr::memchr2(b'\n', b'\r', rest) else {
            self.rest = &[];
            return Some(rest);
        };
        let crlf = rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n');
        self.rest = &rest[i + 1 + usize::from(crlf)..];
        Some(&rest[..i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(parts: &[&[u8]]) -> Event {
        let mut e = Event::default();
        for p in parts {
            e.push(Bytes::copy_from_slice(p));
        }
        e
    }

    #[test]
    fn contains_finds_needles_across_every_split() {
        let raw = b"event: message_delta\ndata: {\"usage\":{\"output_tokens\":7}}\n\n";
        let needles: [&[u8]; 4] = [b"message_delta", b"\"usage\"", b"}}\n\n", b"e"];
        for a in 0..=raw.len() {
            for b in a..=raw.len() {
                let e = event(&[&raw[..a], &raw[a..b], &raw[b..]]);
                for n in needles {
                    assert!(e.contains(n), "{a} {b} {:?}", String::from_utf8_lossy(n));
                }
                assert!(!e.contains(b"message_stop"));
                assert!(!e.contains(b"\n\n\n"));
            }
        }
    }

    #[test]
    fn contains_prefixed_across_every_split() {
        let raw = b"event: x
data: {\"usage\":null,\"u\":{\"usage\": {\"n\":1}}}\n\n";
        let prefix = memmem::Finder::new(b"\"usage\":");
        for a in 0..=raw.len() {
            for b in a..=raw.len() {
                let e = event(&[&raw[..a], &raw[a..b], &raw[b..]]);
                // The second occurrence is the one followed by " {".
                assert!(e.contains_prefixed(&prefix, &[b"{", b" {"]), "{a} {b}");
                assert!(e.contains_prefixed(&prefix, &[b"null,"]), "{a} {b}");
                assert!(!e.contains_prefixed(&prefix, &[b"{\"", b"  {"]), "{a} {b}");
            }
        }
        assert!(!event(&[]).contains_prefixed(&prefix, &[b""]));
        let tail = event(&[b"data: \"usage\":"]);
        assert!(tail.contains_prefixed(&prefix, &[b""]));
        assert!(!tail.contains_prefixed(&prefix, &[b"{"]));
    }

    #[test]
    fn contains_across_many_one_byte_segments() {
        let raw = b"data: [DONE]\n\n";
        let parts: Vec<&[u8]> = raw.chunks(1).collect();
        let e = event(&parts);
        assert_eq!(e.segments().len(), raw.len());
        assert!(e.contains(b"[DONE]"));
        assert!(e.contains(raw));
        assert!(!e.contains(b"[DONE]]"));
        assert!(e.contains(b""));
    }

    #[test]
    fn parse_fields() {
        let e = event(&[b"event: ping\r\ndata: {\"a\":", b"1}\rdata\n: c\nid: 7\n\n"]);
        let p = e.parse();
        assert_eq!(p.event.as_deref(), Some("ping"));
        assert_eq!(p.data.as_deref(), Some("{\"a\":1}\n"));
        assert_eq!(p.id.as_deref(), Some("7"));
        assert_eq!(e.len(), e.segments().iter().map(Bytes::len).sum::<usize>());
    }

    #[test]
    fn parse_edge_cases() {
        let p = event(&[b": only a comment\n\n"]).parse();
        assert_eq!(p, ParsedEvent::default());
        let p = event(&[b"data:  two spaces\nevent:\nid: a\0b\n\n"]).parse();
        assert_eq!(p.data.as_deref(), Some(" two spaces"));
        assert_eq!(p.event, None);
        assert_eq!(p.id, None);
        let p = event(&[b"Data: x\ndata:\n\n"]).parse();
        assert_eq!(p.data.as_deref(), Some(""));
        let p = event(&[b"data: \xff\n\n"]).parse();
        assert_eq!(p.data.as_deref(), Some("\u{fffd}"));
    }
}
