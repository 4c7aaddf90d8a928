//! Response body decoding: the bytes of the connection's read buffer
//! become body frames without copying (each data frame is split off the
//! buffer), and framing is consumed as soon as it has arrived, so the end
//! of a body is known the moment its last bytes are in: the connection is
//! checked in (back to the pool) before anyone polls again.
//!
//! Chunked coding (RFC 9112 §7.1): `chunk-size [chunk-ext] CRLF data CRLF`,
//! ending with a zero-size chunk and an optional trailer section. Sizes are
//! hex without sign or prefix (at most 16 digits); extensions are skipped.
//! Framing lines (size lines, the CRLF after data, the blank line that ends
//! the body) must end in CRLF; trailer field lines may end in a bare LF, as
//! head lines may. A size line longer than [`MAX_LINE`], or a trailer
//! section longer than [`MAX_HEAD`], is refused rather than buffered.
//!
//! httparse reads size lines (`parse_chunk_size`) and trailer fields
//! (`parse_headers`, as [`super::head::parse_trailers`]). The relay refuses
//! what httparse would take but chunk framing must not: a size line without
//! digits, a bare LF or a control character in an extension, and a trailer
//! section ended by a bare LF.

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use hyper::body::Frame;

use super::head::{Framing, MAX_HEAD, WireError, head_end, parse_trailers};

/// Longest chunk-size line (size and extensions).
pub const MAX_LINE: usize = 4096;

#[derive(Debug)]
pub struct Decoder {
    state: State,
}

#[derive(Debug)]
enum State {
    Length(u64),
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk: bytes left.
    Data(u64),
    /// After a chunk's data: its CRLF.
    DataEnd,
    /// After the last chunk: trailer fields or the final CRLF; how far
    /// the buffer was searched for the section's end.
    Trailers(usize),
    /// The trailer section, parsed, not yet handed out.
    TrailersReady(Box<HeaderMap>),
    Close,
    Done,
}

impl Decoder {
    pub fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Size,
            Framing::Close => State::Close,
        };
        Self { state }
    }

    /// The whole body has been handed out.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Ends only at the close of the connection.
    pub fn is_close_delimited(&self) -> bool {
        matches!(self.state, State::Close)
    }

    /// Bytes still expected, when the framing says.
    pub fn remaining(&self) -> Option<u64> {
        match self.state {
            State::Length(n) => Some(n),
            State::Done => Some(0),
            _ => None,
        }
    }

    /// The connection closed: a close-delimited body ends here.
    pub fn at_eof(&mut self) -> bool {
        if self.is_close_delimited() {
            self.state = State::Done;
        }
        self.is_done()
    }

    /// The next frame the buffer holds, if any. `None` with
    /// [`Decoder::is_done`] false means more bytes are needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame<Bytes>>, WireError> {
        self.settle(buf)?;
        let frame = match &mut self.state {
            State::Length(left) | State::Data(left) if !buf.is_empty() => {
                let take = usize::try_from(*left).map_or(buf.len(), |l| l.min(buf.len()));
                *left -= take as u64;
                if *left == 0 {
                    self.state = match self.state {
                        State::Length(_) => State::Done,
                        _ => State::DataEnd,
                    };
                }
                Frame::data(buf.split_to(take).freeze())
            }
            State::Close if !buf.is_empty() => Frame::data(buf.split().freeze()),
            State::TrailersReady(map) => {
                let map = std::mem::take(&mut **map);
                self.state = State::Done;
                return Ok(Some(Frame::trailers(map)));
            }
            _ => return Ok(None),
        };
        // Framing after the data is consumed now if it is in (so the end
        // is seen at once); an error in it surfaces at the next call,
        // after this data, as it would had it arrived in a later read.
        let _ = self.settle(buf);
        Ok(Some(frame))
    }

    /// Consumes whatever chunk framing the buffer already holds.
    fn settle(&mut self, buf: &mut BytesMut) -> Result<(), WireError> {
        loop {
            if buf.is_empty() {
                return Ok(()); // every framing step needs a byte
            }
            match self.state {
                State::DataEnd => {
                    match buf.get(..2) {
                        None if buf.first().is_none_or(|&b| b == b'\r') => return Ok(()),
                        Some(b"\r\n") => buf.advance(2),
                        _ => return Err(WireError("chunk data not followed by CRLF")),
                    }
                    self.state = State::Size;
                }
                State::Size => {
                    // Refused by length whether or not its end is in yet,
                    // so the outcome does not depend on how reads cut it.
                    const TOO_LONG: WireError = WireError("chunk size line too long");
                    let Some(lf) = memchr::memchr(b'\n', buf) else {
                        return if buf.len() > MAX_LINE {
                            Err(TOO_LONG)
                        } else {
                            Ok(())
                        };
                    };
                    if lf > MAX_LINE {
                        return Err(TOO_LONG);
                    }
                    let size = chunk_size(&buf[..=lf])?;
                    buf.advance(lf + 1);
                    self.state = if size == 0 {
                        State::Trailers(0)
                    } else {
                        State::Data(size)
                    };
                }
                State::Trailers(scanned) => {
                    if buf.first() == Some(&b'\n') {
                        return Err(WireError("bare LF after the last chunk"));
                    }
                    if buf.starts_with(b"\r\n") {
                        buf.advance(2);
                        self.state = State::Done;
                        continue;
                    }
                    // Ends at its first blank line, as a head does, and is
                    // refused by length whether or not that end is in yet.
                    const TOO_LARGE: WireError = WireError("trailer section too large");
                    let mut from = scanned;
                    let Some(end) = head_end(buf, &mut from) else {
                        self.state = State::Trailers(from);
                        return if buf.len() > MAX_HEAD {
                            Err(TOO_LARGE)
                        } else {
                            Ok(())
                        };
                    };
                    if end > MAX_HEAD {
                        return Err(TOO_LARGE);
                    }
                    let map = parse_trailers(&buf[..end])?;
                    if buf[..end].ends_with(b"\n\n") {
                        return Err(WireError("trailer section ended by a bare LF"));
                    }
                    buf.advance(end);
                    self.state = State::TrailersReady(Box::new(map));
                }
                _ => return Ok(()),
            }
        }
    }
}

/// The size of a chunk-size line (`line` up to and including its LF, the
/// first in it).
///
/// httparse reads the size and skips the extensions; the relay refuses
/// three lines it takes: an empty size (`\r\n`, ` \r\n`, `;x\r\n`,
/// which it reads as 0), a bare LF inside an extension (which it keeps
/// reading past, into the chunk data), and control characters in an
/// extension.
fn chunk_size(line: &[u8]) -> Result<u64, WireError> {
    const BAD: WireError = WireError("bad chunk size line");
    if !line.first().is_some_and(u8::is_ascii_hexdigit) {
        return Err(BAD);
    }
    let size = match httparse::parse_chunk_size(line) {
        Ok(httparse::Status::Complete((n, size))) if n == line.len() => size,
        _ => return Err(BAD),
    };
    // Ends in CRLF (httparse took nothing else before the LF).
    let ctl = |&b: &u8| (b < 0x20 && b != b'\t') || b == 0x7f;
    if line[..line.len() - 2].iter().any(ctl) {
        return Err(BAD);
    }
    Ok(size)
}
