//! The upstream request: target, headers, and whether the body is read
//! first.
//!
//! A JSON POST is read into memory (within `server.max_request_body`)
//! before it goes upstream: the relay needs its `"stream": true` flag to
//! know a stream is coming, and a buffered body can be sent again on retry.
//! The flag is looked for with a substring search; only bodies that contain
//! `"stream"` are parsed (simd-json), and only to read that one top-level
//! key. Every other body streams through untouched.

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

/// A request ready to go upstream.
pub enum Outbound {
    Buffered {
        head: Head,
        body: Bytes,
        streaming: bool,
    },
    Streaming {
        head: Head,
        body: Incoming,
        limit: u64,
        streaming: bool,
    },
}

impl Outbound {
    /// The client asked for an event stream.
    pub fn streaming(&self) -> bool {
        match self {
            Outbound::Buffered { streaming, .. } | Outbound::Streaming { streaming, .. } => {
                *streaming
            }
        }
    }

    pub fn into_request(self) -> Request<RequestBody> {
        match self {
            Outbound::Buffered { head, body, .. } => head.request(RequestBody::buffered(body)),
            Outbound::Streaming {
                head, body, limit, ..
            } => head.request(RequestBody::streaming(body, limit)),
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
/// asked for a stream.
pub async fn prepare(head: Head, body: Incoming, limit: u64) -> Result<Outbound, Error> {
    let accepts_sse = accepts_event_stream(&head.headers);
    if head.method != Method::POST || !is_json(&head.headers) {
        return Ok(Outbound::Streaming {
            head,
            body,
            limit,
            streaming: accepts_sse,
        });
    }
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    let bytes = Limited::new(body, limit_usize)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                Error::new(Kind::BodyTooLarge)
            } else {
                Error::with_cause(Kind::DownstreamBody, e)
            }
        })?
        .to_bytes();
    let streaming = accepts_sse || stream_flag(&bytes);
    Ok(Outbound::Buffered {
        head,
        body: bytes,
        streaming,
    })
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

/// True when the JSON body has `"stream": true` at its top level.
pub fn stream_flag(body: &[u8]) -> bool {
    if memchr::memmem::find(body, b"\"stream\"").is_none() {
        return false;
    }
    let mut copy = body.to_vec();
    let Ok(value) = simd_json::to_borrowed_value(&mut copy) else {
        return false;
    };
    use simd_json::prelude::*;
    value.get("stream").and_then(|v| v.as_bool()) == Some(true)
}

#[cfg(test)]
mod tests {
    use super::stream_flag;

    #[test]
    fn stream_flag_only_at_top_level() {
        assert!(stream_flag(br#"{"model":"m","stream":true}"#));
        assert!(stream_flag(br#"{ "stream" : true, "messages": [] }"#));
        assert!(!stream_flag(br#"{"stream":false}"#));
        assert!(!stream_flag(
            br#"{"messages":[{"content":"\"stream\": true"}]}"#
        ));
        assert!(!stream_flag(br#"{"metadata":{"stream":true}}"#));
        assert!(!stream_flag(br#"{"stream":true"#));
        assert!(!stream_flag(b"not json"));
    }
}
