//! Keepalive frames and where each may go.
//!
//! | position        | written                | why it is invisible                         |
//! |-----------------|------------------------|---------------------------------------------|
//! | `EventBoundary` | `full`                 | data and type buffers are empty there       |
//! | `LineStart`     | `line` (one comment)   | comments change no parser state             |
//! | `AfterCr`       | `"\n"` + `line`        | the LF completes the CR's line ending; the  |
//! |                 |                        | scanner swallows the upstream's own LF      |
//! | `InLine`        | nothing                | any byte would become part of the line      |
//!
//! `full` may be an event (Anthropic's `ping`) or a comment plus a blank
//! line; which one a route uses is configuration, because real clients
//! differ (openai-python turns a blank line after any `id:` into an empty
//! event, some SDKs choke on bare comments). Frames are LF-only, so a frame
//! never ends in an undecided CR, and never start with a BOM.

use std::fmt;

use bytes::Bytes;

use super::scanner::{Position, Scanner};

/// The generic (and OpenAI) full frame: a comment plus a blank line.
pub(crate) const COMMENT_FULL: &[u8] = b": keepalive\n\n";
/// Anthropic's own keepalive event, skipped by its SDKs.
pub(crate) const ANTHROPIC_PING_FULL: &[u8] = b"event: ping\ndata: {\"type\": \"ping\"}\n\n";
/// The mid-event frame: one comment line.
pub(crate) const COMMENT_LINE: &[u8] = b": keepalive\n";

/// Why a frame was refused by [`Keepalive::try_new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// `line` is not exactly one line starting with `:` and ending in LF.
    LineNotOneComment,
    /// `full` does not end with a blank line (`"\n"` alone or `"\n\n"`).
    FullNotBlankTerminated,
    /// A frame contains a CR (frames are LF-only).
    CarriageReturn,
    /// `full` starts with a BOM.
    LeadingBom,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FrameError::LineNotOneComment => {
                "keepalive line must be one comment line: ':' ... '\\n'"
            }
            FrameError::FullNotBlankTerminated => {
                "keepalive frame must be complete lines ending with a blank line"
            }
            FrameError::CarriageReturn => "keepalive frames must use LF line ends only",
            FrameError::LeadingBom => "keepalive frame must not start with a BOM",
        })
    }
}

impl std::error::Error for FrameError {}

/// Keepalive frames for one stream.
#[derive(Debug, Clone)]
pub struct Keepalive {
    /// Used at an event boundary.
    full: Bytes,
    /// Used at a line start inside an event.
    line: Bytes,
    /// `"\n"` + `line`, used after an undecided CR.
    cr_line: Bytes,
}

impl Keepalive {
    /// Builds the frames: `line` must be one comment line ending in `\n`,
    /// `full` a sequence of complete lines ending with a blank line; both
    /// LF-only, `full` not starting with a BOM.
    ///
    /// # Errors
    ///
    /// The first rule broken.
    pub fn try_new(full: Bytes, line: Bytes) -> Result<Self, FrameError> {
        validate(&full, &line)?;
        let mut cr_line = Vec::with_capacity(line.len() + 1);
        cr_line.push(b'\n');
        cr_line.extend_from_slice(&line);
        Ok(Keepalive {
            full,
            line,
            cr_line: Bytes::from(cr_line),
        })
    }

    /// `: keepalive\n\n` at boundaries, `: keepalive\n` inside events.
    pub fn comment() -> Self {
        Self::from_static(COMMENT_FULL)
    }

    /// Anthropic's `event: ping` at boundaries, `: keepalive\n` inside
    /// events.
    pub fn anthropic_ping() -> Self {
        Self::from_static(ANTHROPIC_PING_FULL)
    }

    fn from_static(full: &'static [u8]) -> Self {
        Keepalive {
            full: Bytes::from_static(full),
            line: Bytes::from_static(COMMENT_LINE),
            cr_line: Bytes::from_static(b"\n: keepalive\n"),
        }
    }

    /// The frame used at event boundaries.
    pub fn full(&self) -> &Bytes {
        &self.full
    }

    /// The bytes to write now given the scanner's position, updating the
    /// scanner as if they had been sent, or `None` when injection is not
    /// safe (`InLine`). Also marks the scanner so that a later leading
    /// upstream BOM is dropped.
    pub fn frame(&self, scanner: &mut Scanner) -> Option<Bytes> {
        let bytes = match scanner.position() {
            Position::EventBoundary => self.full.clone(),
            Position::LineStart => self.line.clone(),
            Position::AfterCr => self.cr_line.clone(),
            Position::InLine => return None,
        };
        scanner.note_injection();
        Some(bytes)
    }
}

fn validate(full: &[u8], line: &[u8]) -> Result<(), FrameError> {
    if full.contains(&b'\r') || line.contains(&b'\r') {
        return Err(FrameError::CarriageReturn);
    }
    let one_comment = line.first() == Some(&b':')
        && line.last() == Some(&b'\n')
        && memchr::memchr(b'\n', line) == Some(line.len() - 1);
    if !one_comment {
        return Err(FrameError::LineNotOneComment);
    }
    if !(full == b"\n" || full.ends_with(b"\n\n")) {
        return Err(FrameError::FullNotBlankTerminated);
    }
    if full.starts_with(b"\xEF\xBB\xBF") {
        return Err(FrameError::LeadingBom);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn try_new(full: &[u8], line: &[u8]) -> Result<Keepalive, FrameError> {
        Keepalive::try_new(Bytes::copy_from_slice(full), Bytes::copy_from_slice(line))
    }

    #[test]
    fn built_in_frames_validate() {
        for full in [COMMENT_FULL, ANTHROPIC_PING_FULL] {
            assert!(try_new(full, COMMENT_LINE).is_ok());
        }
        assert_eq!(&Keepalive::comment().full()[..], COMMENT_FULL);
        assert_eq!(&Keepalive::anthropic_ping().full()[..], ANTHROPIC_PING_FULL);
        let k = try_new(COMMENT_FULL, COMMENT_LINE).map(|k| k.cr_line);
        assert_eq!(k.as_deref().ok(), Some(&Keepalive::comment().cr_line[..]));
    }

    #[test]
    fn invalid_frames_are_refused() {
        use FrameError::*;
        let cases: [(&[u8], &[u8], FrameError); 9] = [
            (b": k\n\n", b"data: x\n", LineNotOneComment),
            (b": k\n\n", b": k", LineNotOneComment),
            (b": k\n\n", b": k\n: j\n", LineNotOneComment),
            (b": k\n\n", b"", LineNotOneComment),
            (b": k\n", b": k\n", FullNotBlankTerminated),
            (b"", b": k\n", FullNotBlankTerminated),
            (b"data: x", b": k\n", FullNotBlankTerminated),
            (b": k\r\n\r\n", b": k\n", CarriageReturn),
            (b"\xEF\xBB\xBF: k\n\n", b": k\n", LeadingBom),
        ];
        for (full, line, want) in cases {
            assert_eq!(try_new(full, line).err(), Some(want), "{full:?} {line:?}");
        }
        assert!(try_new(b"\n", b":\n").is_ok());
        assert!(try_new(b": a\n\n: b\n\n", b":\n").is_ok());
    }

    #[test]
    fn frame_per_position() {
        let k = Keepalive::comment();
        let mut s = Scanner::new(1024);
        let feed = |s: &mut Scanner, b: &'static [u8]| {
            s.feed(Bytes::from_static(b), &mut |_| {})
                .map(|b| b.len())
                .ok()
        };
        assert_eq!(k.frame(&mut s).as_deref(), Some(COMMENT_FULL));
        assert_eq!(feed(&mut s, b"data: a"), Some(7));
        assert_eq!(k.frame(&mut s), None);
        assert_eq!(feed(&mut s, b"\n"), Some(1));
        assert_eq!(k.frame(&mut s).as_deref(), Some(COMMENT_LINE));
        assert_eq!(s.position(), Position::LineStart);
        assert_eq!(feed(&mut s, b"data: b\r"), Some(8));
        assert_eq!(k.frame(&mut s).as_deref(), Some(&b"\n: keepalive\n"[..]));
        assert_eq!(s.position(), Position::LineStart);
        assert_eq!(k.frame(&mut s).as_deref(), Some(COMMENT_LINE));
        // The upstream's LF after the CR is swallowed, the rest forwarded.
        assert_eq!(feed(&mut s, b"\n\n"), Some(1));
        assert_eq!(s.position(), Position::EventBoundary);
    }
}
