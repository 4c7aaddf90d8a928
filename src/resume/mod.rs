//! Stream resumption: a client that loses its connection mid-stream
//! reconnects with `Last-Event-ID` and continues where it left off, while
//! the upstream generation goes on.
//!
//! ```text
//! upstream ─▶ SseBody (whole events, `id: <token>:<seq>`) ─▶ producer task
//!                                                               │ push
//!                                                               ▼
//!              client ◀── Reader ◀── Log (bounded, shared Bytes, per stream)
//!                           ▲
//!   reconnect: Last-Event-ID <token>:<seq>  or  GET /sse-edge/streams/<token>
//! ```
//! Opt-in per route (`resume_window`, `resume_max_bytes`); all logs
//! together stay under `resume_memory` (ended streams' logs go first when
//! it runs out). A stream lives on for its window after its reader goes;
//! then the upstream, if still running, is cancelled.
//!
//! A stream's state lives on the relay instance that produces it. Alone,
//! a reconnect must reach that instance; in cluster mode (`[cluster]`) it
//! may reach any replica, which asks the producing one over the cluster's
//! bus ([`remote`]).

mod hub;
mod log;
mod producer;
mod reader;
pub(crate) mod remote;
#[cfg(test)]
mod tests;
mod token;

pub(crate) use hub::{Gone, Hub, ResumeError};
pub use log::Log;
pub(crate) use reader::Reader;
pub use token::Token;
pub(crate) use token::parse_last_event_id;

/// Path prefix of the resume endpoint: `GET /sse-edge/streams/<token>`.
pub(crate) const PATH_PREFIX: &str = "/sse-edge/streams/";

/// `path` as logs may show it: on the resume endpoint the token is the
/// credential a reconnect needs, so only its first four hex digits are kept
/// (as the token's `Debug` shows it). Other paths are returned unchanged.
pub(crate) fn redact_path(path: &str) -> std::borrow::Cow<'_, str> {
    match path.strip_prefix(PATH_PREFIX) {
        Some(rest) if !rest.is_empty() => {
            let shown = rest.get(..4).filter(|_| rest.len() > 4).unwrap_or("");
            format!("{PATH_PREFIX}{shown}..").into()
        }
        _ => path.into(),
    }
}

/// Response header naming a resumable stream's token.
pub(crate) const STREAM_ID_HEADER: &str = "sse-edge-stream-id";

/// The `sse-edge-error` code and message of a refused reconnect.
pub(crate) fn describe(e: ResumeError) -> (&'static str, String) {
    match e {
        ResumeError::Unknown => (
            "resume_unknown",
            "no resumable stream has this id on this relay instance".to_owned(),
        ),
        ResumeError::Gone(why) => (reader::gone_code(why), reader::gone_message(why).to_owned()),
        ResumeError::Overflow { after, oldest } => (
            "resume_overflow",
            format!(
                "this stream can no longer be resumed after event {after}: its resume buffer \
                 (resume_max_bytes) now starts at event {oldest}"
            ),
        ),
        ResumeError::Ahead { after, sent } => (
            "resume_bad_position",
            format!("Last-Event-ID names event {after}, but this stream has sent {sent} events"),
        ),
        ResumeError::Unreachable => (
            "resume_unreachable",
            "the relay replica holding this stream does not answer: it stopped, or the \
             cluster store is unreachable"
                .to_owned(),
        ),
    }
}
