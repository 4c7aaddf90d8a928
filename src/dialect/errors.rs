//! Errors in the shape each API's SDKs parse and raise.
//!
//! Bodies (non-streaming answers):
//! - OpenAI: `{"error":{"message","type","param","code"}}`;
//! - Anthropic: `{"type":"error","error":{"type","message"}}`;
//! - generic routes get the OpenAI shape, the most widely understood one.
//!
//! Events (a stream that already started):
//! - OpenAI chat: `data: {"error":{...}}` (openai-python raises `APIError`
//!   on any event whose JSON has `error`);
//! - OpenAI Responses: `event: error` with `type`, `code`, `message` and
//!   the same `error` object (so the SDK raises as well);
//! - Anthropic: `event: error` + `{"type":"error","error":{...}}`;
//! - generic: `event: error` + the OpenAI-shaped body.

use bytes::Bytes;
use http::StatusCode;

use super::Dialect;
use crate::json::escape_into as json_escape_into;

/// One error: status it stands for, a machine code and a message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ErrorInfo<'a> {
    pub status: StatusCode,
    pub code: &'a str,
    pub message: &'a str,
}

/// The JSON error body in `dialect`'s shape.
pub(crate) fn body(dialect: Dialect, e: ErrorInfo<'_>) -> String {
    match dialect {
        Dialect::Anthropic => anthropic(e),
        _ => openai(e),
    }
}

/// A complete SSE event (ending in a blank line) carrying the error.
pub(crate) fn event(dialect: Dialect, e: ErrorInfo<'_>) -> Bytes {
    let mut out = String::with_capacity(192 + e.message.len());
    match dialect {
        Dialect::OpenAiChat => {
            out.push_str("data: ");
            out.push_str(&openai(e));
        }
        Dialect::OpenAiResponses => {
            out.push_str("event: error\ndata: {\"type\":\"error\",\"code\":\"");
            out.push_str(e.code);
            out.push_str("\",\"message\":\"");
            json_escape_into(&mut out, e.message);
            out.push_str("\",\"param\":null,");
            let inner = openai(e);
            out.push_str(&inner[1..]); // `"error":{...}}` closes the object
        }
        Dialect::Anthropic => {
            out.push_str("event: error\ndata: ");
            out.push_str(&anthropic(e));
        }
        Dialect::Generic => {
            out.push_str("event: error\ndata: ");
            out.push_str(&openai(e));
        }
    }
    out.push_str("\n\n");
    Bytes::from(out)
}

fn openai(e: ErrorInfo<'_>) -> String {
    let mut b = String::with_capacity(96 + e.message.len());
    b.push_str("{\"error\":{\"message\":\"");
    json_escape_into(&mut b, e.message);
    b.push_str("\",\"type\":\"");
    b.push_str(openai_type(e.status));
    b.push_str("\",\"param\":null,\"code\":\"");
    json_escape_into(&mut b, e.code);
    b.push_str("\"}}");
    b
}

fn anthropic(e: ErrorInfo<'_>) -> String {
    let mut b = String::with_capacity(64 + e.message.len());
    b.push_str("{\"type\":\"error\",\"error\":{\"type\":\"");
    b.push_str(anthropic_type(e.status));
    b.push_str("\",\"message\":\"");
    json_escape_into(&mut b, e.message);
    b.push_str("\"}}");
    b
}

fn openai_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    }
}

/// Anthropic's documented error types by status.
fn anthropic_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const E: ErrorInfo<'static> = ErrorInfo {
        status: StatusCode::BAD_GATEWAY,
        code: "upstream_reset",
        message: "upstream \"reset\"",
    };

    #[test]
    fn bodies() {
        assert_eq!(
            body(Dialect::OpenAiChat, E),
            r#"{"error":{"message":"upstream \"reset\"","type":"server_error","param":null,"code":"upstream_reset"}}"#
        );
        assert_eq!(
            body(Dialect::Anthropic, E),
            r#"{"type":"error","error":{"type":"api_error","message":"upstream \"reset\""}}"#
        );
    }

    #[test]
    fn events() {
        let chat = event(Dialect::OpenAiChat, E);
        assert!(chat.starts_with(b"data: {\"error\":{"));
        assert!(chat.ends_with(b"}}\n\n"));
        let resp = event(Dialect::OpenAiResponses, E);
        assert_eq!(
            &resp[..],
            &b"event: error\ndata: {\"type\":\"error\",\"code\":\"upstream_reset\",\"message\":\"upstream \\\"reset\\\"\",\"param\":null,\"error\":{\"message\":\"upstream \\\"reset\\\"\",\"type\":\"server_error\",\"param\":null,\"code\":\"upstream_reset\"}}\n\n"[..]
        );
        let anth = event(Dialect::Anthropic, E);
        assert!(anth.starts_with(
            b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\""
        ));
    }
}
