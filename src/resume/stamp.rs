//! `id: <token>:<seq>` on every event of a resumable stream.
//!
//! The id line goes last in the event, just before its blank line, so it
//! wins over an `id:` field of the upstream's own (the last one set is the
//! one a parser keeps). The event's bytes stay the upstream's slices; only
//! the id line is new.

use bytes::Bytes;

use super::Token;

pub struct Stamp {
    /// `id: <token>:`
    prefix: String,
    next: u64,
}

impl Stamp {
    pub fn new(token: Token) -> Self {
        Self {
            prefix: format!("id: {token}:"),
            next: 1,
        }
    }

    /// Queues one whole event, `segments` ending in its dispatching blank
    /// line whose terminator is `term` bytes long, as `(seq, bytes)` parts
    /// with the stream's next id added as its last field. An event that
    /// starts with a BOM gets an empty comment line first: a replay may
    /// start a connection with it, and the client's parser must not take
    /// that BOM for a leading one and strip it.
    pub fn event(&mut self, segments: &[Bytes], term: usize, out: &mut impl Extend<(u64, Bytes)>) {
        let seq = self.next;
        self.next += 1;
        let head = segments.iter().flat_map(|s| s.iter()).take(3);
        if head.copied().eq(*b"\xEF\xBB\xBF") {
            out.extend(std::iter::once((seq, Bytes::from_static(b":\n"))));
        }
        let total: usize = segments.iter().map(Bytes::len).sum();
        let mut keep = total.saturating_sub(term);
        for seg in segments {
            if keep == 0 {
                break;
            }
            let n = seg.len().min(keep);
            keep -= n;
            out.extend(std::iter::once((seq, seg.slice(..n))));
        }
        let id = format!("{}{seq}\n\n", self.prefix);
        out.extend(std::iter::once((seq, Bytes::from(id))));
    }
}
