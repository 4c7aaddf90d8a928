//! Relay-made answers, in the shape each API's SDKs parse (see
//! `dialect::errors`). Every such answer carries `sse-edge-error: <code>` so operators can tell
//! a relay-made error from one the upstream sent.

use http::{HeaderValue, Response, header};

use super::ResponseBody;
use crate::dialect::Dialect;
use crate::dialect::errors::{self, ErrorInfo};
use crate::error::{Error, Kind};
use crate::telemetry::Exchange;

/// Builds the error answer for `err`.
pub(super) fn error(
    err: &Error,
    dialect: Dialect,
    exchange: Option<Exchange>,
) -> Response<ResponseBody> {
    let status = err.status();
    let message = err.message();
    let info = ErrorInfo {
        status,
        code: err.kind().code(),
        message: &message,
    };
    let body = errors::body(dialect, info);
    let mut exchange = exchange;
    if let Some(x) = exchange.as_mut() {
        x.set_status(status.as_u16());
    }
    let mut res = Response::new(ResponseBody::full(body, exchange));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        "sse-edge-error",
        HeaderValue::from_static(err.kind().code()),
    );
    match err.kind() {
        Kind::MethodNotAllowed => {
            let allow = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";
            h.insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        Kind::Overloaded | Kind::ShuttingDown | Kind::ClusterUnavailable => {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        Kind::RequestTimeout | Kind::DownstreamBody | Kind::NotImplemented => {
            // The rest of the body is not coming (or cannot be read): the
            // connection cannot be reused.
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        Kind::Unauthorized => {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        Kind::RateLimited => {
            let secs = err.retry_after_secs().unwrap_or(1);
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        _ => {}
    }
    res
}

/// A refused reconnect to a resumable stream. EventSource-style clients
/// (`Accept: text/event-stream`) get the dialect's error *event*, others its
/// JSON error body; either way the status is not 200, so an EventSource
/// stops reconnecting instead of looping on the error.
pub(super) fn resume_refused(
    status: http::StatusCode,
    code: &'static str,
    message: &str,
    dialect: Dialect,
    as_event: bool,
    mut exchange: Exchange,
) -> Response<ResponseBody> {
    let info = ErrorInfo {
        status,
        code,
        message,
    };
    let (body, content_type) = if as_event {
        (errors::event(dialect, info), "text/event-stream")
    } else {
        (errors::body(dialect, info).into(), "application/json")
    };
    exchange.set_status(status.as_u16());
    let mut res = Response::new(ResponseBody::full(body, Some(exchange)));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("sse-edge-error", HeaderValue::from_static(code));
    res
}
