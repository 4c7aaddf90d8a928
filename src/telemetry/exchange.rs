//! The record of one request, finished exactly once.
//!
//! An [`Exchange`] is created when a request arrives and travels with its
//! response body. Whatever ends the request (the body's last frame, an
//! upstream failure mid-body, the client going away, a relay-made error
//! answer) the record's `Drop` counts it in the metrics and writes its
//! access-log line, so no path can forget to.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use http::Method;

use super::AccessLog;
use super::activity::ActiveRequest;
use super::metrics::Metrics;
use super::time::rfc3339_now;
use crate::error::UpstreamClass;
use crate::json::escape_into;
use crate::usage::Usage;

/// How a request ended (access-log `outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The response was delivered to its end.
    Complete,
    /// The client went away before the response ended.
    ClientDisconnected,
    /// The upstream connection failed after the response had started.
    UpstreamReset,
    /// The upstream went silent past a deadline after the response started.
    UpstreamTimeout,
    /// The upstream could not be reached after an early commit.
    UpstreamConnect,
    /// The upstream ended its stream cleanly but without the dialect's
    /// terminal event.
    UpstreamTruncated,
    /// The upstream reported an error inside its stream.
    UpstreamErrorEvent,
    /// After an early commit the upstream answered non-2xx (or not SSE).
    UpstreamStatus,
    /// An upstream event exceeded `max_event_size`.
    EventTooLarge,
    /// The relay answered with an error of its own (upstream unreachable,
    /// timeout, no route, body too large, ...).
    RelayError,
    /// A resumable stream's client went away and did not reconnect within
    /// the resume window: the relay cancelled the upstream.
    ResumeExpired,
}

impl Outcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Complete => "complete",
            Outcome::ClientDisconnected => "client_disconnected",
            Outcome::UpstreamReset => "upstream_reset",
            Outcome::UpstreamTimeout => "upstream_timeout",
            Outcome::UpstreamConnect => "upstream_connect",
            Outcome::UpstreamTruncated => "upstream_truncated",
            Outcome::UpstreamErrorEvent => "upstream_error_event",
            Outcome::UpstreamStatus => "upstream_status",
            Outcome::EventTooLarge => "event_too_large",
            Outcome::RelayError => "relay_error",
            Outcome::ResumeExpired => "resume_expired",
        }
    }
}

/// How an upstream event stream ended (access-log `ending`), for streams
/// whose upstream ended them itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamEnd {
    /// The dialect's terminal event (`data: [DONE]`, `message_stop`,
    /// `response.completed` / `.incomplete` / `.failed`).
    Terminal,
    /// No terminal event, but the answer's own signal said it was complete
    /// (Anthropic `message_delta` with a `stop_reason`); nothing added.
    Signal,
    /// No terminal event, but the answer's own signal said it was complete
    /// (OpenAI chat: every choice's `finish_reason`, and the usage when
    /// asked for); the relay added `data: [DONE]`.
    SignalDoneAdded,
    /// The upstream closed the stream without its terminal event or signal:
    /// the relay added an `upstream_truncated` error event.
    Truncated,
    /// The upstream reported an error in-band.
    ErrorEvent,
    /// A generic stream (no known last event) closed by the upstream.
    Closed,
}

impl StreamEnd {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            StreamEnd::Terminal => "terminal",
            StreamEnd::Signal => "signal",
            StreamEnd::SignalDoneAdded => "signal_done_added",
            StreamEnd::Truncated => "truncated",
            StreamEnd::ErrorEvent => "error_event",
            StreamEnd::Closed => "closed",
        }
    }
}

/// Where a request's token usage came from (access-log `usage_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UsageSource {
    /// A usage-carrying event of the stream.
    Stream,
    /// The non-streaming JSON body.
    Body,
}

/// How a request's upstream attempts went.
#[derive(Debug, Default)]
pub(crate) struct Attempts {
    /// Times the request was handed to an upstream connection.
    pub count: u32,
    /// The endpoint whose answer the client got.
    pub endpoint: Option<Arc<str>>,
    /// Each attempt that did not serve: its endpoint and why (a failover
    /// class, or `context_length`).
    pub failed: Vec<(Arc<str>, &'static str)>,
    /// The status of an answer whose body then failed before the relay
    /// could pass it on (access-log `upstream_status`).
    pub broken_status: Option<u16>,
}

/// One continuation of a cut answer.
#[derive(Debug)]
struct Continued {
    from: Option<Arc<str>>,
    /// The endpoint that continued; `None` while asked, or if none did.
    to: Option<Arc<str>>,
    reason: &'static str,
    /// Deltas the client had before the cut (about one token each).
    tokens: u64,
}

/// Shared sinks for finished records.
pub(crate) struct Sinks {
    pub metrics: Arc<Metrics>,
    pub access: AccessLog,
}

/// One request's record.
pub(crate) struct Exchange {
    sinks: Arc<Sinks>,
    start: Instant,
    method: Method,
    path: String,
    route: Option<(usize, Arc<str>)>,
    dialect: &'static str,
    status: u16,
    ttfb_ms: Option<f64>,
    bytes_out: u64,
    attempts: u32,
    /// The serving endpoint and the attempts that failed (access log).
    endpoint: Option<Arc<str>>,
    failed: Vec<(Arc<str>, &'static str)>,
    /// Continuations of the answer after cuts (access log).
    continuations: Vec<Continued>,
    /// Usage of upstreams that cut the answer, already counted in the
    /// metrics (the access log shows the sum with the last one's).
    banked: Option<Usage>,
    upstream_status: Option<u16>,
    heartbeats: u64,
    committed: bool,
    /// Keeps the connection out of its idle timeout while this lives.
    _active: Option<ActiveRequest>,
    model: Option<String>,
    usage: Option<(Usage, UsageSource)>,
    outcome: Option<Outcome>,
    ending: Option<StreamEnd>,
    streaming: bool,
    /// Label of the client key the route accepted (never the key itself).
    key: Option<Arc<str>>,
}

impl Exchange {
    pub(crate) fn new(
        sinks: Arc<Sinks>,
        method: Method,
        path: &str,
        dialect: &'static str,
    ) -> Self {
        sinks
            .metrics
            .requests_in_flight
            .fetch_add(1, Ordering::Relaxed);
        Self {
            sinks,
            start: Instant::now(),
            method,
            path: bounded(path),
            route: None,
            dialect,
            status: 0,
            ttfb_ms: None,
            bytes_out: 0,
            attempts: 0,
            endpoint: None,
            failed: Vec::new(),
            continuations: Vec::new(),
            banked: None,
            upstream_status: None,
            heartbeats: 0,
            committed: false,
            _active: None,
            model: None,
            usage: None,
            outcome: None,
            ending: None,
            streaming: false,
            key: None,
        }
    }

    /// Counts this request as open on its connection until it ends.
    pub(crate) fn hold(&mut self, active: ActiveRequest) {
        self._active = Some(active);
    }

    /// Requests in flight across the relay, this one included.
    pub(crate) fn in_flight(&self) -> usize {
        let n = self
            .sinks
            .metrics
            .requests_in_flight
            .load(Ordering::Relaxed);
        usize::try_from(n).unwrap_or(0)
    }

    pub(crate) fn set_route(&mut self, index: usize, name: Arc<str>, dialect: &'static str) {
        self.route = Some((index, name));
        self.dialect = dialect;
    }

    /// The accepted client key's label (access-log `key`): its name in the
    /// keys file or the first 8 hex digits of its digest, never the key.
    pub(crate) fn set_key(&mut self, label: Arc<str>) {
        self.key = Some(label);
    }

    /// The accepted client key's label, if the route checks keys.
    pub(crate) fn key(&self) -> Option<&Arc<str>> {
        self.key.as_ref()
    }

    /// The route refused the request's client key (401).
    pub(crate) fn auth_failure(&mut self) {
        self.sinks.metrics.count_auth_failure(self.route_index());
    }

    /// The route's rate limit refused the request (429).
    pub(crate) fn rate_limited(&mut self) {
        self.sinks.metrics.count_rate_limited(self.route_index());
    }

    /// The endpoint serving the answer now.
    pub(crate) fn endpoint(&self) -> Option<&Arc<str>> {
        self.endpoint.as_ref()
    }

    /// The answer was cut after `tokens` deltas went out, and another
    /// endpoint is asked to continue it.
    pub(crate) fn begin_continuation(
        &mut self,
        from: Option<Arc<str>>,
        reason: &'static str,
        tokens: u64,
    ) {
        // The cut upstream's usage counts as it reported it; the
        // continuation reports its own.
        if let Some((usage, _)) = self.usage.take() {
            let metrics = &self.sinks.metrics;
            metrics.count_tokens(self.route_index(), self.model.as_deref(), &usage);
            self.banked = Some(self.banked.map_or(usage, |b| b.plus(usage)));
        }
        self.continuations.push(Continued {
            from,
            to: None,
            reason,
            tokens,
        });
    }

    /// The continuation's attempts. When one `continued` the answer, its
    /// endpoint takes over the record; an endpoint that answered something
    /// else (a `400` for the prefill) counts as a failed attempt.
    pub(crate) fn end_continuation(&mut self, a: Attempts, continued: bool) {
        self.attempts += a.count;
        self.failed.extend(a.failed);
        let Some(e) = a.endpoint else { return };
        if !continued {
            self.failed.push((e, "continuation_refused"));
            return;
        }
        if let Some(last) = self.continuations.last_mut() {
            last.to = Some(e.clone());
        }
        self.endpoint = Some(e);
    }

    /// The failover loop's record: attempts, serving endpoint, failures.
    pub(crate) fn set_upstream_attempts(&mut self, a: Attempts) {
        self.attempts = a.count;
        self.endpoint = a.endpoint;
        self.failed = a.failed;
        if let Some(status) = a.broken_status {
            self.upstream_status = Some(status);
        }
    }

    /// The response head is ready to go to the client.
    pub(crate) fn set_status(&mut self, status: u16) {
        self.status = status;
        let elapsed = self.start.elapsed();
        self.ttfb_ms = Some(ms(elapsed));
        self.sinks.metrics.observe_ttfb(self.route_index(), elapsed);
    }

    /// The model named by the request or, preferably, the upstream.
    pub(crate) fn set_model(&mut self, model: &str) {
        if self.model.as_deref() != Some(model) {
            self.model = Some(model.to_owned());
        }
    }

    /// Token usage the upstream reported, and where it was found.
    pub(crate) fn set_usage(&mut self, usage: Usage, source: UsageSource) {
        self.usage = Some((usage, source));
    }

    /// The upstream's status when it differs from what the client got
    /// (early commit).
    pub(crate) fn set_upstream_status(&mut self, status: u16) {
        self.upstream_status = Some(status);
    }

    /// `200 text/event-stream` went out before the upstream answered.
    pub(crate) fn set_committed(&mut self) {
        self.committed = true;
    }

    /// A keepalive went downstream.
    pub(crate) fn heartbeat(&mut self) {
        self.heartbeats += 1;
        self.sinks.metrics.count_heartbeat(self.route_index());
    }

    /// The response relays an upstream body: counts in `active_streams`
    /// until the record ends.
    pub(crate) fn start_streaming(&mut self) {
        if !self.streaming {
            self.streaming = true;
            self.sinks
                .metrics
                .active_streams
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn add_bytes(&mut self, n: usize) {
        self.bytes_out += n as u64;
    }

    /// Sets the outcome unless one was already set.
    pub(crate) fn finish(&mut self, outcome: Outcome) {
        self.outcome.get_or_insert(outcome);
    }

    /// How the upstream ended its event stream, unless already known.
    pub(crate) fn set_ending(&mut self, ending: StreamEnd) {
        self.ending.get_or_insert(ending);
    }

    pub(crate) fn upstream_error(&mut self, class: UpstreamClass) {
        self.sinks
            .metrics
            .count_upstream_error(self.route_index(), class);
    }

    fn route_index(&self) -> Option<usize> {
        self.route.as_ref().map(|(i, _)| *i)
    }

    fn line(&self, outcome: Outcome) -> String {
        let mut l = String::with_capacity(256);
        l.push_str("{\"ts\":\"");
        rfc3339_now(&mut l);
        l.push_str("\",\"method\":\"");
        escape_into(&mut l, self.method.as_str());
        l.push_str("\",\"path\":\"");
        escape_into(&mut l, &self.path);
        l.push_str("\",\"route\":");
        match &self.route {
            Some((_, name)) => {
                l.push('"');
                escape_into(&mut l, name);
                l.push('"');
            }
            None => l.push_str("null"),
        }
        let _ = write!(
            l,
            ",\"status\":{},\"dialect\":\"{}\"",
            self.status, self.dialect
        );
        if let Some(key) = &self.key {
            l.push_str(",\"key\":\"");
            escape_into(&mut l, key);
            l.push('"');
        }
        match self.ttfb_ms {
            Some(t) => {
                let _ = write!(l, ",\"ttfb_ms\":{t:.3}");
            }
            None => l.push_str(",\"ttfb_ms\":null"),
        }
        if self.committed {
            l.push_str(",\"early_commit\":true");
        }
        self.usage_fields(&mut l);
        if let Some(s) = self.upstream_status {
            let _ = write!(l, ",\"upstream_status\":{s}");
        }
        self.endpoint_fields(&mut l);
        let _ = write!(
            l,
            ",\"duration_ms\":{:.3},\"bytes_out\":{},\"heartbeats\":{},\"outcome\":\"{}\"",
            ms(self.start.elapsed()),
            self.bytes_out,
            self.heartbeats,
            outcome.as_str(),
        );
        if let Some(ending) = self.ending {
            let _ = write!(l, ",\"ending\":\"{}\"", ending.as_str());
        }
        let _ = write!(l, ",\"upstream_attempts\":{}}}", self.attempts);
        l
    }
}

impl Exchange {
    /// `endpoint` (the one that served) and `failed_attempts` (each failed
    /// attempt's endpoint and class), when there are any.
    fn endpoint_fields(&self, l: &mut String) {
        if let Some(e) = &self.endpoint {
            l.push_str(",\"endpoint\":\"");
            escape_into(l, e);
            l.push('"');
        }
        if !self.failed.is_empty() {
            l.push_str(",\"failed_attempts\":[");
            for (i, (endpoint, class)) in self.failed.iter().enumerate() {
                if i > 0 {
                    l.push(',');
                }
                l.push_str("{\"endpoint\":\"");
                escape_into(l, endpoint);
                l.push_str("\",\"class\":\"");
                l.push_str(class);
                l.push_str("\"}");
            }
            l.push(']');
        }
        if !self.continuations.is_empty() {
            l.push_str(",\"continuations\":[");
            let name = |l: &mut String, v: &Option<Arc<str>>| match v {
                Some(n) => {
                    l.push('"');
                    escape_into(l, n);
                    l.push('"');
                }
                None => l.push_str("null"),
            };
            for (i, c) in self.continuations.iter().enumerate() {
                if i > 0 {
                    l.push(',');
                }
                l.push_str("{\"from\":");
                name(l, &c.from);
                l.push_str(",\"to\":");
                name(l, &c.to);
                let _ = write!(
                    l,
                    ",\"reason\":\"{}\",\"tokens_before_cut\":{}}}",
                    c.reason, c.tokens
                );
            }
            l.push(']');
        }
    }

    /// `model`, the five token counts (null when not reported) and
    /// `usage_source` (`stream`, `body` or `missing`).
    fn usage_fields(&self, l: &mut String) {
        l.push_str(",\"model\":");
        match &self.model {
            Some(m) => {
                l.push('"');
                escape_into(l, m);
                l.push('"');
            }
            None => l.push_str("null"),
        }
        let (usage, source) = match &self.usage {
            Some((u, UsageSource::Stream)) => (*u, "stream"),
            Some((u, UsageSource::Body)) => (*u, "body"),
            None => (Usage::default(), "missing"),
        };
        // Upstreams that cut a continued answer reported usage too.
        let usage = self.banked.map_or(usage, |b| b.plus(usage));
        let fields = [
            ("input_tokens", usage.input),
            ("output_tokens", usage.output),
            ("cache_read_tokens", usage.cache_read),
            ("cache_write_tokens", usage.cache_write),
            ("reasoning_tokens", usage.reasoning),
        ];
        for (name, v) in fields {
            match v {
                Some(n) => {
                    let _ = write!(l, ",\"{name}\":{n}");
                }
                None => {
                    let _ = write!(l, ",\"{name}\":null");
                }
            }
        }
        let _ = write!(l, ",\"usage_source\":\"{source}\"");
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        let outcome = self.outcome.unwrap_or(Outcome::ClientDisconnected);
        let metrics = &self.sinks.metrics;
        metrics.requests_in_flight.fetch_sub(1, Ordering::Relaxed);
        if self.streaming {
            metrics.active_streams.fetch_sub(1, Ordering::Relaxed);
            metrics.observe_stream(self.route_index(), self.start.elapsed());
        }
        if let Some((usage, _)) = &self.usage {
            metrics.count_tokens(self.route_index(), self.model.as_deref(), usage);
        }
        if outcome == Outcome::ClientDisconnected {
            metrics.client_disconnects.fetch_add(1, Ordering::Relaxed);
        }
        if self.status == 0 {
            // Never answered: the client left while the upstream was silent
            // (nginx's 499, "client closed request").
            self.status = 499;
        }
        metrics.count_request(self.route_index(), self.status);
        if self.sinks.access.enabled() && !self.sinks.access.write(self.line(outcome)) {
            metrics.access_log_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Clients choose the path's length; the log keeps at most 2 KiB of it.
fn bounded(path: &str) -> String {
    const MAX: usize = 2048;
    if path.len() <= MAX {
        return path.to_owned();
    }
    let mut end = MAX;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &path[..end])
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
