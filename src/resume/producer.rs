//! The task that keeps a resumable stream going: it owns the upstream
//! body (through the SSE engine, which stamps every event) and appends
//! what arrives to the stream's log, whether or not a client is reading.
//!
//! ```text
//!            ┌─ reader attached, lagging < max_bytes ─▶ pull upstream ─▶ push ─┐
//!  decide ◀──┼─ reader attached, lagging ─────────────▶ wait for the reader ◀──┤
//!            ├─ no reader, window open ──────────────▶ pull (or wait, ended) ◀─┤
//!            └─ no reader past the window / log reclaimed / stop ─▶ exit ──────┘
//! ```
//! Exiting drops the upstream body, which cancels the upstream request. An
//! ended stream stays replayable for the window after its last reader
//! went (the reader handing over the end does not mean the client got
//! it), unless its memory is needed for newer streams.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::time::Instant;

use super::hub::{Gone, Hub, Stream};
use crate::body::SseBody;
use crate::telemetry::{Exchange, Outcome};

/// Most parts taken from the engine per push.
const BATCH: usize = 64;

enum Step {
    Exit(Gone),
    /// Read upstream; `Some` is when the window of a detached stream ends.
    Pull(Option<Instant>),
    /// Wait for the reader (or the window's end).
    Wait(Option<Instant>),
}

/// `x` is the original request's record: it is finished (counted and
/// logged) when the upstream stream ends, not when the log is released.
pub(super) async fn run(hub: Arc<Hub>, stream: Arc<Stream>, mut body: SseBody, x: Exchange) {
    let mut closing = Closing {
        hub,
        stream,
        why: Gone::Stopped,
    };
    let (hub, stream) = (&closing.hub, &closing.stream);
    let mut x = Some(x);
    let why = produce(hub, stream, &mut body, &mut x).await;
    drop(body); // cancels the upstream if it is still running
    if let Some(mut x) = x {
        match why {
            Gone::Expired => {
                tracing::info!(
                    route = stream.route(),
                    "resume window ended without a reconnect: upstream cancelled"
                );
                x.finish(Outcome::ResumeExpired);
            }
            Gone::Stopped | Gone::Finished => x.finish(Outcome::ClientDisconnected),
        }
    }
    closing.why = why;
}

/// Closes the stream in the hub however the task ends (a panic included),
/// so the hub's count of producers, which shutdown waits on, stays right.
struct Closing {
    hub: Arc<Hub>,
    stream: Arc<Stream>,
    why: Gone,
}

impl Drop for Closing {
    fn drop(&mut self) {
        self.hub.close(&self.stream, self.why);
    }
}

async fn produce(
    hub: &Hub,
    stream: &Arc<Stream>,
    body: &mut SseBody,
    record: &mut Option<Exchange>,
) -> Gone {
    let mut batch: Vec<(u64, Bytes)> = Vec::new();
    let expiry = tokio::time::sleep_until(Instant::now() + stream.window);
    tokio::pin!(expiry);
    loop {
        let (pull, deadline) = match decide(hub, stream) {
            Step::Exit(why) => return why,
            Step::Pull(d) if record.is_some() => (true, d),
            Step::Pull(d) | Step::Wait(d) => (false, d),
        };
        if let Some(d) = deadline {
            if expiry.deadline() != d {
                expiry.as_mut().reset(d);
            }
        }
        let draining = hub.draining();
        tokio::select! {
            biased;
            () = hub.stop_signal().wait() => return Gone::Stopped,
            () = hub.drain_signal().wait(), if !draining => {}
            () = stream.notify.notified() => {}
            () = &mut expiry, if deadline.is_some() => {}
            finished = poll_fn(|cx| match record.as_mut() {
                Some(x) => pull_batch(body, x, cx, &mut batch),
                None => Poll::Pending,
            }), if pull => {
                stream.push(hub, &mut batch, finished);
                if finished {
                    hub.ended(stream);
                    *record = None; // the request is complete: count and log it
                }
            }
        }
    }
}

fn decide(hub: &Hub, stream: &Stream) -> Step {
    let mut st = stream.lock();
    st.producer_blocked = false;
    if st.reclaimed {
        return Step::Exit(Gone::Finished);
    }
    let deadline = match &st.reader {
        Some(_) => None,
        None if hub.draining() => Some(st.detached_at),
        None => Some(st.detached_at + stream.window),
    };
    if deadline.is_some_and(|d| Instant::now() >= d) {
        return Step::Exit(if st.finished {
            Gone::Finished
        } else {
            Gone::Expired
        });
    }
    if st.finished {
        return Step::Wait(deadline);
    }
    if let Some(r) = &st.reader {
        let lag = st.log.pushed() - r.offset;
        if lag >= stream.max_bytes || (lag > 0 && hub.over_budget()) {
            st.producer_blocked = true;
            return Step::Wait(None);
        }
    }
    Step::Pull(deadline)
}

/// Takes what the engine has ready, up to [`BATCH`] parts; `Ready(true)`
/// when the stream ended.
fn pull_batch(
    body: &mut SseBody,
    x: &mut Exchange,
    cx: &mut Context<'_>,
    batch: &mut Vec<(u64, Bytes)>,
) -> Poll<bool> {
    while batch.len() < BATCH {
        match body.poll_part(cx, x) {
            Poll::Ready(Some(part)) => batch.push(part),
            Poll::Ready(None) => return Poll::Ready(true),
            Poll::Pending if batch.is_empty() => return Poll::Pending,
            Poll::Pending => break,
        }
    }
    Poll::Ready(false)
}
