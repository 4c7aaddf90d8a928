//! `id: <stream>:<seq>` on every event of a resumable stream (the stream's
//! name is its resume token, see `crate::resume`).
//!
//! The id line goes last in the event, just before its blank line, so it
//! wins over an `id:` field of the upstream's own (the last one set is the
//! one a parser keeps). The event's bytes stay the upstream's slices; only
//! the id line is new.

use bytes::{BufMut, Bytes, BytesMut};

/// Id lines are cut from blocks of this size: one allocation per ~20
/// events rather than one per event.
const BLOCK: usize = 1024;

pub struct Stamp {
    /// `id: <token>:`
    prefix: Vec<u8>,
    next: u64,
    ids: BytesMut,
}

impl Stamp {
    /// Ids `<stream>:1`, `<stream>:2`, ...
    pub fn new(stream: impl std::fmt::Display) -> Self {
        Self {
            prefix: format!("id: {stream}:").into_bytes(),
            next: 1,
            ids: BytesMut::new(),
        }
    }

    /// `id: <token>:<seq>\n\n`, written without `fmt`.
    fn id_line(&mut self, seq: u64) -> Bytes {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut n = seq;
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let len = self.prefix.len() + (digits.len() - at) + 2;
        if self.ids.capacity() < len {
            self.ids = BytesMut::with_capacity(BLOCK.max(len));
        }
        self.ids.put_slice(&self.prefix);
        self.ids.put_slice(&digits[at..]);
        self.ids.put_slice(b"\n\n");
        self.ids.split().freeze()
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
        out.extend(std::iter::once((seq, self.id_line(seq))));
    }
}
