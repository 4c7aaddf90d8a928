//! Response body decoding: the bytes of the connection's read buffer
//! become body frames without copying (each data frame is split off the
//! buffer), and framing is consumed as soon as it has arrived, so the end
//! of a body is known the moment its last bytes are in: the connection
//! goes back to the pool before anyone polls again.
//!
//! Chunked coding (RFC 9112 §7.1): `chunk-size [chunk-ext] CRLF data CRLF`,
//! ending with a zero-size chunk and an optional trailer section. Sizes are
//! hex without sign or prefix (at most 16 digits); extensions are skipped;
//! chunk framing lines must end in CRLF, and a size line longer than
//! [`MAX_LINE`] is refused rather than buffered.

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use hyper::body::Frame;

use super::head::{Framing, MAX_HEAD, WireError, parse_trailers};

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
    /// After the last chunk: trailer fields or the final CRLF.
    Trailers,
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
                    let size = chunk_size(&buf[..lf])?;
                    buf.advance(lf + 1);
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::Data(size)
                    };
                }
                State::Trailers => {
                    if buf.first() == Some(&b'\n') {
                        return Err(WireError("bare LF after the last chunk"));
                    }
                    if buf.starts_with(b"\r\n") {
                        buf.advance(2);
                        self.state = State::Done;
                        continue;
                    }
                    const TOO_LARGE: WireError = WireError("trailer section too large");
                    let Some(end) = memchr::memmem::find(buf, b"\r\n\r\n") else {
                        return if buf.len() > MAX_HEAD {
                            Err(TOO_LARGE)
                        } else {
                            Ok(())
                        };
                    };
                    if end + 4 > MAX_HEAD {
                        return Err(TOO_LARGE);
                    }
                    let map = parse_trailers(&buf[..end + 4])?;
                    buf.advance(end + 4);
                    self.state = State::TrailersReady(Box::new(map));
                }
                _ => return Ok(()),
            }
        }
    }
}

/// The size of a chunk-size line (`line` up to, not including, its LF).
fn chunk_size(line: &[u8]) -> Result<u64, WireError> {
    const BAD: WireError = WireError("bad chunk size line");
    let line = line.strip_suffix(b"\r").ok_or(BAD)?;
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(BAD);
    }
    let rest = &line[digits..];
    // chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] ): skipped, but
    // it must start with `;` and hold no control characters.
    let ext = super::head::trim_ows(rest);
    if !(ext.is_empty() || ext.starts_with(b";"))
        || ext.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
    {
        return Err(BAD);
    }
    let size = line[..digits].iter().fold(0u64, |n, &b| {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => b - b'A' + 10,
        };
        (n << 4) | u64::from(d)
    });
    Ok(size)
}
