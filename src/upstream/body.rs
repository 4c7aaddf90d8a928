//! A response body from either kind of upstream connection.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};

use super::h1::H1Body;
use crate::error::{Error, Kind};

/// What the relay reads an upstream answer from: the HTTP/1.1 codec's own
/// body (which owns its connection) or hyper's HTTP/2 stream.
pub enum Body {
    H1(H1Body),
    H2(Incoming),
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match self.get_mut() {
            Body::H1(b) => Pin::new(b).poll_frame(cx),
            Body::H2(b) => Pin::new(b).poll_frame(cx).map_err(|e| {
                let kind = if e.is_timeout() {
                    Kind::UpstreamReadTimeout
                } else {
                    Kind::UpstreamReset
                };
                Error::with_cause(kind, e)
            }),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::H1(b) => b.is_end_stream(),
            Body::H2(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::H1(b) => b.size_hint(),
            Body::H2(b) => b.size_hint(),
        }
    }
}
