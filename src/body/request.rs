//! The client's request body on its way upstream.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::error::{Error, Kind};

/// Either the downstream body streamed with a byte limit, or a body the
/// relay already holds (streaming requests are read first: the relay needs
/// their `stream` flag and must be able to send them again on retry).
///
/// Exceeding the limit fails the body with [`Kind::BodyTooLarge`], which
/// aborts the upstream request and becomes a 413 when no response has
/// started yet.
pub struct RequestBody {
    inner: Inner,
}

enum Inner {
    Streaming { body: Incoming, remaining: u64 },
    Buffered(Option<Bytes>),
}

impl RequestBody {
    pub fn streaming(body: Incoming, limit: u64) -> Self {
        Self {
            inner: Inner::Streaming {
                body,
                remaining: limit,
            },
        }
    }

    /// A body held in memory; cloning the `Bytes` for a retry copies nothing.
    pub fn buffered(bytes: Bytes) -> Self {
        Self {
            inner: Inner::Buffered((!bytes.is_empty()).then_some(bytes)),
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let (body, remaining) = match &mut self.get_mut().inner {
            Inner::Buffered(bytes) => return Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Inner::Streaming { body, remaining } => (body, remaining),
        };
        let frame = match ready!(Pin::new(body).poll_frame(cx)) {
            None => return Poll::Ready(None),
            Some(Err(e)) => {
                return Poll::Ready(Some(Err(Error::with_cause(Kind::DownstreamBody, e))));
            }
            Some(Ok(frame)) => frame,
        };
        if let Some(data) = frame.data_ref() {
            let len = data.len() as u64;
            if len > *remaining {
                *remaining = 0;
                return Poll::Ready(Some(Err(Error::new(Kind::BodyTooLarge))));
            }
            *remaining -= len;
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Streaming { body, .. } => body.is_end_stream(),
            Inner::Buffered(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Streaming { body, .. } => body.size_hint(),
            Inner::Buffered(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}
