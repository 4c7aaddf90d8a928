//! The client's request body, streamed upstream.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::error::{Error, Kind};

/// The downstream body with a byte limit. Exceeding the limit fails the
/// body with [`Kind::BodyTooLarge`], which aborts the upstream request and
/// becomes a 413 when no response has started yet.
pub struct RequestBody {
    inner: Incoming,
    remaining: u64,
}

impl RequestBody {
    pub fn new(inner: Incoming, limit: u64) -> Self {
        Self {
            inner,
            remaining: limit,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let frame = match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
            None => return Poll::Ready(None),
            Some(Err(e)) => {
                return Poll::Ready(Some(Err(Error::with_cause(Kind::DownstreamBody, e))));
            }
            Some(Ok(frame)) => frame,
        };
        if let Some(data) = frame.data_ref() {
            let len = data.len() as u64;
            if len > self.remaining {
                self.remaining = 0;
                return Poll::Ready(Some(Err(Error::new(Kind::BodyTooLarge))));
            }
            self.remaining -= len;
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
