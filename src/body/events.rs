//! What the relay does with each complete upstream event: watch for the
//! dialect's ending and for its signal that the answer is complete, read
//! usage from the events that carry it, and, when the relay itself asked
//! for usage, drop the usage-only chunk from the client's stream; on a
//! resumable stream, stamp each event with its id.

use bytes::Bytes;

use crate::dialect::Dialect;
use crate::dialect::stream::{ChatAsk, Ending, Finish, ending};
use crate::sse::Event;
use crate::sse::Stamp;
use crate::usage::{Seen, StreamUsage, Usage};

pub(super) struct EventObserver {
    dialect: Dialect,
    ending: Ending,
    /// The answer's own signal that it is complete (for a stream that
    /// ends without its terminal event).
    finish: Finish,
    usage: StreamUsage,
    usage_changed: bool,
    /// Event-aligned forwarding: only whole events go out, minus the
    /// usage-only chunk (set when the relay injected `include_usage`).
    strip_usage_chunk: bool,
    /// Resumable stream: whole events only, each with an `id:` line;
    /// comment-only blocks are dropped (after an id, a blank line makes
    /// openai-python yield an empty event).
    stamp: Option<Stamp>,
    /// Whole events to forward, as `(seq, part)`; seq is 0 unless stamped.
    kept: Vec<(u64, Bytes)>,
}

impl EventObserver {
    pub(super) fn new(
        dialect: Dialect,
        strip_usage_chunk: bool,
        stamp: Option<Stamp>,
        chat_ask: Option<ChatAsk>,
    ) -> Self {
        Self {
            dialect,
            ending: Ending::None,
            finish: Finish::new(dialect, chat_ask),
            usage: StreamUsage::new(dialect),
            usage_changed: false,
            strip_usage_chunk,
            stamp,
            kept: Vec::new(),
        }
    }

    pub(super) fn on_event(&mut self, event: &Event) {
        if self.ending == Ending::None {
            self.ending = ending(self.dialect, event);
        }
        self.finish.on_event(event);
        let seen = self.usage.on_event(event);
        if seen != Seen::Other {
            self.usage_changed = true;
            self.finish.usage_arrived();
        }
        if !self.event_aligned() || (self.strip_usage_chunk && seen == Seen::UsageOnlyChunk) {
            return;
        }
        match &mut self.stamp {
            Some(stamp) if event.has_field() => {
                stamp.event(event.segments(), event.terminator_len(), &mut self.kept);
            }
            Some(_) => {}
            None => self
                .kept
                .extend(event.segments().iter().map(|b| (0, b.clone()))),
        }
    }

    /// Forwarding is event-aligned (see `strip_usage_chunk` and `stamp`).
    pub(super) fn event_aligned(&self) -> bool {
        self.strip_usage_chunk || self.stamp.is_some()
    }

    /// The whole events to forward, in event-aligned mode.
    pub(super) fn take_kept(&mut self) -> std::vec::Drain<'_, (u64, Bytes)> {
        self.kept.drain(..)
    }

    /// The answer's own signal says it is complete.
    pub(super) fn finished(&self) -> bool {
        self.finish.is_complete()
    }

    /// Queues a relay-made event (an error event, an added `[DONE]`) like
    /// an upstream one: stamped on a resumable stream.
    pub(super) fn relay_event(&mut self, event: Bytes, out: &mut impl Extend<(u64, Bytes)>) {
        match &mut self.stamp {
            Some(stamp) => {
                let term = usize::from(event.ends_with(b"\r\n")) + 1;
                stamp.event(std::slice::from_ref(&event), term, out);
            }
            None => out.extend(std::iter::once((0, event))),
        }
    }

    /// The first ending seen since the last call.
    pub(super) fn take_ending(&mut self) -> Ending {
        std::mem::replace(&mut self.ending, Ending::None)
    }

    /// Usage (and the model the stream reported) when new usage arrived
    /// since the last call.
    pub(super) fn take_usage(&mut self) -> Option<(Usage, Option<&str>)> {
        if !std::mem::take(&mut self.usage_changed) {
            return None;
        }
        let usage = self.usage.usage()?;
        Some((usage, self.usage.model()))
    }
}
