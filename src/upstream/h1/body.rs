//! A response body read straight off its connection.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};

use super::decode::Decoder;
use super::head::WireError;
use super::{CheckIn, H1Conn};
use crate::error::{Error, Kind};

/// Owns its connection while the response is read; checks it in when the
/// last byte is decoded, or closes it when dropped earlier.
pub struct H1Body {
    /// `None` once checked in, closed or failed.
    conn: Option<H1Conn>,
    decoder: Decoder,
    /// The connection may serve another request once this body ends.
    reusable: bool,
    check_in: Arc<dyn CheckIn>,
}

impl H1Body {
    pub(super) fn new(
        conn: H1Conn,
        decoder: Decoder,
        reusable: bool,
        check_in: Arc<dyn CheckIn>,
    ) -> Self {
        let mut body = Self {
            conn: Some(conn),
            decoder,
            reusable,
            check_in,
        };
        if body.decoder.is_done() {
            body.finish(); // no body: the connection is free now
        }
        body
    }

    /// The body ended: the connection is checked in if nothing speaks
    /// against it, and closed otherwise.
    fn finish(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        // Bytes after the response's end are not an answer to anything.
        if self.reusable && conn.buf.is_empty() {
            let mut conn = conn;
            conn.buf = BytesMut::new(); // an idle connection holds no buffer
            self.check_in.check_in(conn);
        }
    }

    fn fail(
        &mut self,
        kind: Kind,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Error {
        self.conn = None; // closes the socket
        Error::with_cause(kind, cause)
    }
}

impl Body for H1Body {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match this.decoder.decode(&mut conn.buf) {
                Err(e) => return Poll::Ready(Some(Err(this.fail(Kind::UpstreamProtocol, e)))),
                Ok(Some(frame)) => {
                    if this.decoder.is_done() {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Ok(None) if this.decoder.is_done() => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(None) => {}
            }
            match ready!(conn.poll_read(cx)) {
                Ok(0) if this.decoder.at_eof() => {
                    this.reusable = false;
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    let e = WireError("upstream closed the connection before the body ended");
                    return Poll::Ready(Some(Err(this.fail(Kind::UpstreamReset, e))));
                }
                Ok(_) => {}
                Err(e) => return Poll::Ready(Some(Err(this.fail(Kind::UpstreamReset, e)))),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.decoder.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder.remaining() {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
