//! The request path's side of continuation: the [`Continuer`] an SSE body
//! asks when its answer is cut after events went out.
//!
//! A route continues answers when `continuation_attempts` is above 0 and
//! one of its endpoints declares a `continuation` mechanism for the
//! request's dialect; the request must be a streaming OpenAI chat or
//! Anthropic messages request with a JSON body the relay read, and ask for
//! one choice. The continuation itself goes through the failover loop
//! (`failover.rs`), with its budgets, timeouts and circuit breakers, to the
//! endpoints that declared a mechanism, the one that cut the answer
//! excepted; each gets the original request with the delivered text as a
//! trailing assistant message in its own form. Whether the answer can be
//! continued at all (plain text, one choice) is the dialect's to say
//! (`dialect::continuation`).

use std::sync::Arc;

use bytes::Bytes;

use super::failover::{self, Head, Payload, Policy};
use super::request::{OutBody, Outbound};
use super::route::Route;
use super::upstreams::Upstreams;
use crate::body::{Answer, Continuer, Pending};
use crate::dialect::Dialect;
use crate::dialect::continuation::Delivered;

/// The continuer for this request, when its route continues answers and
/// the request qualifies.
pub(super) fn continuer(
    route: &Route,
    dialect: Dialect,
    out: &Outbound,
) -> Option<Box<dyn Continuer>> {
    let attempts = route.stream.continuation_attempts;
    if attempts == 0 || !out.streaming {
        return None;
    }
    if !matches!(dialect, Dialect::OpenAiChat | Dialect::Anthropic) {
        return None;
    }
    if out.chat_ask.is_some_and(|ask| ask.choices > 1) {
        return None;
    }
    let OutBody::Buffered(body) = &out.body else {
        return None;
    };
    if !route.upstreams.continues(dialect) {
        return None;
    }
    Some(Box::new(Continue {
        ups: route.upstreams.clone(),
        route: route.name.clone(),
        head: out.head.clone(),
        original: body.clone(),
        policy: Policy::new(&route.stream),
        dialect,
        left: attempts,
        cut_by: Vec::new(),
    }))
}

struct Continue {
    ups: Arc<Upstreams>,
    route: Arc<str>,
    head: Head,
    /// The request body as the first endpoint got it (before its `model`).
    original: Bytes,
    policy: Policy,
    dialect: Dialect,
    /// Continuations left for this stream.
    left: u32,
    /// Every endpoint that cut this answer: none is asked to continue it.
    cut_by: Vec<Arc<str>>,
}

impl Continuer for Continue {
    fn start(
        &mut self,
        delivered: &Delivered,
        reason: &'static str,
        from: Option<Arc<str>>,
    ) -> Option<Pending> {
        if let Some(from) = &from {
            if !self.cut_by.contains(from) {
                self.cut_by.push(from.clone());
            }
        }
        if self.left == 0 {
            return None;
        }
        let dialect = self.dialect;
        let cut_by = &self.cut_by;
        let others = self
            .ups
            .chain
            .iter()
            .chain(self.ups.context.as_ref())
            .flat_map(|g| &g.endpoints)
            .any(|e| e.continuation.is_some_and(|m| m.fits(dialect)) && !cut_by.contains(&e.name));
        if !others {
            return None;
        }
        self.left -= 1;
        let payload = Payload::Continue {
            original: self.original.clone(),
            delivered: delivered.clone(),
            exclude: self.cut_by.clone(),
        };
        let ups = self.ups.clone();
        let send = failover::send(
            ups.clone(),
            self.route.clone(),
            self.head.clone(),
            payload,
            self.policy,
        );
        Some(Box::pin(async move {
            let answer = send.await;
            if let (Some(from), Some(to), true) =
                (&from, &answer.attempts.endpoint, continues(&answer))
            {
                ups.count_continuation(from, to, reason);
            }
            answer
        }))
    }
}

/// The answer is a continuation: a `2xx` event stream. (A `400` for the
/// prefill passes the failover loop as served, but continues nothing.)
fn continues(answer: &Answer) -> bool {
    answer.result.as_ref().is_ok_and(|sent| {
        sent.response.status().is_success()
            && crate::dialect::is_event_stream(sent.response.headers())
    })
}
