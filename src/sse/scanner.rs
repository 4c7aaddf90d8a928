//! The incremental event-stream scanner.
//!
//! Ground rules (see the module docs of [`crate::sse`] for the WHATWG text):
//!
//! - Each byte is looked at once. `memchr2(b'\n', b'\r', ..)` jumps from one
//!   line end to the next; the only state carried between chunks is the
//!   [`Position`] (plus whether a pending CR ended a blank line), the current
//!   event's slices, and the stream-start BOM decision.
//! - An event is complete when the terminator of its blank line is decided:
//!   LF, CRLF, or CR followed by something else. A CR at the end of a chunk
//!   leaves the event pending until the next byte, an injected CR completion
//!   ([`crate::sse::Keepalive::frame`]) or [`Scanner::finish`]. That keeps an
//!   event's raw bytes the same however the stream is chunked.
//! - Only the current, incomplete event is held, as `Bytes` slices of the
//!   chunks (each slice keeps its chunk's allocation alive), and never more
//!   than `max_event` bytes of it. An event longer than that overflows
//!   however it is chunked: it is reported once, dropped, and skipped to its
//!   blank line; position tracking stays exact.
//! - Returned bytes are the fed chunks themselves, less a dropped leading
//!   BOM and a swallowed LF. The one copy made: when the first upstream
//!   bytes are a BOM prefix split over chunks, the 1–2 held bytes are joined
//!   to the chunk that decides it.

use std::fmt;

use bytes::Bytes;

use super::event::Event;

const BOM: &[u8; 3] = b"\xEF\xBB\xBF";

/// Where the output stream sits, as a WHATWG parser would see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// Start of stream or right after a blank line (dispatch).
    EventBoundary,
    /// After a line terminator inside an event.
    LineStart,
    /// Inside a line.
    InLine,
    /// After a CR whose meaning depends on the next byte.
    AfterCr,
}

/// The current event grew past `max_event` bytes.
///
/// The chunk was scanned to its end all the same: `forward` holds what `Ok`
/// would have held, and [`Scanner::position`] assumes it was sent. Events
/// completed later in the same chunk were still handed out.
#[derive(Debug, Clone)]
pub struct Overflow {
    /// The `max_event` that was exceeded.
    pub limit: usize,
    /// The bytes this chunk would have forwarded.
    pub forward: Bytes,
}

impl fmt::Display for Overflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "upstream SSE event longer than {} bytes", self.limit)
    }
}

impl std::error::Error for Overflow {}

/// Line state, with the one fact `Position::AfterCr` needs besides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    Boundary,
    Start,
    In,
    /// `blank`: the CR ended a blank line, so its event is complete.
    Cr {
        blank: bool,
    },
}

/// Follows one upstream event stream; see the module docs.
#[derive(Debug)]
pub struct Scanner {
    max_event: usize,
    line: Line,
    /// The next upstream byte is dropped if it is an LF (an injected LF
    /// already completed the CR before it).
    swallow_lf: bool,
    /// The current event is complete (its CR was completed by an injected
    /// LF) and is handed out at the next feed or finish.
    pending: bool,
    /// The current event overflowed: skip it to its blank line.
    discarding: bool,
    event: Event,
    bom_decided: bool,
    /// Upstream bytes that may still be a split leading BOM (at most 2).
    bom_held: Vec<u8>,
    fed: bool,
    /// A frame was written. Only read while the BOM is undecided, that is
    /// before any upstream byte was forwarded.
    injected: bool,
}

impl Scanner {
    /// `max_event`: most bytes held for one event (cap; > 0). Every event
    /// has at least its blank line, so 0 makes every event overflow.
    pub fn new(max_event: usize) -> Self {
        Scanner {
            max_event,
            line: Line::Boundary,
            swallow_lf: false,
            pending: false,
            discarding: false,
            event: Event::default(),
            bom_decided: false,
            bom_held: Vec::new(),
            fed: false,
            injected: false,
        }
    }

    /// Feeds one upstream chunk and returns the bytes to forward downstream:
    /// a slice of `chunk`, less a leading BOM when a frame was written
    /// before it and less one LF swallowed after an injected CR completion.
    /// It is empty while a split BOM prefix is held (released with the
    /// chunk that decides it, the only copy) and may be empty after a
    /// swallow: send no empty data frame. Every event completed by this
    /// chunk is passed to `on_event` in order.
    ///
    /// # Errors
    ///
    /// [`Overflow`] when an event exceeds `max_event` bytes; it carries the
    /// bytes to forward, the chunk having been scanned to its end.
    pub fn feed(
        &mut self,
        chunk: Bytes,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<Bytes, Overflow> {
        if chunk.is_empty() {
            return Ok(chunk);
        }
        self.fed = true;
        let Some((data, bom_len)) = self.resolve_bom(chunk) else {
            return Ok(Bytes::new());
        };
        let mut skip = if self.injected { bom_len } else { 0 };
        let mut pos = bom_len;
        if self.swallow_lf && pos < data.len() {
            self.swallow_lf = false;
            if data[pos] == b'\n' {
                pos += 1;
                skip = pos;
            }
        }
        let mut overflowed = false;
        if self.pending {
            self.pending = false;
            self.dispatch(&data, pos, pos, on_event, &mut overflowed);
        }
        self.scan(&data, pos, on_event, &mut overflowed);
        let forward = data.slice(skip..);
        self.check();
        if overflowed {
            Err(Overflow {
                limit: self.max_event,
                forward,
            })
        } else {
            Ok(forward)
        }
    }

    /// Ends the stream: hands out an event whose blank line ended with the
    /// final CR (a WHATWG parser dispatched it at that CR) and returns any
    /// held BOM-prefix bytes to forward. The unterminated rest is dropped,
    /// as parsers drop it.
    pub fn finish(&mut self, on_event: &mut dyn FnMut(&Event)) -> Bytes {
        let complete = self.pending || self.line == Line::Cr { blank: true };
        if complete && !self.discarding {
            on_event(&self.event);
        }
        if complete {
            self.line = Line::Boundary;
        }
        self.event.clear();
        self.pending = false;
        self.discarding = false;
        self.bom_decided = true;
        let held = Bytes::from(std::mem::take(&mut self.bom_held));
        self.check();
        held
    }

    /// The ground rules of the module doc that hold between calls
    /// (debug builds only).
    fn check(&self) {
        debug_assert!(
            self.event.len() <= self.max_event,
            "more than max_event bytes held"
        );
        debug_assert!(
            !self.discarding || self.event.is_empty(),
            "an overflowed event still holds bytes"
        );
        debug_assert!(self.bom_held.len() < BOM.len(), "a whole BOM held");
        debug_assert!(
            self.bom_decided || !self.bom_held.is_empty() || !self.fed,
            "BOM undecided after bytes that decide it"
        );
        debug_assert!(!self.pending, "a completed event left undelivered");
    }

    /// Where the bytes forwarded and injected so far leave a client parser.
    pub fn position(&self) -> Position {
        match self.line {
            Line::Boundary => Position::EventBoundary,
            Line::Start => Position::LineStart,
            Line::In => Position::InLine,
            Line::Cr { .. } => Position::AfterCr,
        }
    }

    /// True until the first upstream byte has been fed.
    pub fn at_stream_start(&self) -> bool {
        !self.fed
    }

    /// Records that a frame valid at the current position was written.
    /// After a CR the frame began with an LF completing it, so a following
    /// upstream LF is swallowed and a blank line's event is complete.
    pub(crate) fn note_injection(&mut self) {
        self.injected = true;
        if let Line::Cr { blank } = self.line {
            self.swallow_lf = true;
            self.pending |= blank;
            self.line = Line::Start;
        }
    }

    /// Decides the stream-start BOM. `None` while the chunk only extends a
    /// BOM prefix (held); otherwise the bytes to scan and forward (the held
    /// prefix joined to the chunk) and the length of a BOM at their front.
    fn resolve_bom(&mut self, chunk: Bytes) -> Option<(Bytes, usize)> {
        if self.bom_decided {
            return Some((chunk, 0));
        }
        let have = self.bom_held.len();
        let take = (BOM.len() - have).min(chunk.len());
        if chunk[..take] != BOM[have..have + take] {
            self.bom_decided = true;
            return Some((self.join_held(chunk), 0));
        }
        if have + take < BOM.len() {
            self.bom_held.extend_from_slice(&chunk);
            return None;
        }
        self.bom_decided = true;
        Some((self.join_held(chunk), BOM.len()))
    }

    fn join_held(&mut self, chunk: Bytes) -> Bytes {
        if self.bom_held.is_empty() {
            return chunk;
        }
        let mut joined = std::mem::take(&mut self.bom_held);
        joined.extend_from_slice(&chunk);
        Bytes::from(joined)
    }

    /// Scans `data[pos..]`: line ends via `memchr2`, events dispatched at
    /// blank lines, the unfinished rest held.
    fn scan(
        &mut self,
        data: &Bytes,
        mut pos: usize,
        on_event: &mut dyn FnMut(&Event),
        overflowed: &mut bool,
    ) {
        let mut seg_start = pos;
        if let (Line::Cr { blank }, Some(&b)) = (self.line, data.get(pos)) {
            pos += usize::from(b == b'\n');
            self.end_line(blank, data, &mut seg_start, pos, on_event, overflowed);
        }
        while let Some(i) = memchr::memchr2(b'\n', b'\r', &data[pos..]) {
            let at = pos + i;
            let blank = i == 0 && matches!(self.line, Line::Boundary | Line::Start);
            let end = match (data[at], data.get(at + 1)) {
                (b'\r', None) => {
                    self.line = Line::Cr { blank };
                    pos = data.len();
                    break;
                }
                (b'\r', Some(b'\n')) => at + 2,
                _ => at + 1,
            };
            self.end_line(blank, data, &mut seg_start, end, on_event, overflowed);
            pos = end;
        }
        if pos < data.len() {
            self.line = Line::In;
        }
        self.hold(data.slice(seg_start..), overflowed);
    }

    /// A line ended just before `end`; a blank one dispatches the event.
    fn end_line(
        &mut self,
        blank: bool,
        data: &Bytes,
        seg_start: &mut usize,
        end: usize,
        on_event: &mut dyn FnMut(&Event),
        overflowed: &mut bool,
    ) {
        if blank {
            self.dispatch(data, *seg_start, end, on_event, overflowed);
            *seg_start = end;
            self.line = Line::Boundary;
        } else {
            self.line = Line::Start;
        }
    }

    /// Completes the current event with `data[from..to]` and hands it out,
    /// unless it overflowed.
    fn dispatch(
        &mut self,
        data: &Bytes,
        from: usize,
        to: usize,
        on_event: &mut dyn FnMut(&Event),
        overflowed: &mut bool,
    ) {
        if self.discarding {
            self.discarding = false;
        } else if self.event.len() + (to - from) > self.max_event {
            *overflowed = true;
        } else {
            self.event.push(data.slice(from..to));
            on_event(&self.event);
        }
        self.event.clear();
    }

    /// Holds the incomplete event's bytes at the end of a chunk.
    fn hold(&mut self, rest: Bytes, overflowed: &mut bool) {
        if rest.is_empty() || self.discarding {
            return;
        }
        if self.event.len() + rest.len() > self.max_event {
            *overflowed = true;
            self.discarding = true;
            self.event.clear();
        } else {
            self.event.push(rest);
        }
    }
}
