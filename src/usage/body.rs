//! Usage in complete JSON answers, and the per-dialect `usage` shapes the
//! stream tracker shares.

use simd_json::prelude::*;

use super::Usage;
use super::json::{self, Json};
use super::walk;
use crate::dialect::Dialect;

/// Usage and model from a complete non-streaming JSON response body of
/// `dialect` (OpenAI chat/completions: `usage.{prompt_tokens,
/// completion_tokens, prompt_tokens_details.cached_tokens,
/// completion_tokens_details.reasoning_tokens}` and `model`; Responses:
/// `usage.{input_tokens, input_tokens_details.cached_tokens, output_tokens,
/// output_tokens_details.reasoning_tokens}` and `model`; Anthropic:
/// `usage.{input_tokens, output_tokens, cache_creation_input_tokens,
/// cache_read_input_tokens}` and `model`). Generic: try all shapes.
///
/// The usage is `None` when the body is not a JSON object or has no `usage`
/// object. Only the top level is walked ([`walk`]) and only the `usage` and
/// `model` values are parsed, so a long answer costs a walk, not a parse;
/// a body whose keys are spelled with escapes gets the full parse. With
/// duplicate keys the last one counts, as in a full parse.
pub(crate) fn from_body(dialect: Dialect, body: &[u8]) -> (Option<Usage>, Option<String>) {
    let Some(top) = walk::top_level(body) else {
        return (None, None);
    };
    if top.escaped {
        return parsed(dialect, body);
    }
    let value = |name: &[u8]| walk::last(body, &top.members, name).map(|m| &body[m.value.clone()]);
    let usage = value(b"usage")
        .filter(|v| v.first() == Some(&b'{'))
        .and_then(|v| json::read(v, |u| usage_of(dialect, u)));
    (usage, value(b"model").and_then(walk::string))
}

/// [`from_body`] by a full parse (keys spelled with escapes).
pub(super) fn parsed(dialect: Dialect, body: &[u8]) -> (Option<Usage>, Option<String>) {
    json::read(body, |value| {
        let model = model_of(value);
        let usage = value
            .get("usage")
            .filter(Json::is_object)
            .map(|u| usage_of(dialect, u));
        (usage, model)
    })
    .unwrap_or((None, None))
}

/// The `usage` object of an answer in `dialect`'s shape. Generic: try all
/// shapes.
fn usage_of(dialect: Dialect, u: Json<'_, '_>) -> Usage {
    match dialect {
        Dialect::OpenAiChat => chat_usage(u),
        Dialect::OpenAiResponses => responses_usage(u),
        Dialect::Anthropic => anthropic_usage(u),
        Dialect::Generic => chat_usage(u).or(responses_usage(u)).or(anthropic_usage(u)),
    }
}

/// The `model` string of an object, owned.
pub(super) fn model_of(v: Json<'_, '_>) -> Option<String> {
    v.get("model").and_then(|m| m.as_str().map(str::to_owned))
}

/// The unsigned integer at `path` below `v`.
pub(super) fn num(v: Json<'_, '_>, path: &[&str]) -> Option<u64> {
    let mut cur = v;
    for key in path {
        cur = cur.get(*key)?;
    }
    cur.as_u64()
}

/// OpenAI chat/completions `usage`.
pub(super) fn chat_usage(u: Json<'_, '_>) -> Usage {
    Usage {
        input: num(u, &["prompt_tokens"]),
        output: num(u, &["completion_tokens"]),
        cache_read: num(u, &["prompt_tokens_details", "cached_tokens"]),
        cache_write: None,
        reasoning: num(u, &["completion_tokens_details", "reasoning_tokens"]),
    }
}

/// OpenAI Responses `usage`.
pub(super) fn responses_usage(u: Json<'_, '_>) -> Usage {
    Usage {
        input: num(u, &["input_tokens"]),
        output: num(u, &["output_tokens"]),
        cache_read: num(u, &["input_tokens_details", "cached_tokens"]),
        cache_write: None,
        reasoning: num(u, &["output_tokens_details", "reasoning_tokens"]),
    }
}

/// Anthropic `usage` (message_start's `message.usage`, message_delta's
/// `usage`, or a non-streaming message's `usage`).
pub(super) fn anthropic_usage(u: Json<'_, '_>) -> Usage {
    Usage {
        input: num(u, &["input_tokens"]),
        output: num(u, &["output_tokens"]),
        cache_read: num(u, &["cache_read_input_tokens"]),
        cache_write: num(u, &["cache_creation_input_tokens"]),
        reasoning: None,
    }
}
