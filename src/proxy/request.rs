//! The upstream request: target, headers, and whether the body is read
//! first.
//!
//! A JSON POST is read into memory (within `server.max_request_body`)
//! before it goes upstream: the relay needs its `"stream": true` flag to
//! know a stream is coming, and a buffered body can be sent again on retry.
//! The body is parsed (simd-json) only when a substring search finds
//! `"stream"` or `"model"` in it, and only its top-level keys are read
//! (`usage::request_info`). With a route's `include_usage`, a streaming
//! OpenAI chat body gets `stream_options.include_usage = true` spliced in
//! (`usage::inject_include_usage`, no re-serialisation). The same read
//! gives what an OpenAI chat stream's end depends on (`n`, and whether
//! usage was asked for: see `dialect::stream::Finish`). A request without
//! a body can be sent again as it is; every other body streams through
//! untouched, and cannot be (see `failover::send_once`).

use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::request::Parts;
use http::{HeaderMap, Method, Uri, header};
use hyper::body::{Body, Incoming};

use super::ConnInfo;
use super::failover::Head;
use super::headers;
use super::route::Route;
use crate::body::ReadDeadline;
use crate::dialect::stream::ChatAsk;
use crate::error::{Error, Kind};
use crate::usage::{inject_include_usage, request_info};

/// A request ready to go upstream.
pub(super) struct Outbound {
    pub head: Head,
    pub body: OutBody,
    /// The client asked for an event stream.
    pub streaming: bool,
    /// `model` from the request body.
    pub model: Option<String>,
    /// The relay added `stream_options.include_usage`: strip the usage-only
    /// chunk from the client's stream.
    pub strip_usage_chunk: bool,
    /// What the body says about an OpenAI chat stream's end (`n`, usage
    /// asked for); None when the body was not read.
    pub chat_ask: Option<ChatAsk>,
}

pub(super) enum OutBody {
    Buffered(Bytes),
    Streaming {
        body: Incoming,
        limit: u64,
        idle: Duration,
    },
}

/// Target and headers for the upstream (each endpoint adds its base path
/// and credential, see [`Head::request`]).
pub(super) fn head(
    route: &Route,
    parts: Parts,
    conn: &ConnInfo,
    trust_forwarded: bool,
) -> Result<Head, Error> {
    // Parsed once here (taking the string's bytes, no copy); endpoints put
    // only a checked base path in front.
    let target = Uri::try_from(route.upstream_target(parts.uri.path(), parts.uri.query()))
        .map_err(|e| Error::with_cause(Kind::BadRequest, e))?;
    let mut h = parts.headers;
    headers::strip_hop_by_hop(&mut h);
    h.remove(header::HOST);
    // hyper answered any `Expect: 100-continue` already, by reading the body.
    h.remove(header::EXPECT);
    headers::set_forwarded(&mut h, &conn.peer_value, conn.https, trust_forwarded);
    Ok(Head {
        method: parts.method,
        target,
        headers: h,
    })
}

/// Reads the body first when it is a JSON POST; decides whether the client
/// asked for a stream, and adds `include_usage` when the route wants it.
pub(super) async fn prepare(
    head: Head,
    body: Incoming,
    limits: BodyLimits,
    add_usage: bool,
) -> Result<Outbound, Error> {
    let accepts_sse = accepts_event_stream(&head.headers);
    if body.is_end_stream() {
        // Nothing to read (a GET): it can go again as it is.
        return Ok(Outbound {
            head,
            body: OutBody::Buffered(Bytes::new()),
            streaming: accepts_sse,
            model: None,
            strip_usage_chunk: false,
            chat_ask: None,
        });
    }
    if head.method != Method::POST || !is_json(&head.headers) {
        let body = OutBody::Streaming {
            body,
            limit: limits.size,
            idle: limits.idle,
        };
        return Ok(Outbound {
            head,
            body,
            streaming: accepts_sse,
            model: None,
            strip_usage_chunk: false,
            chat_ask: None,
        });
    }
    let mut bytes = read_limited(body, limits).await?;
    let info = request_info(&bytes);
    let streaming = accepts_sse || info.stream;
    let mut strip_usage_chunk = false;
    if add_usage && info.stream && info.include_usage != Some(true) {
        if let Some(spliced) = inject_include_usage(&bytes) {
            bytes = spliced;
            strip_usage_chunk = true;
        }
    }
    let chat_ask = ChatAsk {
        choices: info.n.unwrap_or(1),
        usage: strip_usage_chunk || info.include_usage == Some(true),
    };
    let mut head = head;
    if strip_usage_chunk {
        // The body changed length; hyper sets the new Content-Length.
        head.headers.remove(header::CONTENT_LENGTH);
    }
    Ok(Outbound {
        head,
        body: OutBody::Buffered(bytes),
        streaming,
        model: info.model,
        strip_usage_chunk,
        chat_ask: Some(chat_ask),
    })
}

/// `server.max_request_body` and `server.body_timeout`.
#[derive(Clone, Copy)]
pub(super) struct BodyLimits {
    pub size: u64,
    pub idle: Duration,
}

/// Reads a whole body within the size limit, each pause within `idle`.
///
/// A body of one frame is kept as it came (no copy). Otherwise each frame
/// is copied as it arrives into one buffer sized from the announced length
/// (see [`capacity`]), so hyper gets its read buffer back at once instead
/// of allocating a new one while the relay holds the frames. One lazy
/// deadline covers every pause (a timestamp per frame, see
/// [`ReadDeadline`]) rather than a timer per frame.
async fn read_limited(mut body: Incoming, limits: BodyLimits) -> Result<Bytes, Error> {
    let mut idle = ReadDeadline::new(limits.idle);
    let mut first: Option<Bytes> = None;
    let mut out = BytesMut::new();
    let mut len: u64 = 0;
    loop {
        let next = std::future::poll_fn(|cx| match Pin::new(&mut body).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(Ok(frame)),
            Poll::Pending => idle.poll_expired(cx).map(Err),
        })
        .await
        .map_err(|_| Error::new(Kind::RequestTimeout))?;
        let Some(frame) = next else { break };
        idle.arrived();
        let frame = frame.map_err(|e| Error::with_cause(Kind::DownstreamBody, e))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        len += data.len() as u64;
        if len > limits.size {
            return Err(Error::new(Kind::BodyTooLarge));
        }
        if out.is_empty() && first.is_none() {
            first = Some(data);
            continue;
        }
        if let Some(f) = first.take() {
            out.reserve(capacity(&body, len));
            out.extend_from_slice(&f);
        }
        out.extend_from_slice(&data);
    }
    Ok(match first {
        Some(only) => only,
        None => out.freeze(),
    })
}

/// Room for the whole body: the announced length when there is one, else
/// what has come so far. At most [`RESERVE_CAP`] up front: a client that
/// announces a large body and then stalls gets no more memory set aside
/// than it sent; a larger body grows the buffer as it arrives.
fn capacity(body: &Incoming, read: u64) -> usize {
    let hint = body.size_hint();
    let total = read.saturating_add(hint.exact().unwrap_or(hint.lower()));
    usize::try_from(total.min(RESERVE_CAP.max(read))).unwrap_or(0)
}

/// The most [`read_limited`] sets aside before the bytes arrive.
const RESERVE_CAP: u64 = 1 << 20;

fn accepts_event_stream(h: &HeaderMap) -> bool {
    h.get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"))
}

fn is_json(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let v = v.to_ascii_lowercase();
            v.starts_with("application/json") || v.contains("+json")
        })
}
