//! A response body from either kind of upstream connection.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};

use super::h1::H1Body;
use crate::error::{Error, Kind};

/// What the relay reads an upstream answer from: the HTTP/1.1 codec's own
/// body (which owns its connection) or hyper's HTTP/2 stream, possibly
/// after frames already read from it.
pub enum Body {
    H1(H1Body),
    H2(Incoming),
    /// Frames read ahead (the failover loop reads up to the first event
    /// before it commits to an endpoint), then the rest.
    Primed(Box<Primed>),
    /// Nothing (a stand-in while a body is re-wrapped).
    Empty,
}

pub struct Primed {
    front: VecDeque<Frame<Bytes>>,
    rest: Body,
}

impl Body {
    /// Puts `front` back before what is left of this body.
    pub(crate) fn prime(&mut self, mut front: VecDeque<Frame<Bytes>>) {
        if front.is_empty() {
            return;
        }
        match self {
            Body::Primed(p) => {
                front.append(&mut p.front);
                p.front = front;
            }
            _ => {
                let rest = std::mem::replace(self, Body::Empty);
                *self = Body::Primed(Box::new(Primed { front, rest }));
            }
        }
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        match this {
            Body::H1(b) => Pin::new(b).poll_frame(cx),
            Body::Primed(p) => match p.front.pop_front() {
                Some(frame) => {
                    if p.front.is_empty() {
                        // The frames read ahead are out: the body is its
                        // own again (the box and queue go now, not at the
                        // end of a long stream).
                        let rest = std::mem::replace(&mut p.rest, Body::Empty);
                        *this = rest;
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                None => Pin::new(&mut p.rest).poll_frame(cx),
            },
            Body::Empty => Poll::Ready(None),
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
            Body::Primed(p) => p.front.is_empty() && p.rest.is_end_stream(),
            Body::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::H1(b) => b.size_hint(),
            Body::H2(b) => b.size_hint(),
            Body::Primed(p) => {
                let front: usize = p
                    .front
                    .iter()
                    .filter_map(|f| f.data_ref())
                    .map(|d| d.len())
                    .sum();
                let rest = p.rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower() + front as u64);
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper + front as u64);
                }
                hint
            }
            Body::Empty => SizeHint::with_exact(0),
        }
    }
}
