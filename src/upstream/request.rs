//! The client's request body on its way upstream.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use tokio::time::{Instant, Sleep};

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
    Streaming {
        body: Incoming,
        remaining: u64,
        idle: Idle,
    },
    Buffered(Option<Bytes>),
}

/// `server.body_timeout`: the longest pause between body frames.
struct Idle {
    timeout: Duration,
    timer: Pin<Box<Sleep>>,
}

impl Idle {
    fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            timer: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    fn progressed(&mut self) {
        self.timer.as_mut().reset(Instant::now() + self.timeout);
    }

    fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.timer.as_mut().poll(cx).is_ready()
    }
}

impl RequestBody {
    /// `idle` bounds each pause between frames (`server.body_timeout`).
    pub fn streaming(body: Incoming, limit: u64, idle: Duration) -> Self {
        Self {
            inner: Inner::Streaming {
                body,
                remaining: limit,
                idle: Idle::new(idle),
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

impl RequestBody {
    /// The body, when the relay holds it whole (a cheap `Bytes` clone).
    pub fn held(&self) -> Option<Bytes> {
        match &self.inner {
            Inner::Buffered(bytes) => bytes.clone(),
            Inner::Streaming { .. } => None,
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
        let (body, remaining, idle) = match &mut self.get_mut().inner {
            Inner::Buffered(bytes) => return Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Inner::Streaming {
                body,
                remaining,
                idle,
            } => (body, remaining, idle),
        };
        let frame = match Pin::new(body).poll_frame(cx) {
            Poll::Pending if idle.poll_expired(cx) => {
                return Poll::Ready(Some(Err(Error::new(Kind::RequestTimeout))));
            }
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => {
                return Poll::Ready(Some(Err(Error::with_cause(Kind::DownstreamBody, e))));
            }
            Poll::Ready(Some(Ok(frame))) => frame,
        };
        idle.progressed();
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
