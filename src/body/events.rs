//! What the relay does with each complete upstream event: watch for the
//! dialect's ending, read usage from the events that carry it, and, when
//! the relay itself asked for usage, drop the usage-only chunk from the
//! client's stream.

use bytes::Bytes;

use crate::dialect::Dialect;
use crate::dialect::stream::{Ending, ending};
use crate::sse::Event;
use crate::usage::{Seen, StreamUsage, Usage};

pub struct EventObserver {
    dialect: Dialect,
    ending: Ending,
    usage: StreamUsage,
    usage_changed: bool,
    /// Event-aligned forwarding: only whole events go out, minus the
    /// usage-only chunk (set when the relay injected `include_usage`).
    strip_usage_chunk: bool,
    kept: Vec<Bytes>,
}

impl EventObserver {
    pub fn new(dialect: Dialect, strip_usage_chunk: bool) -> Self {
        Self {
            dialect,
            ending: Ending::None,
            usage: StreamUsage::new(dialect),
            usage_changed: false,
            strip_usage_chunk,
            kept: Vec::new(),
        }
    }

    pub fn on_event(&mut self, event: &Event) {
        if self.ending == Ending::None {
            self.ending = ending(self.dialect, event);
        }
        let seen = self.usage.on_event(event);
        self.usage_changed |= seen != Seen::Other;
        if self.strip_usage_chunk && seen != Seen::UsageOnlyChunk {
            self.kept.extend(event.segments().iter().cloned());
        }
    }

    /// Forwarding is event-aligned (see `strip_usage_chunk`).
    pub fn event_aligned(&self) -> bool {
        self.strip_usage_chunk
    }

    /// The whole events to forward, in event-aligned mode.
    pub fn take_kept(&mut self) -> std::vec::Drain<'_, Bytes> {
        self.kept.drain(..)
    }

    /// The first ending seen since the last call.
    pub fn take_ending(&mut self) -> Ending {
        std::mem::replace(&mut self.ending, Ending::None)
    }

    /// Usage (and the model the stream reported) when new usage arrived
    /// since the last call.
    pub fn take_usage(&mut self) -> Option<(Usage, Option<&str>)> {
        if !std::mem::take(&mut self.usage_changed) {
            return None;
        }
        let usage = self.usage.usage()?;
        Some((usage, self.usage.model()))
    }
}
