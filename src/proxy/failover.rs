//! Sending a request to a route's endpoints, failing over while nothing of
//! the answer has reached the client.
//!
//! ```text
//! pick (P2C in the group) ─▶ attempt ─▶ served: its answer goes to the client
//!   ▲                           │
//!   │  next endpoint of the     ├─ failover class: next endpoint of the group,
//!   │  group, then next group ◀─┘  then the next group; a round over, back off
//!   │                              and start again from the primary
//!   └── context group ◀──────── 400 "context length exceeded"
//! ```
//!
//! An attempt is served once the endpoint's answer is certain to reach the
//! client: a status that is not a failover class, or, for a `2xx` event
//! stream, its first event (frames read up to it are put back in front of
//! the body, see `upstream::Body::prime`); for any other `2xx` body, its first
//! frame. Failover classes ([`Failure`]): connect and TLS failures;
//! a reset, close or invalid answer before that point (even after the
//! request was written, unless the route turns `retry_on_reset` off); `429`;
//! `500`, `502`, `503`, `504`, `529`; the first-byte and first-event
//! timeouts; silence past `read_timeout` before the first event. Other
//! statuses pass through and are never retried.
//!
//! Rules:
//! - an endpoint that failed is not tried again in the same round; a silent
//!   one (a timeout), or one that answered something that is not HTTP,
//!   never again in the same request;
//! - when a round has tried every endpoint it could, the loop waits the
//!   backoff (doubling per round, jittered, or a `429`'s `Retry-After` when
//!   longer) and starts again from the primary group, unless the wait would
//!   take the request past `retry_budget` of total waiting;
//! - at most `retry_attempts` attempts follow the first;
//! - a `400` saying the context window was exceeded goes to the context
//!   group, when the route has one, and passes through otherwise; the same
//!   unchanged request never goes to the same model twice;
//! - with every endpoint ejected, the request goes to the one that failed
//!   least recently.
//!
//! When the loop gives up, the last answer stands: the endpoint's own
//! status and body, or the relay's error for a failure without one. The
//! client never sees anything of an attempt that failed.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Uri, header};
use tokio::time::Instant;

use super::upstreams::{Endpoint, Group, GroupId, Upstreams};
use crate::body::Answer;
use crate::config::{StreamConfig, Timeouts};
use crate::dialect::continuation::{self, Delivered};
use crate::error::{Error, Kind, UpstreamClass};
use crate::telemetry::Attempts;
use crate::upstream::{Failure, RequestBody, Sent, choose, least_recently_failed};
use crate::usage::rewrite_model;
use ahead::{first_event, first_frame, read_ahead_all, recycle};

/// The parts of a request needed to send it again, to any endpoint.
#[derive(Clone)]
pub(super) struct Head {
    pub method: Method,
    /// Path and query after the route's prefix handling, parsed once;
    /// each endpoint puts its base path in front.
    pub target: Uri,
    pub headers: HeaderMap,
}

impl Head {
    /// The request for `endpoint`: its base path, its credential.
    pub(super) fn request(
        &self,
        endpoint: &Endpoint,
        body: RequestBody,
    ) -> Result<Request<RequestBody>, Error> {
        let uri = if endpoint.base_path.is_empty() {
            // A clone shares the parsed bytes: nothing is parsed again.
            self.target.clone()
        } else {
            let target = self.target.path_and_query().map_or("/", |p| p.as_str());
            Uri::try_from(format!("{}{target}", endpoint.base_path))
                .map_err(|e| Error::with_cause(Kind::BadRequest, e))?
        };
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = uri;
        *req.headers_mut() = self.headers.clone();
        if let Some(credential) = &endpoint.credential {
            credential.apply(req.headers_mut());
        }
        Ok(req)
    }
}

/// Attempt and time limits for one request.
#[derive(Clone, Copy)]
pub(super) struct Policy {
    pub retries: u32,
    pub budget: Duration,
    pub backoff: Duration,
    pub retry_on_reset: bool,
}

impl Policy {
    pub(super) fn new(stream: &StreamConfig) -> Self {
        Self {
            retries: stream.retry_attempts,
            budget: stream.retry_budget,
            backoff: stream.retry_backoff,
            retry_on_reset: stream.retry_on_reset,
        }
    }
}

/// What goes to each endpoint.
pub(super) enum Payload {
    /// The request body, the same for all (but for `model`).
    Body(Bytes),
    /// The continuation of a cut answer: only endpoints that declared how
    /// they continue one, other than the one that cut it, each in its own
    /// form.
    Continue {
        original: Bytes,
        delivered: Delivered,
        /// Every endpoint that cut this answer.
        exclude: Vec<Arc<str>>,
    },
}

impl Payload {
    /// Whether `endpoint` may be sent this.
    fn admits(&self, endpoint: &Endpoint) -> bool {
        match self {
            Payload::Body(_) => true,
            Payload::Continue {
                exclude, delivered, ..
            } => {
                endpoint
                    .continuation
                    .is_some_and(|m| m.fits(delivered.dialect()))
                    && !exclude.contains(&endpoint.name)
            }
        }
    }

    /// The body for `endpoint`, before its `model` is set.
    fn body_for(&self, endpoint: &Endpoint) -> Option<Bytes> {
        match self {
            Payload::Body(body) => Some(body.clone()),
            Payload::Continue {
                original,
                delivered,
                ..
            } => continuation::request(original, delivered, endpoint.continuation?),
        }
    }
}

/// How one attempt went.
struct Tried {
    result: Result<Sent, Error>,
    /// A failover class; `None` when served.
    failure: Option<Failure>,
    /// A `429`'s `Retry-After`.
    hold: Option<Duration>,
    /// The endpoint said the request exceeds its context window.
    context: bool,
    /// Connections the request was handed to (the pool may retry a reused
    /// connection's failure on a new one).
    sends: u32,
    /// The status of an answer whose body failed before it could serve.
    broken_status: Option<u16>,
    /// The answer's status, when one came.
    status: Option<u16>,
}

/// An endpoint's place: its group and index there.
type Slot = (GroupId, usize);

/// Sends `head` + `body` (buffered, so it can go again) as the module
/// describes.
pub(super) async fn send(
    ups: Arc<Upstreams>,
    route: Arc<str>,
    head: Head,
    payload: Payload,
    policy: Policy,
) -> Answer {
    let mut attempts = Attempts::default();
    let mut waited = Duration::ZERO;
    let mut round = 0u32;
    // Failed in this round; silent (never again).
    let mut tried: Vec<Slot> = Vec::new();
    let mut silent: Vec<Slot> = Vec::new();
    let mut start = GroupId::Chain(0);
    let admits = |e: &Endpoint| payload.admits(e);
    let mut slot = pick(&ups, start, &tried, &silent, Instant::now(), admits);
    loop {
        let Some(((gid, index), force)) = slot else {
            // Unreachable: a route has at least one endpoint, and `pick`
            // only comes back empty once every endpoint is silent.
            let e = Error::with_cause(Kind::Connect, "no upstream endpoint left to try");
            return answer(Err(e), attempts, None, None);
        };
        let Some(group) = ups.group(gid) else {
            let e = Error::with_cause(Kind::Connect, "no upstream endpoint left to try");
            return answer(Err(e), attempts, None, None);
        };
        let endpoint = &group.endpoints[index];
        let req = match payload.body_for(endpoint) {
            Some(body) => build(endpoint, &head, &body),
            None => Err(Error::with_cause(
                Kind::BadRequest,
                "the request cannot carry a continuation (no messages array)",
            )),
        };
        let tried_now = attempt(endpoint, group, req, force).await;
        attempts.count += tried_now.sends;
        let made = u32::try_from(attempts.failed.len()).unwrap_or(u32::MAX) + 1;
        let from = &endpoint.name;

        let failure = match tried_now.failure {
            Some(f) => f,
            None if tried_now.context && gid != GroupId::Context && ups.context.is_some() => {
                if made > policy.retries {
                    return served(tried_now.result, attempts, endpoint, group);
                }
                attempts.failed.push((from.clone(), "context_length"));
                start = GroupId::Context;
                tried.clear();
                slot = pick(&ups, start, &tried, &silent, Instant::now(), admits);
                note_failover(&ups, &route, from, slot, "context_length");
                continue;
            }
            None => return served(tried_now.result, attempts, endpoint, group),
        };
        let reason = reason(failure, tried_now.status);
        attempts.failed.push((from.clone(), reason));
        let reset_like = matches!(
            failure,
            Failure::Upstream(
                UpstreamClass::Reset | UpstreamClass::Protocol | UpstreamClass::Truncated
            )
        );
        if (reset_like && !policy.retry_on_reset) || made > policy.retries {
            return last(tried_now, attempts, group);
        }
        tried.push((gid, index));
        if failure.rules_out_endpoint() {
            silent.push((gid, index));
        }
        let now = Instant::now();
        slot = pick(&ups, gid, &tried, &silent, now, admits).filter(|(_, force)| !force);
        if slot.is_none() {
            // The round is over: back off, then from the start again.
            let mut wait = jittered(policy.backoff, round);
            if let Some(hold) = tried_now.hold {
                wait = wait.max(hold);
            }
            if waited + wait > policy.budget {
                tracing::info!(
                    route = &*route,
                    "upstream {from}: {reason}; no retry (a {wait:?} wait exceeds retry_budget)"
                );
                return last(tried_now, attempts, group);
            }
            tried.clear();
            round += 1;
            slot = pick(&ups, start, &tried, &silent, now + wait, admits);
            if slot.is_none() {
                return last(tried_now, attempts, group);
            }
            tracing::info!(
                route = &*route,
                "upstream {from}: {reason}; retry in {wait:?}"
            );
            recycle(tried_now);
            tokio::time::sleep(wait).await;
            waited += wait;
            // Health may have changed while waiting.
            slot = pick(&ups, start, &tried, &silent, Instant::now(), admits);
        } else {
            recycle(tried_now);
        }
        note_failover(&ups, &route, from, slot, reason);
    }
}

/// Why an attempt failed, as the access log and `failovers_total` say it:
/// the status for a failing status, the class otherwise.
fn reason(failure: Failure, status: Option<u16>) -> &'static str {
    match (failure, status) {
        (Failure::RateLimited | Failure::Status, Some(429)) => "429",
        (Failure::Status, Some(500)) => "500",
        (Failure::Status, Some(502)) => "502",
        (Failure::Status, Some(503)) => "503",
        (Failure::Status, Some(504)) => "504",
        (Failure::Status, Some(529)) => "529",
        _ => failure.as_str(),
    }
}

/// Counts and logs a move to another endpoint.
fn note_failover(
    ups: &Upstreams,
    route: &str,
    from: &Arc<str>,
    slot: Option<(Slot, bool)>,
    reason: &'static str,
) {
    let Some(((gid, index), _)) = slot else {
        return;
    };
    let Some(to) = ups.group(gid).map(|g| &g.endpoints[index].name) else {
        return;
    };
    if to == from {
        return;
    }
    ups.count_failover(from, to, reason);
    tracing::info!(route, "upstream {from}: {reason}; failing over to {to}");
}

/// The next endpoint from group `start` on (the context group alone when
/// `start` is it): the first group with an endpoint that is neither tried
/// nor silent and whose circuit admits a request. With none admitted, the
/// least recently failed of those neither tried nor silent, forced (`true`).
fn pick(
    ups: &Upstreams,
    start: GroupId,
    tried: &[Slot],
    silent: &[Slot],
    now: Instant,
    admits: impl Fn(&Endpoint) -> bool + Copy,
) -> Option<(Slot, bool)> {
    // The groups in order, without allocating.
    let ids = || {
        let (chain, context) = match start {
            GroupId::Context => (0..0, Some(GroupId::Context)),
            GroupId::Chain(first) => (first..ups.chain.len(), None),
        };
        chain.map(GroupId::Chain).chain(context)
    };
    let out = |gid: GroupId| {
        let endpoints = ups.group(gid).map_or(&[][..], |g| &g.endpoints[..]);
        move |i: usize| {
            !tried.contains(&(gid, i))
                && !silent.contains(&(gid, i))
                && endpoints.get(i).is_some_and(admits)
        }
    };
    for gid in ids() {
        let Some(g) = ups.group(gid) else { continue };
        if let Some(i) = choose(&g.endpoints, |e| &e.health, out(gid), now) {
            return Some(((gid, i), false));
        }
    }
    // Every endpoint out: the one that failed least recently.
    let mut best: Option<(Slot, Option<Instant>)> = None;
    for gid in ids() {
        let Some(g) = ups.group(gid) else { continue };
        if let Some(i) = least_recently_failed(&g.endpoints, |e| &e.health, out(gid)) {
            let at = g.endpoints[i].health.last_failure();
            if best.is_none_or(|(_, b)| at < b) {
                best = Some(((gid, i), at));
            }
        }
    }
    best.map(|(slot, _)| (slot, true))
}

/// The endpoint served: the client gets its answer.
fn served(
    result: Result<Sent, Error>,
    attempts: Attempts,
    endpoint: &Endpoint,
    group: &Group,
) -> Answer {
    let mut attempts = attempts;
    attempts.endpoint = Some(endpoint.name.clone());
    answer(
        result,
        attempts,
        endpoint.model.clone(),
        group.timeouts.read,
    )
}

/// Nothing more is tried: the last answer stands.
fn last(tried: Tried, attempts: Attempts, group: &Group) -> Answer {
    let mut attempts = attempts;
    attempts.broken_status = tried.broken_status;
    answer(tried.result, attempts, None, group.timeouts.read)
}

fn answer(
    result: Result<Sent, Error>,
    attempts: Attempts,
    model: Option<Arc<str>>,
    read_timeout: Option<Duration>,
) -> Answer {
    let result = result.map(|mut sent| {
        sent.attempts = attempts.count;
        sent
    });
    let result = result.map_err(|e| e.with_attempts(attempts.count.max(1)));
    Answer {
        result,
        attempts,
        model,
        read_timeout,
    }
}

/// `head` + `body` for `endpoint`: its base path, credential and `model`.
fn build(endpoint: &Endpoint, head: &Head, body: &Bytes) -> Result<Request<RequestBody>, Error> {
    let Some(model) = &endpoint.model else {
        return head.request(endpoint, RequestBody::buffered(body.clone()));
    };
    let rewritten = rewrite_model(body, model);
    let changed = rewritten.is_some();
    let body = rewritten.unwrap_or_else(|| body.clone());
    let mut req = head.request(endpoint, RequestBody::buffered(body))?;
    if changed {
        // The body changed length; the codec sets it again.
        req.headers_mut().remove(header::CONTENT_LENGTH);
    }
    Ok(req)
}

/// One attempt on `endpoint`, its health told how it went.
async fn attempt(
    endpoint: &Endpoint,
    group: &Group,
    req: Result<Request<RequestBody>, Error>,
    force: bool,
) -> Tried {
    let now = Instant::now();
    let ticket = endpoint
        .health
        .begin(now, force)
        .or_else(|| endpoint.health.begin(now, true));
    let tried = match req {
        Ok(req) => exchange(endpoint, req, &group.timeouts).await,
        Err(e) => Tried {
            result: Err(e),
            failure: None,
            hold: None,
            context: false,
            sends: 0,
            broken_status: None,
            status: None,
        },
    };
    let Some(ticket) = ticket else { return tried };
    let now = Instant::now();
    let mut tried = tried;
    match tried.failure {
        Some(f) => ticket.failure(f, tried.hold, now),
        None => {
            let load = ticket.success(now);
            if let Ok(sent) = &mut tried.result {
                sent.lease.hold(load);
            }
        }
    }
    tried
}

/// A request whose body streams through from the client (it cannot be
/// sent twice): one attempt, on the endpoint the primary group chooses.
pub(super) async fn send_once(ups: Arc<Upstreams>, head: Head, body: RequestBody) -> Answer {
    let mut attempts = Attempts::default();
    let Some(((gid, index), force)) =
        pick(&ups, GroupId::Chain(0), &[], &[], Instant::now(), |_| true)
    else {
        let e = Error::with_cause(Kind::Connect, "no upstream endpoint to try");
        return answer(Err(e), attempts, None, None);
    };
    let Some(group) = ups.group(gid) else {
        let e = Error::with_cause(Kind::Connect, "no upstream endpoint to try");
        return answer(Err(e), attempts, None, None);
    };
    let endpoint = &group.endpoints[index];
    let tried = attempt(endpoint, group, head.request(endpoint, body), force).await;
    attempts.count = tried.sends;
    match tried.failure {
        Some(f) => {
            attempts
                .failed
                .push((endpoint.name.clone(), reason(f, tried.status)));
            last(tried, attempts, group)
        }
        None => served(tried.result, attempts, endpoint, group),
    }
}

/// Sends `req` and reads as far as the verdict needs.
async fn exchange(endpoint: &Endpoint, req: Request<RequestBody>, t: &Timeouts) -> Tried {
    let sent = match t.first_byte {
        Some(limit) => tokio::time::timeout(limit, endpoint.origin.send(req))
            .await
            .unwrap_or_else(|_| Err(Error::new(Kind::FirstByteTimeout))),
        None => endpoint.origin.send(req).await,
    };
    let sent = match sent {
        Ok(sent) => sent,
        Err(e) => {
            let sends = e.attempts().max(1);
            let failure = match e.kind() {
                Kind::FirstByteTimeout => Some(Failure::FirstByte),
                kind => kind.class().map(Failure::Upstream),
            };
            return Tried {
                result: Err(e),
                failure,
                hold: None,
                context: false,
                sends,
                broken_status: None,
                status: None,
            };
        }
    };
    let sends = sent.attempts;
    let status = sent.response.status();
    let mut tried = Tried {
        result: Ok(sent),
        failure: None,
        hold: None,
        context: false,
        sends,
        broken_status: None,
        status: Some(status.as_u16()),
    };
    let Ok(sent) = &mut tried.result else {
        return tried;
    };
    if should_retry_header(sent.response.headers()) == Some(false) {
        return tried; // the upstream says no
    }
    match status.as_u16() {
        429 => {
            tried.failure = Some(Failure::RateLimited);
            tried.hold = retry_after(sent.response.headers());
        }
        500 | 502 | 503 | 504 | 529 => tried.failure = Some(Failure::Status),
        400 => {
            let text = read_ahead_all(sent, t.read).await;
            tried.context = context_exceeded(&text);
        }
        _ if status.is_success() => {
            let read = if crate::dialect::is_event_stream(sent.response.headers()) {
                first_event(sent, t).await
            } else {
                first_frame(sent, t.read).await
            };
            if let Err((failure, e)) = read {
                tried.failure = Some(failure);
                tried.result = Err(e);
                tried.broken_status = Some(status.as_u16());
            }
        }
        _ => {}
    }
    tried
}

/// `x-should-retry: true|false`, which the official SDKs obey.
fn should_retry_header(h: &HeaderMap) -> Option<bool> {
    match h.get("x-should-retry").map(HeaderValue::as_bytes) {
        Some(b"true") => Some(true),
        Some(b"false") => Some(false),
        _ => None,
    }
}

/// Whether an error body says the prompt exceeded the model's context
/// window: OpenAI's `context_length_exceeded` code (and its message), and
/// Anthropic's "prompt is too long".
fn context_exceeded(body: &[u8]) -> bool {
    const SIGNS: [&[u8]; 4] = [
        b"context_length_exceeded",
        b"maximum context length",
        b"prompt is too long",
        b"context window",
    ];
    let lower = body.to_ascii_lowercase();
    SIGNS
        .iter()
        .any(|s| memchr::memmem::find(&lower, s).is_some())
}

/// `retry-after-ms` (OpenAI) or `Retry-After` in seconds.
pub(super) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok()) {
        if ms.is_finite() && ms >= 0.0 {
            return Some(Duration::from_secs_f64(ms / 1000.0));
        }
    }
    let secs = text("retry-after")?.trim().parse::<u64>().ok()?;
    Some(Duration::from_secs(secs))
}

/// `backoff * 2^round`, capped at 8x, scaled by a jitter in [0.5, 1.0].
fn jittered(backoff: Duration, round: u32) -> Duration {
    let base = backoff.saturating_mul(1 << round.min(3));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    // A cheap mix of the clock's low bits; this spreads retries, it is not
    // randomness anyone relies on.
    let mixed = nanos.wrapping_mul(0x9E37_79B9) >> 16;
    let factor = 0.5 + f64::from(mixed % 1024) / 2048.0;
    base.mul_f64(factor)
}

/// Used where a non-failing status must be recognised by tests.
#[cfg(test)]
fn is_failover_status(status: http::StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504 | 529)
}

mod ahead;
#[cfg(test)]
mod tests;
