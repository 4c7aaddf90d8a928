//! What the relay does with each complete upstream event: watch for the
//! dialect's ending and for its signal that the answer is complete, read
//! usage from the events that carry it, and, when the relay itself asked
//! for usage, drop the usage-only chunk from the client's stream; on a
//! resumable stream, stamp each event with its id.

use bytes::Bytes;

use crate::dialect::Dialect;
use crate::dialect::continuation::{Splice, Spliced};
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
    /// A route that continues cut answers: whole events only, recorded.
    continuation: Option<Box<Record>>,
}

/// Most bytes of a stream recorded for a continuation; a longer answer is
/// not continued.
const RECORD_CAP: usize = 16 << 20;

/// What a continuation needs from the events the client got.
#[derive(Default)]
struct Record {
    /// The client's events, whole, in order, as it got them.
    events: Vec<Bytes>,
    bytes: usize,
    /// More than [`RECORD_CAP`] went out.
    overflow: bool,
    /// An upstream error event, held back while a continuation may still
    /// save the answer.
    held_error: Option<Vec<Bytes>>,
    /// The continuation under way, if any.
    splice: Option<Splice>,
}

impl Record {
    fn push(&mut self, part: &Bytes) {
        if self.overflow {
            return;
        }
        self.bytes += part.len();
        if self.bytes > RECORD_CAP {
            self.overflow = true;
            self.events = Vec::new();
        } else {
            self.events.push(part.clone());
        }
    }
}

impl EventObserver {
    pub(super) fn new(
        dialect: Dialect,
        strip_usage_chunk: bool,
        stamp: Option<Stamp>,
        chat_ask: Option<ChatAsk>,
        continuable: bool,
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
            continuation: continuable.then(Box::default),
        }
    }

    pub(super) fn on_event(&mut self, event: &Event) {
        let this = ending(self.dialect, event);
        if self.ending == Ending::None {
            self.ending = this;
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
        if let Some(record) = &mut self.continuation {
            if this == Ending::Error {
                record.held_error = Some(event.segments().to_vec());
                return;
            }
            match record.splice.as_mut().map(|s| s.event(event)) {
                Some(Spliced::Drop) => return,
                Some(Spliced::Replace(b)) => {
                    record.push(&b);
                    let mut kept = std::mem::take(&mut self.kept);
                    self.relay_event(b, &mut kept);
                    self.kept = kept;
                    return;
                }
                Some(Spliced::Keep) | None => {
                    for seg in event.segments() {
                        record.push(seg);
                    }
                }
            }
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

    /// Forwarding is event-aligned (see `strip_usage_chunk`, `stamp` and
    /// `continuation`).
    pub(super) fn event_aligned(&self) -> bool {
        self.strip_usage_chunk || self.stamp.is_some() || self.continuation.is_some()
    }

    /// The client's events so far, for a continuation; `None` when they
    /// were too many to keep.
    pub(super) fn recorded(&self) -> Option<&[Bytes]> {
        let r = self.continuation.as_deref()?;
        (!r.overflow).then_some(r.events.as_slice())
    }

    /// From now on the events are a continuation's: spliced into the
    /// answer the client has.
    pub(super) fn begin_splice(&mut self, splice: Splice) {
        // The continuation reports usage of its own (the cut upstream's
        // was handed to the record already).
        self.usage = StreamUsage::new(self.dialect);
        self.usage_changed = false;
        if let Some(r) = &mut self.continuation {
            r.splice = Some(splice);
            r.held_error = None;
        }
        self.ending = Ending::None;
    }

    /// The upstream error event held back for a continuation, whole.
    pub(super) fn take_held_error(&mut self) -> Option<Bytes> {
        let segments = self.continuation.as_mut()?.held_error.take()?;
        Some(Bytes::from(segments.concat()))
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
