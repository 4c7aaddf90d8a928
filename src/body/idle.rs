//! `upstream.read_timeout` for relayed (non-SSE) bodies.
//!
//! Arrivals only store a timestamp; the timer is armed once and, when it
//! fires, pushed forward to `last + timeout` if data came in the meantime
//! (the lazy pattern of `heartbeat`), so a steady body costs one clock read
//! per frame and no timer work.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

pub(crate) struct ReadDeadline {
    timeout: Duration,
    last: Instant,
    timer: Pin<Box<Sleep>>,
}

impl ReadDeadline {
    pub(crate) fn new(timeout: Duration) -> Self {
        let now = Instant::now();
        Self {
            timeout,
            last: now,
            timer: Box::pin(tokio::time::sleep_until(now + timeout)),
        }
    }

    /// Data arrived.
    pub(crate) fn arrived(&mut self) {
        self.last = Instant::now();
    }

    /// Ready when the upstream has been silent for the whole timeout.
    pub(crate) fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<Duration> {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let due = self.last + self.timeout;
            if Instant::now() >= due {
                return Poll::Ready(self.timeout);
            }
            self.timer.as_mut().reset(due);
        }
    }
}
