//! What the client receives.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use super::headers::clean_trailers;
use crate::body::{JsonWaitBody, ReadDeadline, SseBody, UsageCapture};
use crate::error::{Error, Kind, UpstreamClass};
use crate::resume::Reader;
use crate::telemetry::{Exchange, Outcome, UsageSource};
use crate::upstream::{Body as UpstreamBody, Lease};

/// The response body handed to hyper: an upstream body relayed frame by
/// frame, or a relay-made answer. The request's [`Exchange`] rides along and
/// is finished when the body ends or is dropped.
pub(crate) struct ResponseBody {
    inner: Inner,
    exchange: Option<Exchange>,
}

// The relayed body is the common answer and is kept inline: boxing it
// would cost an allocation per request to save a few hundred bytes on
// relay-made answers, which are rare and short-lived.
#[allow(clippy::large_enum_variant)]
enum Inner {
    Upstream {
        body: UpstreamBody,
        /// Read before the head was sent ([`first_frame`]), not yet relayed.
        first: First,
        lease: Lease,
        usage: Option<UsageCapture>,
        deadline: Option<ReadDeadline>,
    },
    Sse(Box<SseBody>),
    /// A resumable stream's reader (the upstream is read by its producer).
    Resume(Box<Reader>),
    JsonWait(Box<JsonWaitBody>),
    Full(Option<Bytes>),
}

/// An upstream body's first frame, read before the head went out; kept
/// small (a `Frame` is mostly its trailers' `HeaderMap`, which a first
/// frame almost never is).
enum First {
    None,
    Data(Bytes),
    Trailers(Box<http::HeaderMap>),
}

impl First {
    fn new(frame: Option<Frame<Bytes>>) -> Self {
        match frame.map(Frame::into_data) {
            None => First::None,
            Some(Ok(data)) => First::Data(data),
            Some(Err(frame)) => match frame.into_trailers() {
                Ok(t) => First::Trailers(Box::new(t)),
                Err(_) => First::None, // hyper's frames are data or trailers
            },
        }
    }

    fn take(&mut self) -> Option<Frame<Bytes>> {
        match std::mem::replace(self, First::None) {
            First::None => None,
            First::Data(d) => Some(Frame::data(d)),
            First::Trailers(t) => Some(Frame::trailers(*t)),
        }
    }

    fn is_none(&self) -> bool {
        matches!(self, First::None)
    }

    fn len(&self) -> u64 {
        match self {
            First::Data(d) => d.len() as u64,
            _ => 0,
        }
    }
}

impl ResponseBody {
    /// Relays `first` (see [`first_frame`]), then the rest of `body`;
    /// `lease` goes back to the pool when it ends. `usage`, when given,
    /// keeps the (JSON) body to read its usage at the end. `read_timeout`
    /// bounds upstream silence between frames.
    pub(crate) fn relay(
        body: UpstreamBody,
        first: Option<Frame<Bytes>>,
        mut lease: Lease,
        mut exchange: Exchange,
        usage: Option<UsageCapture>,
        read_timeout: Option<Duration>,
    ) -> Self {
        exchange.start_streaming();
        if first.is_none() && body.is_end_stream() {
            // No body (HEAD, 204, 304, Content-Length: 0): hyper will not
            // poll it, so the connection is free now.
            lease.release();
            exchange.finish(Outcome::Complete);
        }
        Self {
            inner: Inner::Upstream {
                body,
                first: First::new(first),
                lease,
                usage,
                deadline: read_timeout.map(ReadDeadline::new),
            },
            exchange: Some(exchange),
        }
    }

    /// An event stream: relayed through the SSE engine.
    pub(crate) fn sse(body: SseBody, mut exchange: Exchange) -> Self {
        exchange.start_streaming();
        Self {
            inner: Inner::Sse(Box::new(body)),
            exchange: Some(exchange),
        }
    }

    /// A resumable stream, read from its replay log. The original request's
    /// record stays with the stream's producer, so it has none here; a
    /// reconnect brings its own.
    pub(crate) fn resumable(reader: Reader, mut exchange: Option<Exchange>) -> Self {
        if let Some(x) = exchange.as_mut() {
            x.start_streaming();
        }
        Self {
            inner: Inner::Resume(Box::new(reader)),
            exchange,
        }
    }

    /// A non-streaming answer kept alive with whitespace (`json_keepalive`).
    pub(crate) fn json_wait(body: JsonWaitBody, mut exchange: Exchange) -> Self {
        exchange.start_streaming();
        Self {
            inner: Inner::JsonWait(Box::new(body)),
            exchange: Some(exchange),
        }
    }

    /// A complete body made by the relay (errors, admin answers).
    pub(crate) fn full(bytes: impl Into<Bytes>, exchange: Option<Exchange>) -> Self {
        let bytes = bytes.into();
        let mut this = Self {
            inner: Inner::Full((!bytes.is_empty()).then_some(bytes)),
            exchange,
        };
        this.note_full_end();
        this
    }

    fn note_full_end(&mut self) {
        if let (Inner::Full(None), Some(x)) = (&self.inner, self.exchange.as_mut()) {
            x.finish(Outcome::RelayError);
        }
    }

    fn poll_upstream(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let Inner::Upstream {
            body,
            first,
            lease,
            usage,
            deadline,
        } = &mut self.inner
        else {
            return Poll::Ready(None);
        };
        if let Some(frame) = first.take() {
            return Poll::Ready(Some(Ok(self.relayed(frame))));
        }
        let polled = match Pin::new(&mut *body).poll_frame(cx) {
            Poll::Ready(polled) => polled,
            Poll::Pending => {
                let Some(Poll::Ready(limit)) = deadline.as_mut().map(|d| d.poll_expired(cx)) else {
                    return Poll::Pending;
                };
                if let Some(x) = self.exchange.as_mut() {
                    x.upstream_error(UpstreamClass::Timeout);
                    x.finish(Outcome::UpstreamTimeout);
                }
                tracing::warn!("upstream body silent for {limit:?} (upstream.read_timeout)");
                return Poll::Ready(Some(Err(Error::new(Kind::UpstreamReadTimeout))));
            }
        };
        if let Some(d) = deadline.as_mut() {
            d.arrived();
        }
        match polled {
            None => {
                complete(lease, usage, self.exchange.as_mut());
                Poll::Ready(None)
            }
            Some(Ok(frame)) => Poll::Ready(Some(Ok(self.relayed(frame)))),
            Some(Err(e)) => {
                let x = self.exchange.as_mut();
                if let Some(x) = x {
                    // Reset, or protocol (a broken chunk) or timeout.
                    x.upstream_error(e.upstream_class().unwrap_or(UpstreamClass::Reset));
                    x.finish(Outcome::UpstreamReset);
                }
                tracing::warn!("upstream body failed mid-response: {e}");
                Poll::Ready(Some(Err(e)))
            }
        }
    }

    /// Accounts for one upstream frame on its way to the client: bytes,
    /// usage capture, trailers cleaned, and the end if it was the last.
    fn relayed(&mut self, mut frame: Frame<Bytes>) -> Frame<Bytes> {
        let Inner::Upstream {
            body, lease, usage, ..
        } = &mut self.inner
        else {
            return frame;
        };
        let x = self.exchange.as_mut();
        if let Some(data) = frame.data_ref() {
            if let Some(u) = usage.as_mut() {
                u.push(data);
            }
            let n = data.len();
            if let Some(x) = x {
                x.add_bytes(n);
            }
        } else if let Some(trailers) = frame.trailers_mut() {
            clean_trailers(trailers);
        }
        if body.is_end_stream() {
            complete(lease, usage, self.exchange.as_mut());
        }
        frame
    }
}

/// Reads an upstream answer's first frame before its head goes to the
/// client, waiting at most `read_timeout`. Until the client has a status, a
/// body that fails can still be answered `502` (or `504`) in the dialect's
/// shape; once the head is out, hyper could only cut the response (an empty
/// reply on HTTP/1.1, `INTERNAL_ERROR` on HTTP/2). `None` when the body has
/// no frame at all.
pub(super) async fn first_frame(
    body: &mut UpstreamBody,
    read_timeout: Option<Duration>,
) -> Result<Option<Frame<Bytes>>, Error> {
    if body.is_end_stream() {
        return Ok(None);
    }
    let frame = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx));
    let frame = match read_timeout {
        Some(limit) => tokio::time::timeout(limit, frame)
            .await
            .map_err(|_| Error::new(Kind::UpstreamReadTimeout))?,
        None => frame.await,
    };
    let mut frame = frame.transpose()?;
    if let Some(trailers) = frame.as_mut().and_then(Frame::trailers_mut) {
        clean_trailers(trailers);
    }
    Ok(frame)
}

/// The upstream body ended: free its connection, record usage and outcome.
fn complete(lease: &mut Lease, usage: &mut Option<UsageCapture>, x: Option<&mut Exchange>) {
    lease.release();
    let Some(x) = x else { return };
    if let Some((u, model)) = usage.take().and_then(|mut c| c.finish()) {
        if let Some(m) = model {
            x.set_model(&m);
        }
        x.set_usage(u, UsageSource::Body);
    }
    x.finish(Outcome::Complete);
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        match &mut this.inner {
            Inner::Upstream { .. } => this.poll_upstream(cx),
            Inner::Sse(sse) => match this.exchange.as_mut() {
                Some(x) => sse.poll_frame(cx, x),
                None => Poll::Ready(None),
            },
            Inner::Resume(reader) => reader
                .poll_frame(cx, this.exchange.as_mut())
                .map(|b| b.map(|b| Ok(Frame::data(b)))),
            Inner::JsonWait(json) => match this.exchange.as_mut() {
                Some(x) => json.poll_frame(cx, x),
                None => Poll::Ready(None),
            },
            Inner::Full(bytes) => {
                let frame = bytes.take().map(|b| {
                    if let Some(x) = this.exchange.as_mut() {
                        x.add_bytes(b.len());
                    }
                    Ok(Frame::data(b))
                });
                this.note_full_end();
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Upstream { body, first, .. } => first.is_none() && body.is_end_stream(),
            Inner::Sse(sse) => sse.is_done(),
            Inner::Resume(reader) => reader.is_done(),
            Inner::JsonWait(json) => json.is_done(),
            Inner::Full(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Upstream { body, first, .. } => {
                let mut hint = body.size_hint();
                let n = first.len();
                if n > 0 {
                    // Upper first: `set_lower` panics above the upper bound.
                    if let Some(upper) = hint.upper() {
                        hint.set_upper(upper + n);
                    }
                    hint.set_lower(hint.lower() + n);
                }
                hint
            }
            Inner::Sse(_) | Inner::Resume(_) | Inner::JsonWait(_) => SizeHint::default(),
            Inner::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}
