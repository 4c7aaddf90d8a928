//! The body of an SSE response: upstream events relayed as they arrive,
//! keepalives in the silences, and an honest ending.
//!
//! ```text
//! Waiting ──2xx SSE──▶ Streaming ──terminal event + end──▶ Done
//!    │  └─non-2xx──▶ ReadingError ──▶ error event ──▶ Done
//!    └─failed────────────────────────▶ error event ──▶ Done
//!            Streaming ──end after the signal──▶ (data: [DONE]) ──▶ Done
//!            Streaming ──reset / end without either──▶ error event ──▶ Done
//!            Streaming ──cut (reset, end, stall, error event)──▶ Continuing
//!   Continuing ──2xx SSE──▶ Streaming (spliced)   Continuing ──failed──▶ error event
//! ```
//! `Continuing` exists only on a route that continues cut answers (see
//! [`Continuer`] and `dialect::continuation`): the cut endpoint's body is
//! dropped, keepalives hold the client, and another endpoint's answer is
//! spliced into the stream, or, when none can be had, the cut's own error
//! event ends it.
//! `Waiting` exists only after an early commit: the client already has
//! `200 text/event-stream` and heartbeats while the upstream (and its
//! retries) are still out. A keepalive is written only where
//! [`Keepalive::frame`] says it is safe; an error event only after the
//! bytes needed to reach an event boundary. Upstream bytes are forwarded
//! as the slices the scanner returns, never copied.
//!
//! A stream the upstream closes without its terminal event is complete
//! when the answer's own signal said so (see `dialect::stream::Finish`:
//! every OpenAI chat choice's `finish_reason` and the usage it asked for,
//! an Anthropic `message_delta` with a `stop_reason`). OpenAI chat clients
//! wait for `data: [DONE]`, so the relay adds it, as it adds its own error
//! events (stamped on a resumable stream); it needs the client at an event
//! boundary for that, and a chat stream closed inside an event is truncated
//! as before. Anthropic gets nothing added: its SDKs finish without
//! `message_stop`, and a client drops an unterminated rest by itself. The
//! access log's `ending` tells these cases apart ([`StreamEnd`]).
//!
//! On a resumable stream the body is read by the stream's producer task
//! ([`SseBody::poll_part`]), not by a client: it sends whole events, each
//! stamped with its id, and no keepalives (each reader makes its own);
//! `upstream.read_timeout` then runs on a timer of its own.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{StatusCode, header};
use hyper::body::{Body, Frame};
use tokio::time::Instant;

use super::events::EventObserver;
use super::heartbeat::Heartbeat;
use super::idle::ReadDeadline;
use crate::config::StreamConfig;
use crate::dialect::Dialect;
use crate::dialect::continuation::Delivered;
use crate::dialect::errors::{self, ErrorInfo};
use crate::dialect::stream::{ChatAsk, Ending, keepalive, sentinel};
use crate::error::{Error, Kind, UpstreamClass};
use crate::sse::{Keepalive, Position, Scanner, Stamp};
use crate::telemetry::{Attempts, Exchange, Outcome, StreamEnd, UsageSource};
use crate::timer::Wheel;
use crate::upstream::{Body as UpstreamBody, Lease, Sent};

/// The upstream exchange still in flight after an early commit.
pub(crate) type Pending = Pin<Box<dyn Future<Output = Answer> + Send>>;

/// What an upstream exchange (all its attempts) came to.
pub(crate) struct Answer {
    /// The answer for the client, or why there is none.
    pub result: Result<Sent, Error>,
    pub attempts: Attempts,
    /// The `model` the serving endpoint was sent, when it rewrites it.
    pub model: Option<Arc<str>>,
    /// The serving group's `read_timeout`.
    pub read_timeout: Option<Duration>,
}

impl Answer {
    /// Hands the attempts' record to the request's.
    pub(crate) fn record(&mut self, x: &mut Exchange) {
        if let Some(m) = &self.model {
            x.set_model(m);
        }
        x.set_upstream_attempts(std::mem::take(&mut self.attempts));
    }
}

/// Most bytes of an upstream error body read to build the error event.
const ERROR_BODY_CAP: usize = 64 * 1024;

enum Phase {
    Waiting(Pending),
    /// The answer was cut after events went out; another endpoint is
    /// asked to continue it (see [`Continuer`]).
    Continuing(Pending),
    ReadingError {
        body: UpstreamBody,
        /// Held while the error body is read (an HTTP/2 stream counts
        /// against its connection's limit until then).
        _lease: Lease,
        status: StatusCode,
        buf: BytesMut,
    },
    Streaming {
        body: UpstreamBody,
        lease: Lease,
    },
    Done,
}

/// What an SSE body needs from its route and connection.
pub(crate) struct SseSetup<'a> {
    pub dialect: Dialect,
    pub wheel: Arc<Wheel>,
    pub stream: &'a StreamConfig,
    /// The relay added `include_usage` upstream: remove the usage-only
    /// chunk from the client's stream.
    pub strip_usage_chunk: bool,
    /// What an OpenAI chat request says about its stream's end (None: the
    /// relay did not read it).
    pub chat_ask: Option<ChatAsk>,
    /// `upstream.read_timeout`: longest upstream silence inside the stream.
    pub read_timeout: Option<Duration>,
    /// A resumable stream's id stamper: the body feeds a producer task.
    pub stamp: Option<Stamp>,
    /// Continues an answer cut after its first event, on a route that
    /// does so.
    pub continuer: Option<Box<dyn Continuer>>,
}

/// Starts the continuation of a cut answer: the request path's failover
/// loop, as the body sees it.
pub(crate) trait Continuer: Send {
    /// The continuation of `delivered` (the endpoint `from` cut it for
    /// `reason`), or `None` when there is nothing to send it to: no
    /// attempt left, or no other endpoint declared how it continues.
    fn start(
        &mut self,
        delivered: &Delivered,
        reason: &'static str,
        from: Option<Arc<str>>,
    ) -> Option<Pending>;
}

/// How a stream ends when its cut is not continued.
struct Cut {
    outcome: Outcome,
    status: StatusCode,
    code: String,
    message: String,
    ending: Option<StreamEnd>,
    /// The continuation's reason (access log, metrics).
    reason: &'static str,
    /// The upstream's own error event, to forward instead of the relay's.
    event: Option<Bytes>,
}

/// Keepalives towards a client, or, for a producer, none.
enum Downstream {
    Client {
        keepalive: Keepalive,
        template: Option<Arc<str>>,
        heartbeat: Heartbeat,
    },
    /// The upstream read timeout's own timer (a client's heartbeat checks
    /// it otherwise).
    Producer { deadline: Option<ReadDeadline> },
}

pub(crate) struct SseBody {
    phase: Phase,
    scanner: Scanner,
    downstream: Downstream,
    dialect: Dialect,
    observer: EventObserver,
    read_timeout: Option<Duration>,
    /// When the upstream last sent bytes (keepalives do not count).
    last_upstream: Instant,
    /// A client's read timer when `read_timeout` is shorter than the
    /// heartbeat (the heartbeat checks the timeout otherwise).
    short_read: Option<ReadDeadline>,
    continuer: Option<Box<dyn Continuer>>,
    /// The ending a continuation under way replaces, for when it fails.
    cut: Option<Cut>,
    /// `max_event_size` (a continuation gets a scanner of its own).
    max_event: usize,
    ended: bool,
    /// Frames to write before anything else, in order, with the seq of
    /// the event they belong to (0 unless stamped).
    queued: VecDeque<(u64, Bytes)>,
}

impl SseBody {
    /// Committed early: `pending` resolves to the upstream's answer.
    pub(crate) fn waiting(pending: Pending, setup: SseSetup<'_>) -> Self {
        Self::new(Phase::Waiting(pending), setup)
    }

    /// The upstream answered 2xx with an event stream.
    pub(crate) fn streaming(body: UpstreamBody, lease: Lease, setup: SseSetup<'_>) -> Self {
        Self::new(Phase::Streaming { body, lease }, setup)
    }

    fn new(phase: Phase, s: SseSetup<'_>) -> Self {
        let max_event = usize::try_from(s.stream.max_event_size).unwrap_or(usize::MAX);
        let downstream = match s.stamp {
            Some(_) => Downstream::Producer {
                deadline: s.read_timeout.map(ReadDeadline::new),
            },
            None => Downstream::Client {
                keepalive: keepalive(s.dialect),
                template: s.stream.keepalive_frame.as_deref().map(Arc::from),
                heartbeat: Heartbeat::new(s.wheel, s.stream.heartbeat),
            },
        };
        let client = matches!(downstream, Downstream::Client { .. });
        let mut body = Self {
            phase,
            scanner: Scanner::new(max_event),
            downstream,
            dialect: s.dialect,
            observer: EventObserver::new(
                s.dialect,
                s.strip_usage_chunk,
                s.stamp,
                s.chat_ask,
                s.continuer.is_some(),
            ),
            continuer: s.continuer,
            cut: None,
            max_event,
            read_timeout: s.read_timeout,
            short_read: None,
            last_upstream: Instant::now(),
            ended: false,
            queued: VecDeque::new(),
        };
        body.set_read_timeout(s.read_timeout, client.then_some(s.stream.heartbeat));
        body
    }

    /// The read timeout; `heartbeat` for a client's body, whose heartbeat
    /// checks the timeout unless the timeout is the shorter.
    fn set_read_timeout(&mut self, limit: Option<Duration>, heartbeat: Option<Duration>) {
        self.read_timeout = limit;
        self.short_read = match (limit, heartbeat) {
            (Some(limit), Some(beat)) if limit < beat => Some(ReadDeadline::new(limit)),
            _ => None,
        };
        if let Downstream::Producer { deadline } = &mut self.downstream {
            *deadline = limit.map(ReadDeadline::new);
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done) && self.queued.is_empty()
    }

    pub(crate) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
        x: &mut Exchange,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        self.poll_part(cx, x)
            .map(|part| part.map(|(_, b)| Ok(Frame::data(b))))
    }

    /// The next bytes to send, with the seq of the event they belong to
    /// (0 unless the stream is stamped).
    pub(crate) fn poll_part(
        &mut self,
        cx: &mut Context<'_>,
        x: &mut Exchange,
    ) -> Poll<Option<(u64, Bytes)>> {
        loop {
            if let Some((seq, b)) = self.queued.pop_front() {
                self.wrote(Instant::now());
                x.add_bytes(b.len());
                return Poll::Ready(Some((seq, b)));
            }
            let step = match &mut self.phase {
                Phase::Done => return Poll::Ready(None),
                Phase::Waiting(pending) => match pending.as_mut().poll(cx) {
                    Poll::Ready(answer) => {
                        self.on_answer(answer, x);
                        continue;
                    }
                    Poll::Pending => None,
                },
                Phase::Continuing(pending) => match pending.as_mut().poll(cx) {
                    Poll::Ready(answer) => {
                        self.on_continuation(answer, x);
                        continue;
                    }
                    Poll::Pending => None,
                },
                Phase::ReadingError { .. } => Some(self.poll_error_body(cx, x)),
                Phase::Streaming { .. } => Some(self.poll_upstream(cx, x)),
            };
            match step {
                Some(Poll::Ready(Some(out))) => return Poll::Ready(Some(out)),
                Some(Poll::Ready(None)) => continue,
                Some(Poll::Pending) | None => {
                    ready!(self.poll_keepalive(cx, x));
                }
            }
        }
    }

    fn wrote(&mut self, at: Instant) {
        if let Downstream::Client { heartbeat, .. } = &mut self.downstream {
            heartbeat.wrote(at);
        }
    }

    /// Relays one upstream frame. `Ready(None)` means "state changed, loop".
    fn poll_upstream(
        &mut self,
        cx: &mut Context<'_>,
        x: &mut Exchange,
    ) -> Poll<Option<(u64, Bytes)>> {
        let Phase::Streaming { body, lease } = &mut self.phase else {
            return Poll::Ready(None);
        };
        match ready!(Pin::new(&mut *body).poll_frame(cx)) {
            Some(Ok(frame)) => {
                self.last_upstream = Instant::now();
                if let Downstream::Producer { deadline: Some(d) } = &mut self.downstream {
                    d.arrived();
                }
                if let Some(d) = &mut self.short_read {
                    d.arrived();
                }
                let Ok(data) = frame.into_data() else {
                    return Poll::Ready(None); // trailers: nothing for an event stream
                };
                let obs = &mut self.observer;
                let fed = self.scanner.feed(data, &mut |ev| obs.on_event(ev));
                self.after_events(x);
                match fed {
                    Ok(out) => self.forward(out, x),
                    Err(overflow) => {
                        // The scanner's position counts these bytes as sent:
                        // send them, so the error event lands where it thinks.
                        if !self.observer.event_aligned() && !overflow.forward.is_empty() {
                            self.queued.push_back((0, overflow.forward));
                        }
                        let msg = format!(
                            "an upstream event exceeded max_event_size ({} bytes)",
                            overflow.limit
                        );
                        self.fail(
                            x,
                            Outcome::EventTooLarge,
                            StatusCode::BAD_GATEWAY,
                            "event_too_large",
                            &msg,
                        );
                        Poll::Ready(None)
                    }
                }
            }
            None => {
                lease.release();
                let obs = &mut self.observer;
                let held = self.scanner.finish(&mut |ev| obs.on_event(ev));
                self.after_events(x);
                if self.observer.event_aligned() {
                    self.queued.extend(self.observer.take_kept());
                } else if !held.is_empty() {
                    self.queued.push_back((0, held));
                }
                self.upstream_ended(x);
                Poll::Ready(None)
            }
            Some(Err(e)) => {
                tracing::warn!("upstream stream failed: {e}");
                x.upstream_error(e.upstream_class().unwrap_or(UpstreamClass::Reset));
                let (outcome, status, code, reason) = if e.is_timeout() {
                    (
                        Outcome::UpstreamTimeout,
                        StatusCode::GATEWAY_TIMEOUT,
                        "upstream_timeout",
                        "read_timeout",
                    )
                } else {
                    (
                        Outcome::UpstreamReset,
                        StatusCode::BAD_GATEWAY,
                        "upstream_reset",
                        "reset",
                    )
                };
                let cut = Cut {
                    outcome,
                    status,
                    code: code.to_owned(),
                    message: format!("upstream stream failed: {e}"),
                    ending: None,
                    reason,
                    event: None,
                };
                self.end_or_continue(x, cut);
                Poll::Ready(None)
            }
        }
    }

    /// Hands what the observer learned from the events just completed to
    /// the request's record.
    fn after_events(&mut self, x: &mut Exchange) {
        if let Some((usage, model)) = self.observer.take_usage() {
            if let Some(m) = model {
                x.set_model(m);
            }
            x.set_usage(usage, UsageSource::Stream);
        }
        let end = self.observer.take_ending();
        self.record_ending(end, x);
    }

    /// Sends upstream bytes on: the scanner's slice as is, or in
    /// event-aligned mode the whole events completed so far.
    fn forward(&mut self, out: Bytes, x: &mut Exchange) -> Poll<Option<(u64, Bytes)>> {
        if self.observer.event_aligned() {
            self.queued.extend(self.observer.take_kept());
            return Poll::Ready(None); // the loop sends the queue
        }
        if out.is_empty() {
            return Poll::Ready(None);
        }
        self.wrote(self.last_upstream);
        x.add_bytes(out.len());
        Poll::Ready(Some((0, out)))
    }

    fn record_ending(&mut self, end: Ending, x: &mut Exchange) {
        match end {
            Ending::Complete => {
                x.finish(Outcome::Complete);
                x.set_ending(StreamEnd::Terminal);
            }
            Ending::Error => {
                if let Some(event) = self.observer.take_held_error() {
                    self.cut = Some(Cut {
                        outcome: Outcome::UpstreamErrorEvent,
                        status: StatusCode::BAD_GATEWAY,
                        code: String::new(),
                        message: String::new(),
                        ending: Some(StreamEnd::ErrorEvent),
                        reason: "error_event",
                        event: Some(event),
                    });
                    if self.try_continue(x, "error_event") {
                        return;
                    }
                    // Not continued: the upstream's event goes out, and the
                    // stream runs to the upstream's end as any other.
                    if let Some(event) = self.cut.take().and_then(|c| c.event) {
                        self.observer.relay_event(event, &mut self.queued);
                    }
                }
                x.finish(Outcome::UpstreamErrorEvent);
                x.set_ending(StreamEnd::ErrorEvent);
            }
            Ending::None => return,
        }
        self.ended = true;
    }

    /// The upstream closed its stream. Complete after its terminal event,
    /// for a generic stream (which has none), or by the dialect's signal,
    /// with the terminal event its clients wait for added where the client
    /// is at an event boundary; truncated otherwise.
    fn upstream_ended(&mut self, x: &mut Exchange) {
        if self.ended {
            // Outcome and ending were recorded with the terminal event.
            self.phase = Phase::Done;
            return;
        }
        if self.dialect == Dialect::Generic {
            x.finish(Outcome::Complete);
            x.set_ending(StreamEnd::Closed);
            self.phase = Phase::Done;
            return;
        }
        let added = sentinel(self.dialect);
        // An added event must start at an event boundary. Nothing added
        // needs none: a client drops an unterminated rest by itself.
        let at_boundary = self.observer.event_aligned()
            || matches!(self.scanner.position(), Position::EventBoundary);
        if self.observer.finished() && (added.is_none() || at_boundary) {
            x.finish(Outcome::Complete);
            match added {
                Some(done) => {
                    self.observer
                        .relay_event(Bytes::from_static(done), &mut self.queued);
                    x.set_ending(StreamEnd::SignalDoneAdded);
                }
                None => x.set_ending(StreamEnd::Signal),
            }
            tracing::debug!(
                dialect = self.dialect.as_str(),
                "upstream ended the stream without its final event; the answer's own signal completed it"
            );
            self.phase = Phase::Done;
            return;
        }
        x.upstream_error(UpstreamClass::Truncated);
        let cut = Cut {
            outcome: Outcome::UpstreamTruncated,
            status: StatusCode::BAD_GATEWAY,
            code: "upstream_truncated".to_owned(),
            message: "upstream ended the stream without its final event".to_owned(),
            ending: Some(StreamEnd::Truncated),
            reason: "truncated",
            event: None,
        };
        self.end_or_continue(x, cut);
    }

    /// The upstream's answer to an early-committed request.
    fn on_answer(&mut self, mut answer: Answer, x: &mut Exchange) {
        answer.record(x);
        // The serving group's own read timeout, counted from its head.
        let heartbeat = match &self.downstream {
            Downstream::Client { heartbeat, .. } => Some(heartbeat.interval()),
            Downstream::Producer { .. } => None,
        };
        self.set_read_timeout(answer.read_timeout, heartbeat);
        self.last_upstream = Instant::now();
        let sent = match answer.result {
            Ok(sent) => sent,
            Err(e) => {
                let outcome = match e.kind() {
                    Kind::ConnectTimeout
                    | Kind::FirstByteTimeout
                    | Kind::FirstEventTimeout
                    | Kind::UpstreamReadTimeout => Outcome::UpstreamTimeout,
                    Kind::Connect | Kind::Tls => Outcome::UpstreamConnect,
                    _ => Outcome::UpstreamReset,
                };
                if let Some(class) = e.upstream_class() {
                    x.upstream_error(class);
                }
                let msg = e.message();
                self.fail(x, outcome, e.status(), e.kind().code(), &msg);
                return;
            }
        };
        let (parts, body) = sent.response.into_parts();
        x.set_upstream_status(parts.status.as_u16());
        if parts.status.as_u16() == 429 || parts.status.is_server_error() {
            x.upstream_error(UpstreamClass::Status);
        }
        if !parts.status.is_success() {
            self.phase = Phase::ReadingError {
                body,
                _lease: sent.lease,
                status: parts.status,
                buf: BytesMut::new(),
            };
        } else if crate::dialect::is_event_stream(&parts.headers) {
            if let Downstream::Producer { deadline: Some(d) } = &mut self.downstream {
                d.arrived(); // the read timeout counts from the head
            }
            self.phase = Phase::Streaming {
                body,
                lease: sent.lease,
            };
        } else {
            let ct = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none");
            let msg = format!("upstream answered with content-type {ct}, not an event stream");
            self.fail(
                x,
                Outcome::UpstreamStatus,
                StatusCode::BAD_GATEWAY,
                "upstream_not_sse",
                &msg,
            );
        }
    }

    /// Reads a non-2xx upstream body (bounded) to quote it in the error event.
    fn poll_error_body(
        &mut self,
        cx: &mut Context<'_>,
        x: &mut Exchange,
    ) -> Poll<Option<(u64, Bytes)>> {
        let Phase::ReadingError {
            body, status, buf, ..
        } = &mut self.phase
        else {
            return Poll::Ready(None);
        };
        while let Some(Ok(frame)) = ready!(Pin::new(&mut *body).poll_frame(cx)) {
            if let Ok(data) = frame.into_data() {
                let room = ERROR_BODY_CAP.saturating_sub(buf.len());
                buf.extend_from_slice(&data[..data.len().min(room)]);
                if room <= data.len() {
                    break;
                }
            }
        }
        let status = *status;
        let msg = format!("upstream answered {status}: {}", upstream_message(buf));
        let code = format!("upstream_{}", status.as_u16());
        self.fail(x, Outcome::UpstreamStatus, status, &code, &msg);
        Poll::Ready(None)
    }

    /// Queues an error event at the next event boundary and ends the body.
    fn fail(
        &mut self,
        x: &mut Exchange,
        outcome: Outcome,
        status: StatusCode,
        code: &str,
        message: &str,
    ) {
        tracing::warn!("stream ended with an error event: {message}");
        x.finish(outcome);
        let boundary: &[u8] = match self.scanner.position() {
            // Only whole events went out: the client is at a boundary.
            _ if self.observer.event_aligned() => b"",
            Position::EventBoundary => b"",
            Position::LineStart => b"\n",
            Position::InLine | Position::AfterCr => b"\n\n",
        };
        let event = errors::event(
            self.dialect,
            ErrorInfo {
                status,
                code,
                message,
            },
        );
        if boundary.is_empty() {
            self.observer.relay_event(event, &mut self.queued);
        } else {
            let mut out = BytesMut::with_capacity(boundary.len() + event.len());
            out.extend_from_slice(boundary);
            out.extend_from_slice(&event);
            self.queued.push_back((0, out.freeze()));
        }
        self.phase = Phase::Done;
    }

    /// A keepalive if the stream has been silent for a whole interval and
    /// one is safe here; `Pending` otherwise.
    fn poll_keepalive(&mut self, cx: &mut Context<'_>, x: &mut Exchange) -> Poll<()> {
        if let Some(d) = &mut self.short_read {
            let expired = d.poll_expired(cx).is_ready();
            if expired && self.upstream_silent_too_long(x) {
                return Poll::Ready(());
            }
        }
        loop {
            let Downstream::Client {
                keepalive,
                template,
                heartbeat,
            } = &mut self.downstream
            else {
                return self.poll_read_deadline(cx, x);
            };
            ready!(heartbeat.poll_due(cx));
            heartbeat.rearm();
            let rendered = template.as_deref().and_then(rendered);
            let k = rendered.unwrap_or_else(|| keepalive.clone());
            if self.upstream_silent_too_long(x) {
                return Poll::Ready(());
            }
            let frame = if self.observer.event_aligned() && !self.scanner.at_stream_start() {
                // Only whole events went out: the client is at a boundary
                // whatever the upstream's half-sent event looks like.
                Some(k.full().clone())
            } else {
                k.frame(&mut self.scanner)
            };
            if let Some(frame) = frame {
                x.heartbeat();
                self.queued.push_back((0, frame));
                return Poll::Ready(());
            }
            // Inside a line: nothing is safe until the upstream finishes it.
        }
    }
}

impl SseBody {
    /// A producer's read timeout: `Ready` once it ended the stream.
    fn poll_read_deadline(&mut self, cx: &mut Context<'_>, x: &mut Exchange) -> Poll<()> {
        let Downstream::Producer {
            deadline: Some(deadline),
        } = &mut self.downstream
        else {
            return Poll::Pending;
        };
        if !matches!(self.phase, Phase::Streaming { .. }) {
            return Poll::Pending;
        }
        ready!(deadline.poll_expired(cx));
        if self.upstream_silent_too_long(x) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Checked at each keepalive: an upstream silent past
    /// `upstream.read_timeout` ends the stream with an error event.
    fn upstream_silent_too_long(&mut self, x: &mut Exchange) -> bool {
        let Some(limit) = self.read_timeout else {
            return false;
        };
        let Phase::Streaming { .. } = self.phase else {
            return false;
        };
        if self.last_upstream.elapsed() < limit {
            return false;
        }
        x.upstream_error(UpstreamClass::Timeout);
        let cut = Cut {
            outcome: Outcome::UpstreamTimeout,
            status: StatusCode::GATEWAY_TIMEOUT,
            code: "upstream_timeout".to_owned(),
            message: format!("upstream sent nothing for {limit:?} (read_timeout)"),
            ending: None,
            reason: "read_timeout",
            event: None,
        };
        self.end_or_continue(x, cut);
        true
    }
}

/// Renders a keepalive template (`{now_ms}` -> Unix time in milliseconds).
/// The configuration validated the template with digits in place of
/// `{now_ms}`, so this cannot fail; if it did, the dialect's frame is used.
fn rendered(template: &str) -> Option<Keepalive> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let full = Bytes::from(template.replace("{now_ms}", &now.to_string()));
    Keepalive::try_new(full, Bytes::from_static(crate::sse::COMMENT_LINE)).ok()
}

/// The message of an upstream error body: `error.message`, `message`, or
/// the text itself (shortened).
fn upstream_message(body: &[u8]) -> String {
    let mut copy = body.to_vec();
    if let Ok(v) = simd_json::to_borrowed_value(&mut copy) {
        use simd_json::prelude::*;
        let msg = v
            .get("error")
            .and_then(|e| e.get("message"))
            .or_else(|| v.get("message"));
        if let Some(m) = msg.and_then(|m| m.as_str()) {
            return m.to_owned();
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(300) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_owned(),
    }
}

mod continued;
