//! The resumer's side of one reconnect served by another replica: what the
//! bus brings for its slot, queued for the client's reader.
//!
//! The dispatcher must never wait for a slow client (it serves every slot
//! of the replica), so the queue is unbounded in messages but bounded in
//! bytes: a client that lets more than its stream's `resume_max_bytes` pile
//! up is ended with `resume_overflow`, as a lagging reader is on one
//! replica once its log has to drop what it did not take.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep};

use super::wire::Msg;
use super::{Remote, ResumeError};
use crate::cluster::bus::ReplicaId;

/// Why a remote feed ended without its producer's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// This replica lost its bus subscription: messages may be missing.
    BusLost,
    /// This replica is shutting down.
    Stopped,
    /// The client let more than the stream's limit pile up.
    Overflow,
    /// Nothing from the producer for too long (it died, or Redis is gone).
    Silent,
}

enum Item {
    Msg(Msg),
    Failed(Failure),
}

/// The dispatcher's end of a slot.
pub(super) struct Inlet {
    tx: mpsc::UnboundedSender<Item>,
    queued: Arc<AtomicU64>,
    limit: u64,
    producer: ReplicaId,
}

/// The reconnect's end of a slot.
pub(super) struct Outlet {
    rx: mpsc::UnboundedReceiver<Item>,
    queued: Arc<AtomicU64>,
}

pub(super) fn channel(producer: ReplicaId, limit: u64) -> (Inlet, Outlet) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicU64::new(0));
    let inlet = Inlet {
        tx,
        queued: queued.clone(),
        limit,
        producer,
    };
    (inlet, Outlet { rx, queued })
}

impl Inlet {
    /// The replica this slot hears from.
    pub(super) fn producer(&self) -> ReplicaId {
        self.producer
    }

    /// Queues `msg`; false when the slot must go (its reader left, or it
    /// let too much pile up and was told so).
    pub(super) fn deliver(&mut self, msg: Msg) -> bool {
        if let Msg::Accepted { max_bytes, .. } = &msg {
            // The stream's own limit, before its replay can arrive.
            self.limit = self.limit.max(*max_bytes);
        }
        if let Msg::Data(b) = &msg {
            let queued = self.queued.fetch_add(b.len() as u64, Ordering::Relaxed);
            if queued + b.len() as u64 > self.limit {
                self.fail(Failure::Overflow);
                return false;
            }
        }
        self.tx.send(Item::Msg(msg)).is_ok()
    }

    pub(super) fn fail(&self, why: Failure) {
        let _ = self.tx.send(Item::Failed(why));
    }
}

/// What a remote feed gives its reader.
pub(crate) enum Step {
    Data(Bytes),
    /// The producer's stream ended; `ok`: completely (else its error event
    /// was the last data).
    End {
        ok: bool,
    },
    Fail(Failure),
}

/// A reconnect's live feed from its producer.
pub(crate) struct Feed {
    remote: Arc<Remote>,
    producer: ReplicaId,
    slot: u64,
    outlet: Outlet,
    silence: Pin<Box<Sleep>>,
    limit: Duration,
    ended: bool,
}

impl Feed {
    pub(super) fn new(
        remote: Arc<Remote>,
        producer: ReplicaId,
        slot: u64,
        outlet: Outlet,
        limit: Duration,
    ) -> Self {
        Self {
            remote,
            producer,
            slot,
            outlet,
            silence: Box::pin(tokio::time::sleep(limit)),
            limit,
            ended: false,
        }
    }

    pub(super) fn slot(&self) -> u64 {
        self.slot
    }

    pub(super) fn producer(&self) -> ReplicaId {
        self.producer
    }

    /// The producer's answer to a request, within `limit`. An answer that
    /// leaves nothing running on the producer (anything but `Accepted`)
    /// ends the feed: dropping it then sends no cancel.
    pub(super) async fn first(&mut self, limit: Duration) -> Result<Msg, ResumeError> {
        let answer = match tokio::time::timeout(limit, self.outlet.rx.recv()).await {
            Ok(Some(Item::Msg(m))) => m,
            Ok(Some(Item::Failed(_)) | None) | Err(_) => return Err(ResumeError::Unreachable),
        };
        self.ended = !matches!(answer, Msg::Accepted { .. });
        Ok(answer)
    }

    pub(crate) fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<Step> {
        loop {
            let item = match self.outlet.rx.poll_recv(cx) {
                Poll::Ready(Some(item)) => item,
                Poll::Ready(None) => {
                    self.ended = true;
                    return Poll::Ready(Step::Fail(Failure::Stopped));
                }
                Poll::Pending => {
                    if self.silence.as_mut().poll(cx).is_ready() {
                        // Not `ended`: should the producer still be there,
                        // dropping the feed tells it to stop.
                        return Poll::Ready(Step::Fail(Failure::Silent));
                    }
                    return Poll::Pending;
                }
            };
            let heard = Instant::now() + self.limit;
            match item {
                Item::Msg(Msg::Data(b)) => {
                    self.outlet
                        .queued
                        .fetch_sub(b.len() as u64, Ordering::Relaxed);
                    self.silence.as_mut().reset(heard);
                    return Poll::Ready(Step::Data(b));
                }
                Item::Msg(Msg::End { ok }) => {
                    self.ended = true;
                    return Poll::Ready(Step::End { ok });
                }
                Item::Msg(_) => self.silence.as_mut().reset(heard),
                Item::Failed(why) => {
                    // The dispatcher dropped the slot (and told the
                    // producer, where it could).
                    self.ended = true;
                    return Poll::Ready(Step::Fail(why));
                }
            }
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.remote.close_slot(self.slot);
        if !self.ended && tokio::runtime::Handle::try_current().is_ok() {
            // The client went: its forwarder should let the stream go.
            self.remote
                .send_later(self.producer, self.slot, Msg::Cancel);
        }
    }
}
