//! One stream's replay log: the most recent stamped events, as the shared
//! `Bytes` parts they were relayed in.
//!
//! Parts are addressed two ways. A live reader follows byte offsets (where
//! it stopped in the stream), so an event pushed in two batches reaches it
//! whole. A reconnect names the last event its client saw; the log finds
//! where the next one starts, or says it is gone.

use std::collections::VecDeque;

use bytes::Bytes;

struct Part {
    /// The event this part belongs to.
    seq: u64,
    /// Stream offset just past this part.
    end: u64,
    bytes: Bytes,
}

/// A reconnect asked for events the log no longer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lost {
    /// The oldest event still held whole.
    pub oldest: u64,
}

pub struct Log {
    parts: VecDeque<Part>,
    held: u64,
    /// Events before this one are not held whole.
    first_seq: u64,
    /// The seq after the last one pushed.
    next_seq: u64,
    /// Bytes ever pushed (the offset of the stream's end so far).
    pushed: u64,
}

impl Default for Log {
    fn default() -> Self {
        Self::new()
    }
}

impl Log {
    pub fn new() -> Self {
        Self {
            parts: VecDeque::new(),
            held: 0,
            first_seq: 1,
            next_seq: 1,
            pushed: 0,
        }
    }

    pub fn held(&self) -> u64 {
        self.held
    }

    pub fn pushed(&self) -> u64 {
        self.pushed
    }

    /// The seq the next event will get; `seq` values below it were sent.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn push(&mut self, seq: u64, bytes: Bytes) {
        let len = bytes.len() as u64;
        self.pushed += len;
        self.held += len;
        self.next_seq = self.next_seq.max(seq + 1);
        self.parts.push_back(Part {
            seq,
            end: self.pushed,
            bytes,
        });
        self.check();
    }

    /// Bounds the module relies on (debug builds only; O(1)).
    fn check(&self) {
        debug_assert!(self.held <= self.pushed, "more held than ever pushed");
        debug_assert!(
            self.first_seq <= self.next_seq,
            "first event after the next"
        );
        debug_assert_eq!(
            self.parts.back().map_or(self.pushed, |p| p.end),
            self.pushed,
            "the last part ends the stream"
        );
        debug_assert!(
            !self.parts.is_empty() || self.held == 0,
            "bytes held without parts"
        );
        debug_assert!(
            self.parts
                .front()
                .is_none_or(|p| p.seq + 1 >= self.first_seq),
            "the oldest part belongs to an event already given up"
        );
    }

    /// The offset where event `seq` starts (the stream's end if it has not
    /// been pushed yet).
    pub fn start_of(&self, seq: u64) -> Result<u64, Lost> {
        if seq < self.first_seq {
            return Err(Lost {
                oldest: self.first_seq,
            });
        }
        let i = self.parts.partition_point(|p| p.seq < seq);
        Ok(self
            .parts
            .get(i)
            .map_or(self.pushed, |p| p.end - p.bytes.len() as u64))
    }

    /// Clones every part after `offset` into `out`; returns the new offset,
    /// or `Err` if parts after `offset` were already dropped.
    pub fn read_from(&self, offset: u64, out: &mut VecDeque<Bytes>) -> Result<u64, Lost> {
        let i = self.parts.partition_point(|p| p.end <= offset);
        if let Some(p) = self.parts.get(i) {
            if p.end - p.bytes.len() as u64 > offset {
                return Err(Lost {
                    oldest: self.first_seq,
                });
            }
        } else if offset < self.pushed {
            return Err(Lost {
                oldest: self.first_seq,
            });
        }
        out.extend(self.parts.range(i..).map(|p| p.bytes.clone()));
        Ok(self.pushed)
    }

    /// Drops every part; returns the bytes freed. Nothing is replayable
    /// after this.
    pub fn clear(&mut self) -> u64 {
        self.parts.clear();
        self.first_seq = self.next_seq;
        std::mem::take(&mut self.held)
    }

    /// Drops the oldest part if it ends at or before `floor`; returns its
    /// length. An event that loses any part is no longer replayable.
    pub fn drop_oldest(&mut self, floor: u64) -> Option<u64> {
        if self.parts.front()?.end > floor {
            return None;
        }
        let p = self.parts.pop_front()?;
        let len = p.bytes.len() as u64;
        self.held -= len;
        self.first_seq = self.first_seq.max(p.seq + 1);
        self.check();
        Some(len)
    }
}
