//! What a client of a resumable stream receives: the log from its place
//! on (a replay after a reconnect), then the live stream as the producer
//! appends it, with bare comment keepalives in the silences.
//!
//! Every event carries an `id:`, so a keepalive must never be a comment
//! plus a blank line (openai-python turns that into an empty event once
//! an id was seen): a single `: keepalive` line is invisible to every
//! parser, and the reader only ever stops at an event boundary.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::StatusCode;
use tokio::time::Instant;

use super::hub::{Attached, Gone, Stream};
use super::remote::Feed;
use super::remote::feed::{Failure, Step};
use crate::body::Heartbeat;
use crate::dialect::Dialect;
use crate::dialect::errors::{self, ErrorInfo};
use crate::sse::COMMENT_LINE;
use crate::telemetry::{Exchange, Metrics, Outcome};

pub(crate) struct Reader {
    source: Source,
    dialect: Dialect,
    metrics: Arc<Metrics>,
    pending: VecDeque<Bytes>,
    heartbeat: Heartbeat,
    done: bool,
    /// The stream ended with an error event (not its own end).
    failed: bool,
}

/// Where the events come from.
enum Source {
    /// This replica's log.
    Local(Local),
    /// Another replica's, over the cluster's bus (`remote`).
    Remote(Feed),
}

/// A reader's place in a stream held here.
struct Local {
    stream: Arc<Stream>,
    id: u64,
    offset: u64,
    replay_end: u64,
}

enum Read {
    Data,
    End(Outcome),
    Wait,
    Fail(StatusCode, &'static str, &'static str),
}

impl Reader {
    pub(crate) fn new(
        stream: Arc<Stream>,
        at: Attached,
        heartbeat: Heartbeat,
        metrics: Arc<Metrics>,
    ) -> Self {
        let dialect = stream.dialect();
        let local = Local {
            stream,
            id: at.id,
            offset: at.offset,
            replay_end: at.replay_end,
        };
        Self::with(Source::Local(local), dialect, heartbeat, metrics)
    }

    /// A reader of a stream another replica holds.
    pub(crate) fn remote(
        feed: Feed,
        dialect: Dialect,
        heartbeat: Heartbeat,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self::with(Source::Remote(feed), dialect, heartbeat, metrics)
    }

    fn with(source: Source, dialect: Dialect, heartbeat: Heartbeat, metrics: Arc<Metrics>) -> Self {
        Self {
            source,
            dialect,
            metrics,
            pending: VecDeque::new(),
            heartbeat,
            done: false,
            failed: false,
        }
    }

    /// The stream ended for this reader with an error event.
    pub(crate) fn failed(&self) -> bool {
        self.failed
    }

    pub(crate) fn is_done(&self) -> bool {
        self.done && self.pending.is_empty()
    }

    pub(crate) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
        mut x: Option<&mut Exchange>,
    ) -> Poll<Option<Bytes>> {
        loop {
            if let Some(b) = self.pending.pop_front() {
                self.heartbeat.wrote(Instant::now());
                if let Some(x) = x.as_deref_mut() {
                    x.add_bytes(b.len());
                }
                return Poll::Ready(Some(b));
            }
            if self.done {
                return Poll::Ready(None);
            }
            let read = match &mut self.source {
                Source::Local(l) => l.read(cx, &mut self.pending, &self.metrics),
                Source::Remote(f) => read_remote(f, cx, &mut self.pending),
            };
            match read {
                Read::Data => continue,
                Read::End(outcome) => {
                    self.done = true;
                    self.failed = outcome != Outcome::Complete;
                    if let Some(x) = x.as_deref_mut() {
                        x.finish(outcome);
                    }
                    return Poll::Ready(None);
                }
                Read::Fail(status, code, message) => {
                    tracing::info!("resumable stream reader ended: {message}");
                    if let Some(x) = x.as_deref_mut() {
                        x.finish(Outcome::RelayError);
                    }
                    let info = ErrorInfo {
                        status,
                        code,
                        message,
                    };
                    self.pending.push_back(errors::event(self.dialect, info));
                    self.done = true;
                    self.failed = true;
                    continue;
                }
                Read::Wait => {}
            }
            ready!(self.heartbeat.poll_due(cx));
            self.heartbeat.rearm();
            if let Some(x) = x.as_deref_mut() {
                x.heartbeat();
            }
            self.pending.push_back(Bytes::from_static(COMMENT_LINE));
        }
    }
}

impl Local {
    fn read(
        &mut self,
        cx: &mut Context<'_>,
        pending: &mut VecDeque<Bytes>,
        metrics: &Metrics,
    ) -> Read {
        let mut st = self.stream.lock();
        let st = &mut *st;
        let Some(slot) = st.reader.as_mut().filter(|r| r.id == self.id) else {
            return Read::Fail(
                StatusCode::CONFLICT,
                "resume_superseded",
                "this stream was resumed on another connection",
            );
        };
        let before = self.offset;
        match st.log.read_from(before, pending) {
            Ok(after) if after > before => {
                self.offset = after;
                slot.offset = after;
                let replayed = after.min(self.replay_end) - before.min(self.replay_end);
                if replayed > 0 {
                    metrics
                        .resume
                        .replayed_bytes
                        .fetch_add(replayed, Ordering::Relaxed);
                }
                if std::mem::take(&mut st.producer_blocked) {
                    self.stream.notify.notify_one();
                }
                return Read::Data;
            }
            Ok(_) => {}
            Err(_) if st.reclaimed => {
                return Read::Fail(
                    StatusCode::GONE,
                    gone_code(Gone::Finished),
                    gone_message(Gone::Finished),
                );
            }
            Err(_) => {
                return Read::Fail(
                    StatusCode::GONE,
                    "resume_overflow",
                    "events of this stream were dropped from its resume buffer before they were sent",
                );
            }
        }
        if st.finished {
            return Read::End(Outcome::Complete);
        }
        if let Some(why) = st.closed {
            return Read::Fail(
                StatusCode::SERVICE_UNAVAILABLE,
                gone_code(why),
                gone_message(why),
            );
        }
        slot.waker = Some(cx.waker().clone());
        Read::Wait
    }
}

/// A remote feed's next step, as a local read would give it.
fn read_remote(feed: &mut Feed, cx: &mut Context<'_>, pending: &mut VecDeque<Bytes>) -> Read {
    match feed.poll_step(cx) {
        Poll::Pending => Read::Wait,
        Poll::Ready(Step::Data(b)) => {
            pending.push_back(b);
            Read::Data
        }
        // The producer's error event, if any, came as data.
        Poll::Ready(Step::End { ok: true }) => Read::End(Outcome::Complete),
        Poll::Ready(Step::End { ok: false }) => Read::End(Outcome::RelayError),
        Poll::Ready(Step::Fail(why)) => {
            let (status, code, message) = remote_failure(why);
            Read::Fail(status, code, message)
        }
    }
}

fn remote_failure(why: Failure) -> (StatusCode, &'static str, &'static str) {
    match why {
        Failure::Silent => (
            StatusCode::BAD_GATEWAY,
            "resume_producer_lost",
            "the relay replica producing this stream stopped answering; events after the last one received are lost",
        ),
        Failure::BusLost => (
            StatusCode::SERVICE_UNAVAILABLE,
            "cluster_unavailable",
            "this relay replica lost its connection to the cluster store while following a stream produced elsewhere",
        ),
        Failure::Overflow => (
            StatusCode::GONE,
            "resume_overflow",
            "this client fell more than resume_max_bytes behind a stream produced on another relay replica",
        ),
        Failure::Stopped => (
            StatusCode::SERVICE_UNAVAILABLE,
            gone_code(Gone::Stopped),
            gone_message(Gone::Stopped),
        ),
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        let mut st = self.stream.lock();
        if st.reader.as_ref().is_some_and(|r| r.id == self.id) {
            st.reader = None;
            st.detached_at = Instant::now();
            drop(st);
            self.stream.notify.notify_one();
        }
    }
}

pub(super) fn gone_code(why: Gone) -> &'static str {
    match why {
        Gone::Expired | Gone::Finished => "resume_expired",
        Gone::Stopped => "shutting_down",
    }
}

pub(super) fn gone_message(why: Gone) -> &'static str {
    match why {
        Gone::Expired => {
            "this stream can no longer be resumed: nobody reconnected within its resume window"
        }
        Gone::Finished => "this stream has ended and its resume buffer was released",
        Gone::Stopped => "this stream can no longer be resumed: the relay is shutting down",
    }
}
