//! One request written and its response head read, on one connection.
//!
//! The request head and a body the relay holds leave in one vectored
//! write. A streamed body is polled once before the head is written, so
//! its first frame (or its failure: a client's malformed chunk never lets
//! a request reach the upstream) travels with the head; the rest follows
//! frame by frame (chunk-framed when its length is unknown) while the
//! response is read in the same poll: an
//! upstream that answers early (a 413, say) is heard at once, and the rest
//! of the body is not sent. A write that fails after the first byte does
//! not end the exchange either: the upstream may have answered before it
//! stopped reading. Interim 1xx responses are skipped.
//!
//! What a failed send hands back ([`SendError`], from which the caller
//! decides on a retry): the request, whole, when it failed before any byte
//! of a response arrived and it can be written again as it was: either no
//! byte of it was written and its streamed body has given up no frame (a
//! frame taken for the first write would be missing from a retry), or its
//! body is one the relay holds (buffered, or none at all), which the
//! request still carries. A streamed body whose first bytes went out is
//! gone: that request is never handed back.

use std::future::poll_fn;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use http::{Request, Response};
use hyper::body::{Body as _, Frame};

use super::body::H1Body;
use super::decode::Decoder;
use super::head::{self, FramingError, RequestFraming, ResponseHead, WireError};
use super::{CheckIn, H1Conn};
use crate::error::{Error, Kind};
use crate::upstream::RequestBody;
use crate::upstream::send::SendError;

/// Sends `req` (origin-form target, `Host` set) on `conn` and waits for the
/// response head. The response body owns the connection and hands it to
/// `check_in` when it has been read to its end (and the connection may
/// serve another request).
pub(crate) async fn send(
    mut conn: H1Conn,
    req: Request<RequestBody>,
    check_in: Arc<dyn CheckIn>,
) -> Result<Response<H1Body>, SendError> {
    let method = req.method().clone();
    let mut out = Outbox::new(&req);
    // Kept whole while it can be sent again: until its first byte is
    // written, or for as long as the exchange lasts when the relay holds
    // its body (see the retry contract above).
    let mut request = Some(req);
    let mut reader = HeadReader::default();
    let mut head = poll_fn(|cx| {
        if let Poll::Ready(Err(error)) = out.poll_send(cx, &mut conn, &mut request) {
            // A request whose body lost a frame to the queue cannot be
            // sent again.
            let request = request.take().filter(|_| !out.took_frame);
            return Poll::Ready(Err(SendError::new(error, request, false)));
        }
        reader.poll_head(cx, &mut conn).map_err(|error| {
            // Without a byte of an answer, the upstream cannot have acted
            // on the request as far as HTTP can tell.
            let request = request
                .take()
                .filter(|_| !reader.answered && !out.took_frame);
            SendError::new(error, request, reader.answered)
        })
    })
    .await?;
    let protocol =
        |e: FramingError| SendError::new(Error::with_cause(Kind::UpstreamProtocol, e), None, true);
    let (framing, keep_alive) = head::framing(&mut head, &method).map_err(protocol)?;
    let reusable = keep_alive && out.is_done();
    let body = H1Body::new(conn, Decoder::new(framing), reusable, check_in);
    let mut res = Response::new(body);
    *res.status_mut() = head.status;
    *res.version_mut() = head.version;
    *res.headers_mut() = head.headers;
    Ok(res)
}

/// Reads until a final response head is in.
#[derive(Default)]
struct HeadReader {
    /// How far the buffer was searched for the head's end.
    scanned: usize,
    /// Some byte of a response (interim ones included) arrived.
    answered: bool,
}

impl HeadReader {
    fn poll_head(
        &mut self,
        cx: &mut Context<'_>,
        conn: &mut H1Conn,
    ) -> Poll<Result<ResponseHead, Error>> {
        let protocol = |e: WireError| Error::with_cause(Kind::UpstreamProtocol, e);
        loop {
            let found = head::find_head(&conn.buf, &mut self.scanned).map_err(protocol)?;
            if let Some(end) = found {
                let head = head::parse_response(&conn.buf[..end]).map_err(protocol)?;
                conn.buf.advance(end);
                self.scanned = 0;
                if head.status == http::StatusCode::SWITCHING_PROTOCOLS {
                    return Poll::Ready(Err(protocol(WireError(
                        "101 to a request without Upgrade",
                    ))));
                }
                if head.status.is_informational() {
                    continue; // 100 Continue, 103 Early Hints: the final answer follows
                }
                return Poll::Ready(Ok(head));
            }
            match ready!(conn.poll_read(cx)) {
                Ok(0) => {
                    let why = if conn.buf.is_empty() {
                        "upstream closed the connection without answering"
                    } else {
                        "upstream closed the connection inside the response head"
                    };
                    return Poll::Ready(Err(Error::with_cause(
                        Kind::UpstreamReset,
                        WireError(why),
                    )));
                }
                Ok(_) => self.answered = true,
                Err(e) => return Poll::Ready(Err(Error::with_cause(Kind::UpstreamReset, e))),
            }
        }
    }
}

/// The request on its way out.
struct Outbox {
    /// Bytes queued for the socket, in order (empty slots are skipped):
    /// the head, then a held body or a chunk's size line, data and CRLF.
    queue: [Bytes; 4],
    chunked: bool,
    /// A streamed body, taken from the request once its first byte is
    /// written (until then the request may be handed back).
    body: Option<RequestBody>,
    /// The body is streamed and has not ended yet.
    streams: bool,
    /// The streamed body was polled once before the head went out.
    primed: bool,
    /// A frame was taken from the streamed body.
    took_frame: bool,
    /// Some byte of the request was written.
    written: bool,
    state: Writing,
}

#[derive(PartialEq, Eq)]
enum Writing {
    Sending,
    /// Written and flushed.
    Done,
    /// The connection failed after some bytes went out.
    Broken,
}

impl Outbox {
    fn new(req: &Request<RequestBody>) -> Self {
        let body = req.body();
        let framing =
            RequestFraming::choose(req.method(), body.is_end_stream(), body.size_hint().exact());
        let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let head = head::encode_request(req.method(), target, req.headers(), framing);
        let held = body.held();
        let streams = held.is_none() && framing != RequestFraming::None && !body.is_end_stream();
        Self {
            queue: [head, held.unwrap_or_default(), Bytes::new(), Bytes::new()],
            chunked: framing == RequestFraming::Chunked,
            body: None,
            streams,
            primed: false,
            took_frame: false,
            written: false,
            state: Writing::Sending,
        }
    }

    /// The whole request went out.
    fn is_done(&self) -> bool {
        self.state == Writing::Done
    }

    /// Writes what can be written. `Err` only when the request cannot go
    /// on: nothing could be written, or the client's body failed (then
    /// `request` is emptied: the client's fault is not to be retried).
    /// `request` is the exchange's: a streamed body moves out of it into
    /// the outbox with the first byte written.
    fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        conn: &mut H1Conn,
        request: &mut Option<Request<RequestBody>>,
    ) -> Poll<Result<(), Error>> {
        if !self.primed {
            self.primed = true;
            if let Some(req) = request.as_mut().filter(|_| self.streams) {
                if let Poll::Ready(frame) = Pin::new(req.body_mut()).poll_frame(cx) {
                    if let Err(e) = self.enqueue(frame) {
                        *request = None;
                        return Poll::Ready(Err(e));
                    }
                }
            }
        }
        while self.state == Writing::Sending {
            match ready!(self.poll_drain(cx, conn, request)) {
                Ok(()) => {}
                Err(e) if !self.written => {
                    return Poll::Ready(Err(Error::with_cause(Kind::UpstreamReset, e)));
                }
                Err(e) => {
                    tracing::debug!("upstream stopped reading the request: {e}");
                    self.state = Writing::Broken;
                    break;
                }
            }
            let Some(body) = self.body.as_mut() else {
                self.state = Writing::Done;
                break;
            };
            match Pin::new(body).poll_frame(cx) {
                Poll::Pending => {
                    // Bytes a TLS session holds must leave before we wait.
                    if let Poll::Ready(Err(e)) = conn.poll_flush(cx) {
                        tracing::debug!("upstream stopped reading the request: {e}");
                        self.state = Writing::Broken;
                        break;
                    }
                    return Poll::Pending;
                }
                Poll::Ready(frame) => self.enqueue(frame)?,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Queues a body frame with its chunk framing; notes the body's end.
    fn enqueue(&mut self, frame: Option<Result<Frame<Bytes>, Error>>) -> Result<(), Error> {
        match frame {
            None => {
                self.streams = false;
                self.body = None;
                if self.chunked {
                    self.push(Bytes::from_static(b"0\r\n\r\n"));
                }
            }
            Some(Err(e)) => return Err(e),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if data.is_empty() => {}
                Ok(data) => {
                    self.took_frame = true;
                    if self.chunked {
                        self.push(Bytes::from(format!("{:x}\r\n", data.len())));
                        self.push(data);
                        self.push(Bytes::from_static(b"\r\n"));
                    } else {
                        self.push(data);
                    }
                }
                Err(_trailers) => {} // not forwarded upstream
            },
        }
        Ok(())
    }

    fn push(&mut self, bytes: Bytes) {
        let next = self
            .queue
            .iter()
            .rposition(|b| !b.is_empty())
            .map_or(0, |i| i + 1);
        self.queue[next] = bytes;
    }

    /// Writes the queue out and flushes it.
    fn poll_drain(
        &mut self,
        cx: &mut Context<'_>,
        conn: &mut H1Conn,
        request: &mut Option<Request<RequestBody>>,
    ) -> Poll<std::io::Result<()>> {
        while self.queue.iter().any(|b| !b.is_empty()) {
            let slices: [IoSlice<'_>; 4] = std::array::from_fn(|i| IoSlice::new(&self.queue[i]));
            let n = ready!(conn.poll_write_vectored(cx, &slices))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.advance(n);
            if !self.written {
                self.written = true;
                // A streamed body is read from here on; a held one stays
                // with the request, which can still be sent again.
                if self.streams {
                    self.body = request.take().map(Request::into_body);
                }
            }
        }
        conn.poll_flush(cx)
    }

    fn advance(&mut self, mut n: usize) {
        for part in &mut self.queue {
            let take = n.min(part.len());
            part.advance(take);
            n -= take;
        }
    }
}
