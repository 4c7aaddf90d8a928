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
use crate::body::Heartbeat;
use crate::dialect::errors::{self, ErrorInfo};
use crate::sse::COMMENT_LINE;
use crate::telemetry::{Exchange, Metrics, Outcome};

pub(crate) struct Reader {
    stream: Arc<Stream>,
    metrics: Arc<Metrics>,
    id: u64,
    offset: u64,
    replay_end: u64,
    pending: VecDeque<Bytes>,
    heartbeat: Heartbeat,
    done: bool,
}

enum Read {
    Data,
    End,
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
        Self {
            stream,
            metrics,
            id: at.id,
            offset: at.offset,
            replay_end: at.replay_end,
            pending: VecDeque::new(),
            heartbeat,
            done: false,
        }
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
            match self.read(cx) {
                Read::Data => continue,
                Read::End => {
                    self.done = true;
                    if let Some(x) = x.as_deref_mut() {
                        x.finish(Outcome::Complete);
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
                    self.pending
                        .push_back(errors::event(self.stream.dialect(), info));
                    self.done = true;
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

    fn read(&mut self, cx: &mut Context<'_>) -> Read {
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
        match st.log.read_from(before, &mut self.pending) {
            Ok(after) if after > before => {
                self.offset = after;
                slot.offset = after;
                let replayed = after.min(self.replay_end) - before.min(self.replay_end);
                if replayed > 0 {
                    self.metrics
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
            return Read::End;
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

impl Drop for Reader {
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
