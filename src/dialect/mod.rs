//! API dialects: what each client family expects on the wire.
//!
//! The dialect picks the shape of relay-made errors ([`errors`]), the
//! keepalive frame, the terminal event of a stream and the answer's own
//! signal that it is complete ([`stream`]). `auto` decides from the request
//! path: OpenAI chat/completions for `/v1/chat/completions` and
//! `/v1/completions`, OpenAI Responses for `/v1/responses`, Anthropic for
//! `/v1/messages`, generic otherwise. A route set to `openai` still tells
//! Responses from chat by path.

pub(crate) mod continuation;
pub(crate) mod errors;
pub(crate) mod stream;

use crate::config::DialectSetting;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Chat completions and legacy completions: `data:` events, `[DONE]`.
    OpenAiChat,
    /// The Responses API: named `response.*` events.
    OpenAiResponses,
    /// Anthropic messages: named events, `message_stop`.
    Anthropic,
    /// Anything else: SSE rules only.
    Generic,
}

impl Dialect {
    /// The name used in logs (the configuration's dialect names).
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::OpenAiChat | Dialect::OpenAiResponses => "openai",
            Dialect::Anthropic => "anthropic",
            Dialect::Generic => "generic",
        }
    }

    /// The dialect `setting` gives for a request to `path`.
    pub fn resolve(setting: DialectSetting, path: &str) -> Self {
        match setting {
            DialectSetting::OpenAi if is_responses(path) => Dialect::OpenAiResponses,
            DialectSetting::OpenAi => Dialect::OpenAiChat,
            DialectSetting::Anthropic => Dialect::Anthropic,
            DialectSetting::Generic => Dialect::Generic,
            DialectSetting::Auto => Self::from_path(path),
        }
    }

    /// Matches on the path's end so routes with a prefix
    /// (`/openai/v1/chat/completions`) resolve the same way.
    pub fn from_path(path: &str) -> Self {
        let path = path.trim_end_matches('/');
        if path.ends_with("/v1/chat/completions") || path.ends_with("/v1/completions") {
            Dialect::OpenAiChat
        } else if is_responses(path) {
            Dialect::OpenAiResponses
        } else if path.ends_with("/v1/messages") {
            Dialect::Anthropic
        } else {
            Dialect::Generic
        }
    }
}

fn is_responses(path: &str) -> bool {
    path.trim_end_matches('/').ends_with("/v1/responses")
}

/// A `text/event-stream` content type.
pub(crate) fn is_event_stream(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .get(..17)
                .is_some_and(|p| p.eq_ignore_ascii_case("text/event-stream"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_by_path() {
        assert_eq!(
            Dialect::from_path("/v1/chat/completions"),
            Dialect::OpenAiChat
        );
        assert_eq!(Dialect::from_path("/v1/completions"), Dialect::OpenAiChat);
        assert_eq!(
            Dialect::from_path("/v1/responses"),
            Dialect::OpenAiResponses
        );
        assert_eq!(
            Dialect::from_path("/openai/v1/chat/completions/"),
            Dialect::OpenAiChat
        );
        assert_eq!(Dialect::from_path("/v1/messages"), Dialect::Anthropic);
        assert_eq!(Dialect::from_path("/v1/models"), Dialect::Generic);
        assert_eq!(Dialect::from_path("/"), Dialect::Generic);
        assert_eq!(
            Dialect::resolve(DialectSetting::Anthropic, "/v1/chat/completions"),
            Dialect::Anthropic
        );
        assert_eq!(
            Dialect::resolve(DialectSetting::OpenAi, "/x/v1/responses"),
            Dialect::OpenAiResponses
        );
        assert_eq!(
            Dialect::resolve(DialectSetting::OpenAi, "/anything"),
            Dialect::OpenAiChat
        );
    }
}
