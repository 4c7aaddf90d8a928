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
//! (`usage::inject_include_usage`, no re-serialisation). Every other body
//! streams through untouched.

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, Method, Request, Uri, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::ConnInfo;
use super::headers;
use super::retry::Head;
use super::route::Route;
use crate::body::RequestBody;
use crate::error::{Error, Kind};
use crate::usage::{inject_include_usage, request_info};

/// A request ready to go upstream.
pub struct Outbound {
    pub head: Head,
    pub body: OutBody,
    /// The client asked for an event stream.
    pub streaming: bool,
    /// `model` from the request body.
    pub model: Option<String>,
    /// The relay added `stream_options.include_usage`: strip the usage-only
    /// chunk from the client's stream.
    pub strip_usage_chunk: bool,
}

pub enum OutBody {
    Buffered(Bytes),
    Streaming { body: Incoming, limit: u64 },
}

impl Outbound {
    pub fn into_request(self) -> Request<RequestBody> {
        match self.body {
            OutBody::Buffered(bytes) => self.head.request(RequestBody::buffered(bytes)),
            OutBody::Streaming { body, limit } => {
                self.head.request(RequestBody::streaming(body, limit))
            }
        }
    }
}

/// Target and headers for the upstream.
pub fn head(
    route: &Route,
    parts: Parts,
    conn: &ConnInfo,
    trust_forwarded: bool,
) -> Result<Head, Error> {
    let target = route.upstream_target(parts.uri.path(), parts.uri.query());
    let uri: Uri = target
        .parse()
        .map_err(|e| Error::with_cause(Kind::BadRequest, e))?;
    let mut h = parts.headers;
    headers::strip_hop_by_hop(&mut h);
    h.remove(header::HOST);
    // hyper answered any `Expect: 100-continue` already, by reading the body.
    h.remove(header::EXPECT);
    headers::set_forwarded(&mut h, conn.peer.ip(), conn.https, trust_forwarded);
    Ok(Head {
        method: parts.method,
        uri,
        headers: h,
    })
}

/// Reads the body first when it is a JSON POST; decides whether the client
/// asked for a stream, and adds `include_usage` when the route wants it.
pub async fn prepare(
    head: Head,
    body: Incoming,
    limit: u64,
    add_usage: bool,
) -> Result<Outbound, Error> {
    let accepts_sse = accepts_event_stream(&head.headers);
    if head.method != Method::POST || !is_json(&head.headers) {
        let body = OutBody::Streaming { body, limit };
        return Ok(Outbound {
            head,
            body,
            streaming: accepts_sse,
            model: None,
            strip_usage_chunk: false,
        });
    }
    let mut bytes = read_limited(body, limit).await?;
    let info = request_info(&bytes);
    let streaming = accepts_sse || info.stream;
    let mut strip_usage_chunk = false;
    if add_usage && info.stream && info.include_usage != Some(true) {
        if let Some(spliced) = inject_include_usage(&bytes) {
            bytes = spliced;
            strip_usage_chunk = true;
        }
    }
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
    })
}

async fn read_limited(body: Incoming, limit: u64) -> Result<Bytes, Error> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let collected = Limited::new(body, limit).collect().await.map_err(|e| {
        if e.is::<http_body_util::LengthLimitError>() {
            Error::new(Kind::BodyTooLarge)
        } else {
            Error::with_cause(Kind::DownstreamBody, e)
        }
    })?;
    Ok(collected.to_bytes())
}

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
