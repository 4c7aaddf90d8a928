//! HTTP/1.1 upstream connections: the relay's own client codec.
//!
//! An HTTP/1.1 connection serves one exchange at a time, so it needs no
//! task, no dispatcher and no channel: the request's future writes the
//! request and reads the response head ([`exchange::send`]), then the
//! response body ([`H1Body`]) owns the connection and reads the socket in
//! the same task, in the same poll, that writes to the client. Body frames
//! are split off the read buffer (never copied), every frame already
//! received is relayed before the client connection flushes (back-to-back
//! events leave in one write), and the body checks the connection in
//! ([`CheckIn`]) the moment its last byte is decoded.
//!
//! # Memory while silent
//! A connection holds a read buffer only while bytes are pending: when a
//! read would block and nothing is buffered, the buffer is let go, and the
//! next read allocates once the socket is readable. A silent stream or an
//! idle pooled connection costs its socket and a few words.
//!
//! # Ownership and reuse
//! - A connection is reused only after a response read to its end on a
//!   connection both sides keep open ([`head::framing`]), whose request was
//!   written whole, and with no stray bytes after the response.
//! - Dropping the body (client gone, upstream failed) drops the connection,
//!   which closes the socket: a half-read response never reaches the next
//!   request.
//! - This code knows nothing of a pool. Whoever hands it a connection hands
//!   it a [`CheckIn`] too (the pool: its origin), and a body read to its
//!   end returns the connection through it: at most once per exchange,
//!   from a poll (never from `Drop`), and only a connection that may serve
//!   another request. What becomes of it then (kept idle, closed over a
//!   cap, dropped because the pool is gone) is the check-in's affair.
//! - An idle pooled connection is polled by nobody; checkout polls it once
//!   ([`H1Conn::poll_closed`]) so a close the upstream sent meanwhile is
//!   seen before a request is trusted to it.
//!
//! [`head`] and [`decode`] are the wire format alone (no I/O); they are
//! public for the fuzz targets. The grammar of heads, trailer sections and
//! chunk-size lines is httparse's (hyper's own parser); the relay adds the
//! refusals a relay needs on top (see each module).
//!
//! # Not supported
//! Full-duplex exchanges: once the response head is in, the rest of a
//! request body still being streamed is not sent (the connection is then
//! closed after the response). `101 Switching Protocols` is refused (the
//! relay never forwards `Upgrade`).

mod body;
pub mod decode;
mod exchange;
pub mod head;
#[cfg(test)]
mod tests;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

pub use body::H1Body;
pub(crate) use exchange::send;

/// Bytes reserved for a read when the buffer has less room than `MIN_ROOM`.
const READ_SIZE: usize = 8 * 1024;
const MIN_ROOM: usize = 1024;

/// The connection's transport.
pub enum Io {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// Where a connection goes once a response on it was read to its end and
/// it may serve another request (for the relay: its origin's idle list).
/// Called from a body's poll, never from `Drop`, at most once per
/// exchange; it must not panic.
pub trait CheckIn: Send + Sync {
    fn check_in(&self, conn: H1Conn);
}

/// One HTTP/1.1 upstream connection between exchanges, or during one.
pub struct H1Conn {
    io: Io,
    /// Bytes read but not yet decoded; empty and unallocated while silent.
    buf: BytesMut,
    on_close: Option<Box<dyn FnOnce() + Send>>,
}

impl H1Conn {
    /// `on_close` runs when the connection is dropped (closed).
    pub fn new(io: Io, on_close: Box<dyn FnOnce() + Send>) -> Self {
        Self {
            io,
            buf: BytesMut::new(),
            on_close: Some(on_close),
        }
    }

    /// Whether the connection holds a read buffer (an idle one holds
    /// none: see "Memory while silent" above).
    pub fn holds_buffer(&self) -> bool {
        self.buf.capacity() > 0
    }

    /// Lets a pooled connection take in what happened while it sat idle:
    /// true if the upstream closed it or sent something unasked for
    /// (either way it cannot take a request).
    pub fn poll_closed(&mut self) -> bool {
        if !self.buf.is_empty() {
            return true;
        }
        let mut cx = Context::from_waker(Waker::noop());
        let mut probe = [0u8; 1];
        let mut probe = ReadBuf::new(&mut probe);
        let polled = match &mut self.io {
            Io::Tcp(s) => Pin::new(s).poll_read(&mut cx, &mut probe),
            Io::Tls(s) => Pin::new(&mut **s).poll_read(&mut cx, &mut probe),
        };
        polled.is_ready()
    }

    /// Reads what the socket has into the buffer: `Ok(0)` at end of
    /// stream. Lets the buffer go when the read would block with nothing
    /// buffered.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let polled = match &mut self.io {
            Io::Tcp(s) => poll_read_tcp(s, cx, &mut self.buf),
            Io::Tls(s) => poll_read_tls(s, cx, &mut self.buf),
        };
        if polled.is_pending() && self.buf.is_empty() && self.buf.capacity() > 0 {
            self.buf = BytesMut::new();
        }
        polled
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.io {
            Io::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        }
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Tcp(_) => Poll::Ready(Ok(())),
            Io::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }
}

impl Drop for H1Conn {
    fn drop(&mut self) {
        if let Some(f) = self.on_close.take() {
            f();
        }
    }
}

fn reserve(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < MIN_ROOM {
        buf.reserve(READ_SIZE);
    }
}

/// Plain TCP: wait for readiness first, so a silent socket costs no buffer.
///
/// A read that returns less than the room it was given drained the socket,
/// so the readiness it was made under is cleared at once instead of by a
/// second read that would only fail with `EAGAIN` (one system call per
/// upstream event, and one per pooled exchange). `try_io` takes its
/// readiness snapshot before the read and clears only that snapshot: bytes
/// arriving after the read raise a new readiness event, which stays set.
/// End of stream is never cleared (tokio keeps the read-closed bit).
fn poll_read_tcp(
    s: &mut TcpStream,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    loop {
        ready!(s.poll_read_ready(cx))?;
        reserve(buf);
        let room = buf.capacity() - buf.len();
        let mut read = 0;
        let polled = s.try_io(Interest::READABLE, || {
            read = s.try_read_buf(buf)?;
            if read > 0 && read < room {
                Err(io::ErrorKind::WouldBlock.into()) // drained: clear
            } else {
                Ok(read)
            }
        });
        match polled {
            Ok(n) => return Poll::Ready(Ok(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && read > 0 => {
                return Poll::Ready(Ok(read));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
}

/// TLS: rustls decrypts into a caller's initialised slice; the spare room
/// is zeroed first (`forbid(unsafe_code)`), which costs less than the
/// decryption itself.
fn poll_read_tls(
    s: &mut TlsStream<TcpStream>,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    reserve(buf);
    let filled = buf.len();
    buf.resize(buf.capacity(), 0);
    let mut rb = ReadBuf::new(&mut buf[filled..]);
    let polled = Pin::new(s).poll_read(cx, &mut rb);
    let n = rb.filled().len();
    buf.truncate(filled + n);
    polled.map_ok(|()| n)
}
