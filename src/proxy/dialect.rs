//! API dialects: which client family a request belongs to.
//!
//! The dialect picks the shape of relay-made errors (and, in the SSE
//! engine, the keepalive frame). `auto` decides from the request path:
//! OpenAI for chat completions, completions and Responses; Anthropic for
//! messages; generic for anything else.

use crate::config::DialectSetting;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    OpenAi,
    Anthropic,
    Generic,
}

impl Dialect {
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::OpenAi => "openai",
            Dialect::Anthropic => "anthropic",
            Dialect::Generic => "generic",
        }
    }

    /// The dialect `setting` gives for a request to `path`.
    pub fn resolve(setting: DialectSetting, path: &str) -> Self {
        match setting {
            DialectSetting::OpenAi => Dialect::OpenAi,
            DialectSetting::Anthropic => Dialect::Anthropic,
            DialectSetting::Generic => Dialect::Generic,
            DialectSetting::Auto => Self::from_path(path),
        }
    }

    /// Matches on the path's end so routes with a prefix
    /// (`/openai/v1/chat/completions`) resolve the same way.
    pub fn from_path(path: &str) -> Self {
        let path = path.trim_end_matches('/');
        const OPENAI: [&str; 3] = ["/v1/chat/completions", "/v1/completions", "/v1/responses"];
        if OPENAI.iter().any(|p| path.ends_with(p)) {
            Dialect::OpenAi
        } else if path.ends_with("/v1/messages") {
            Dialect::Anthropic
        } else {
            Dialect::Generic
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_by_path() {
        assert_eq!(Dialect::from_path("/v1/chat/completions"), Dialect::OpenAi);
        assert_eq!(Dialect::from_path("/v1/completions"), Dialect::OpenAi);
        assert_eq!(Dialect::from_path("/v1/responses"), Dialect::OpenAi);
        assert_eq!(
            Dialect::from_path("/openai/v1/chat/completions/"),
            Dialect::OpenAi
        );
        assert_eq!(Dialect::from_path("/v1/messages"), Dialect::Anthropic);
        assert_eq!(Dialect::from_path("/v1/models"), Dialect::Generic);
        assert_eq!(Dialect::from_path("/"), Dialect::Generic);
        assert_eq!(
            Dialect::resolve(DialectSetting::Anthropic, "/v1/chat/completions"),
            Dialect::Anthropic
        );
    }
}
