//! A plain reference parser for `text/event-stream`, written to follow the
//! WHATWG HTML standard step by step rather than to be fast. It is the
//! oracle of the scanner's tests and fuzz targets, and public so that other
//! modules' tests and the fuzz crate can use it.
//!
//! Decoding works on bytes: the stream-leading BOM is stripped as the UTF-8
//! decoder does, and each field name and value is decoded with replacement
//! on its own. That equals decoding the whole stream first, because every
//! delimiter (`\r`, `\n`, `:`, space) is ASCII and a malformed sequence ends
//! at any ASCII byte.

use super::scanner::Position;

/// One dispatched event, as a browser's `MessageEvent` would carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatched {
    /// The type: the `event` buffer, or `message` when it was empty.
    pub event_type: String,
    /// The data buffer less its final LF.
    pub data: String,
    /// The source's last event ID string at dispatch.
    pub last_event_id: String,
}

/// Incremental reference parser.
#[derive(Debug, Clone, Default)]
pub struct Parser {
    /// Bytes at stream start that may still be a BOM.
    start: Vec<u8>,
    started: bool,
    line: Vec<u8>,
    /// The previous byte was a CR that ended a line: skip one LF.
    after_cr: bool,
    /// No line yet, or the last line was blank.
    at_boundary: bool,
    data: String,
    event_type: String,
    last_event_id_buffer: String,
    last_event_id: String,
    retry: Option<u64>,
    events: Vec<Dispatched>,
}

impl Parser {
    /// A parser at stream start.
    pub fn new() -> Self {
        Parser {
            at_boundary: true,
            ..Parser::default()
        }
    }

    /// Feeds the next bytes of the stream.
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.started {
                self.byte(b);
            } else {
                self.start_byte(b);
            }
        }
    }

    /// The events dispatched so far.
    pub fn events(&self) -> &[Dispatched] {
        &self.events
    }

    /// The reconnection time set by `retry`, if any.
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }

    /// The line state after the bytes fed so far.
    pub fn position(&self) -> Position {
        if self.after_cr {
            Position::AfterCr
        } else if !self.line.is_empty() {
            Position::InLine
        } else if self.at_boundary {
            Position::EventBoundary
        } else {
            Position::LineStart
        }
    }

    /// The decoder's BOM sniffing: hold up to three bytes, strip `EF BB BF`.
    fn start_byte(&mut self, b: u8) {
        self.start.push(b);
        let bom: &[u8] = b"\xEF\xBB\xBF";
        if bom.starts_with(&self.start) && self.start.len() < bom.len() {
            return;
        }
        self.started = true;
        let held = std::mem::take(&mut self.start);
        if held != bom {
            held.into_iter().for_each(|b| self.byte(b));
        }
    }

    /// "Lines must be separated by either a CRLF pair, a single LF, or a
    /// single CR."
    fn byte(&mut self, b: u8) {
        let after_cr = std::mem::replace(&mut self.after_cr, false);
        match b {
            b'\n' if after_cr => {}
            b'\n' => self.end_line(),
            b'\r' => {
                self.end_line();
                self.after_cr = true;
            }
            _ => self.line.push(b),
        }
    }

    fn end_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        self.at_boundary = line.is_empty();
        if line.is_empty() {
            self.dispatch();
        } else if line[0] != b':' {
            let (name, value) = super::event::split_field(&line);
            self.field(name, &String::from_utf8_lossy(value));
        }
    }

    /// "Process the field".
    fn field(&mut self, name: &[u8], value: &str) {
        match name {
            b"event" => self.event_type = value.to_owned(),
            b"data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            b"id" if !value.contains('\0') => self.last_event_id_buffer = value.to_owned(),
            b"retry" if !value.is_empty() && value.bytes().all(|c| c.is_ascii_digit()) => {
                self.retry = Some(value.parse().unwrap_or(u64::MAX));
            }
            _ => {}
        }
    }

    /// "Dispatch the event".
    fn dispatch(&mut self) {
        self.last_event_id = self.last_event_id_buffer.clone();
        if self.data.is_empty() {
            self.event_type.clear();
            return;
        }
        if self.data.ends_with('\n') {
            self.data.pop();
        }
        let event_type = match std::mem::take(&mut self.event_type) {
            t if t.is_empty() => "message".to_owned(),
            t => t,
        };
        self.events.push(Dispatched {
            event_type,
            data: std::mem::take(&mut self.data),
            last_event_id: self.last_event_id.clone(),
        });
    }
}

/// Parses a whole stream; the unterminated rest is discarded, as at EOF.
pub fn parse(bytes: &[u8]) -> Vec<Dispatched> {
    let mut p = Parser::new();
    p.feed(bytes);
    p.events
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(t: &str, d: &str, id: &str) -> Dispatched {
        Dispatched {
            event_type: t.into(),
            data: d.into(),
            last_event_id: id.into(),
        }
    }

    #[test]
    fn spec_examples() {
        // The four examples of the standard's "event stream interpretation".
        let s = b"data: YHOO\ndata: +2\ndata: 10\n\n";
        assert_eq!(parse(s), [ev("message", "YHOO\n+2\n10", "")]);
        let s = b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n";
        assert_eq!(
            parse(s),
            [
                ev("message", "first event", "1"),
                ev("message", "second event", "")
            ]
        );
        let s = b"data\n\ndata\ndata\n\ndata:";
        assert_eq!(parse(s), [ev("message", "", ""), ev("message", "\n", "")]);
        let s = b"data:test\n\ndata: test\n\n";
        assert_eq!(
            parse(s),
            [ev("message", "test", ""), ev("message", "test", "")]
        );
    }

    #[test]
    fn line_ends_and_bom() {
        let want = [ev("message", "a", ""), ev("message", "b", "")];
        for s in [
            &b"data:a\r\rdata:b\r\n\r\n"[..],
            b"\xEF\xBB\xBFdata:a\n\ndata:b\r\r",
        ] {
            assert_eq!(parse(s), want);
        }
        // A second BOM is content: it poisons the field name.
        assert_eq!(parse(b"\xEF\xBB\xBF\xEF\xBB\xBFdata:a\n\n"), []);
        // An incomplete BOM is content too (decoded as U+FFFD).
        assert_eq!(
            parse(b"\xEF\xBBdata:a\n\ndata:b\n\n"),
            [ev("message", "b", "")]
        );
        // CR LF split over feeds is still one line end.
        let mut p = Parser::new();
        for part in [&b"data:a\r"[..], b"\n", b"\r", b"\n"] {
            p.feed(part);
        }
        assert_eq!(p.events(), [ev("message", "a", "")]);
    }

    #[test]
    fn fields() {
        let s = b"event: add\ndata: 1\nretry: 250\nid: 9\nfoo: bar\nEvent: x\n\n";
        let mut p = Parser::new();
        p.feed(s);
        assert_eq!(p.events(), [ev("add", "1", "9")]);
        assert_eq!(p.retry(), Some(250));
        p.feed(b"retry: 1s\nretry\n\nevent: gone\n\ndata: after\n\n");
        assert_eq!(p.retry(), Some(250));
        // The type is reset by a dispatch without data; the id sticks.
        assert_eq!(p.events()[1], ev("message", "after", "9"));
    }

    #[test]
    fn last_event_id_semantics() {
        let s = b"id: 1\ndata: a\n\ndata: b\n\nid: 2\n\ndata: c\n\nid\ndata: d\n\nid: x\0y\ndata: e\n\n";
        let ids: Vec<_> = parse(s).into_iter().map(|e| e.last_event_id).collect();
        assert_eq!(ids, ["1", "1", "2", "", ""]);
        // The id of an unterminated event is never set.
        let mut p = Parser::new();
        p.feed(b"data: a\n\nid: 5\ndata: b\n");
        assert_eq!(p.events(), [ev("message", "a", "")]);
    }

    #[test]
    fn positions() {
        let mut p = Parser::new();
        let steps: [(&[u8], Position); 9] = [
            (b"", Position::EventBoundary),
            (b"\xEF\xBB", Position::EventBoundary),
            (b"\xBF", Position::EventBoundary),
            (b"da", Position::InLine),
            (b"ta\r", Position::AfterCr),
            (b"\n", Position::LineStart),
            (b":c\n", Position::LineStart),
            (b"\r", Position::AfterCr),
            (b"\n", Position::EventBoundary),
        ];
        for (bytes, want) in steps {
            p.feed(bytes);
            assert_eq!(p.position(), want, "after {bytes:?}");
        }
    }
}
