//! Requests open on one client connection, for its idle timeout.
//!
//! Each request's [`Exchange`](super::Exchange) holds an [`ActiveRequest`]
//! for as long as the request lives (its answer's body included), so a
//! connection is idle exactly when no record is open and none started since
//! the last look.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

#[derive(Debug, Default)]
pub(crate) struct Activity {
    active: AtomicUsize,
    started: AtomicU64,
}

/// One request in progress on a connection.
#[derive(Debug)]
pub(crate) struct ActiveRequest(Arc<Activity>);

impl Activity {
    pub(crate) fn begin(self: &Arc<Self>) -> ActiveRequest {
        self.active.fetch_add(1, Ordering::AcqRel);
        self.started.fetch_add(1, Ordering::AcqRel);
        ActiveRequest(self.clone())
    }

    /// Requests started so far (a cursor for [`Activity::idle_since`]).
    pub(crate) fn started(&self) -> u64 {
        self.started.load(Ordering::Acquire)
    }

    /// True when nothing is open and nothing started since `*cursor`;
    /// moves the cursor on.
    pub(crate) fn idle_since(&self, cursor: &mut u64) -> bool {
        let started = self.started();
        let idle = self.active.load(Ordering::Acquire) == 0 && started == *cursor;
        *cursor = started;
        idle
    }
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}
