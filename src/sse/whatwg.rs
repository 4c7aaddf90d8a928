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
mod tests;
