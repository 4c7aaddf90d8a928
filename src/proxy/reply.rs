//! Relay-made answers, in the shape each API's SDKs parse.
//!
//! OpenAI: `{"error":{"message","type","param","code"}}`.
//! Anthropic: `{"type":"error","error":{"type","message"}}`.
//! Generic routes get the OpenAI shape, the most widely understood one.
//! Every such answer carries `sse-edge-error: <code>` so operators can tell
//! a relay-made error from one the upstream sent.

use http::{HeaderValue, Response, StatusCode, header};

use super::dialect::Dialect;
use crate::body::ResponseBody;
use crate::error::{Error, Kind};
use crate::telemetry::{Exchange, json_escape_into};

/// Builds the error answer for `err`.
pub fn error(err: &Error, dialect: Dialect, exchange: Option<Exchange>) -> Response<ResponseBody> {
    let status = err.status();
    let body = error_body(dialect, status, code(err.kind()), &err.message());
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
    h.insert("sse-edge-error", HeaderValue::from_static(code(err.kind())));
    if err.kind() == Kind::MethodNotAllowed {
        h.insert(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
        );
    }
    res
}

/// The JSON error body in `dialect`'s shape.
pub fn error_body(dialect: Dialect, status: StatusCode, code: &str, message: &str) -> String {
    let mut b = String::with_capacity(128 + message.len());
    match dialect {
        Dialect::Anthropic => {
            b.push_str("{\"type\":\"error\",\"error\":{\"type\":\"");
            b.push_str(anthropic_type(status));
            b.push_str("\",\"message\":\"");
            json_escape_into(&mut b, message);
            b.push_str("\"}}");
        }
        Dialect::OpenAi | Dialect::Generic => {
            b.push_str("{\"error\":{\"message\":\"");
            json_escape_into(&mut b, message);
            b.push_str("\",\"type\":\"");
            b.push_str(openai_type(status));
            b.push_str("\",\"param\":null,\"code\":\"");
            b.push_str(code);
            b.push_str("\"}}");
        }
    }
    b
}

fn code(kind: Kind) -> &'static str {
    match kind {
        Kind::Connect | Kind::Tls => "upstream_unreachable",
        Kind::ConnectTimeout => "upstream_connect_timeout",
        Kind::FirstByteTimeout => "upstream_timeout",
        Kind::UpstreamReset | Kind::UpstreamProtocol => "upstream_error",
        Kind::NoRoute => "no_route",
        Kind::BodyTooLarge => "request_too_large",
        Kind::BadRequest | Kind::DownstreamBody => "bad_request",
        Kind::MethodNotAllowed => "method_not_allowed",
        Kind::ShuttingDown => "shutting_down",
    }
}

fn openai_type(status: StatusCode) -> &'static str {
    if status.is_server_error() {
        "server_error"
    } else {
        "invalid_request_error"
    }
}

/// Anthropic's documented error types by status.
fn anthropic_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 | 503 => "overloaded_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let o = error_body(
            Dialect::OpenAi,
            StatusCode::BAD_GATEWAY,
            "upstream_unreachable",
            "no \"way\"",
        );
        assert_eq!(
            o,
            r#"{"error":{"message":"no \"way\"","type":"server_error","param":null,"code":"upstream_unreachable"}}"#
        );
        let a = error_body(
            Dialect::Anthropic,
            StatusCode::NOT_FOUND,
            "no_route",
            "nope",
        );
        assert_eq!(
            a,
            r#"{"type":"error","error":{"type":"not_found_error","message":"nope"}}"#
        );
    }
}
