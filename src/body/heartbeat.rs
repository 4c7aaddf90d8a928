//! One stream's keepalive deadline in its connection's timer wheel.
//!
//! Writing a chunk calls [`Heartbeat::wrote`], which stores a timestamp and
//! nothing else. When the wheel entry fires, [`Heartbeat::poll_due`] checks
//! that timestamp: if the stream wrote since, the entry is pushed forward to
//! `last_write + interval`; only a stream silent for a whole interval is
//! due.

use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::time::Instant;

use crate::timer::{TimerKey, Wheel};

pub struct Heartbeat {
    wheel: Arc<Wheel>,
    key: TimerKey,
    interval: Duration,
    last_write: Instant,
}

impl Heartbeat {
    /// Arms the first deadline one interval from now.
    pub fn new(wheel: Arc<Wheel>, interval: Duration) -> Self {
        let now = Instant::now();
        let key = wheel.insert(now + interval);
        Self {
            wheel,
            key,
            interval,
            last_write: now,
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Bytes went downstream at `now`.
    pub fn wrote(&mut self, now: Instant) {
        self.last_write = now;
    }

    /// Ready when the stream has been silent for a whole interval.
    pub fn poll_due(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            ready!(self.wheel.poll_fired(self.key, cx));
            let due = self.last_write + self.interval;
            if Instant::now() >= due {
                return Poll::Ready(());
            }
            // Wrote since the entry was armed: push it forward, then poll
            // again so the waker is registered for the new deadline.
            self.wheel.reset(self.key, due);
        }
    }

    /// A keepalive went out (or could not, and waits for the next
    /// interval): re-arm from now.
    pub fn rearm(&mut self) {
        let now = Instant::now();
        self.last_write = now;
        self.wheel.reset(self.key, now + self.interval);
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.wheel.remove(self.key);
    }
}
