//! Input decoding and oracles shared by the fuzz targets.
//!
//! Input layout: one header byte (the target says what it selects), then
//! the stream, where `0xFF` cuts a chunk and `0xFE` cuts a chunk and asks
//! for one keepalive frame (the scanner target treats it as a cut). Neither
//! byte ever occurs in UTF-8, so the stream can still hold invalid UTF-8
//! through every other byte.
#![allow(dead_code)] // each target uses only part of this module

use sse_edge::internals::ParsedEvent;
use sse_edge::internals::whatwg::Dispatched;

pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One step of a run: feed a chunk, or ask for a frame.
pub enum Step<'a> {
    Chunk(&'a [u8]),
    Inject,
}

/// Splits the stream part of an input into steps.
pub fn steps(stream: &[u8]) -> Vec<Step<'_>> {
    let mut out = vec![];
    let mut rest = stream;
    while let Some(i) = rest.iter().position(|&b| b >= 0xFE) {
        out.push(Step::Chunk(&rest[..i]));
        if rest[i] == 0xFE {
            out.push(Step::Inject);
        }
        rest = &rest[i + 1..];
    }
    out.push(Step::Chunk(rest));
    out
}

/// The upstream bytes: the stream without its control bytes.
pub fn upstream(stream: &[u8]) -> Vec<u8> {
    stream.iter().copied().filter(|&b| b < 0xFE).collect()
}

/// Whole-buffer event splitter: raw bytes of every event whose blank line
/// is terminated (a final CR counts, as at end of stream).
pub fn split_events(input: &[u8]) -> Vec<Vec<u8>> {
    let mut rest = input.strip_prefix(BOM).unwrap_or(input);
    let (mut events, mut current) = (vec![], vec![]);
    while let Some(i) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
        let crlf = rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n');
        let end = i + 1 + usize::from(crlf);
        current.extend_from_slice(&rest[..end]);
        if i == 0 {
            events.push(std::mem::take(&mut current));
        }
        rest = &rest[end..];
    }
    events
}

/// Replays per-event parses the way a WHATWG parser dispatches them.
pub fn dispatched(parsed: &[ParsedEvent]) -> Vec<Dispatched> {
    let mut last_id = String::new();
    let mut out = vec![];
    for p in parsed {
        if let Some(id) = &p.id {
            last_id.clone_from(id);
        }
        if let Some(data) = &p.data {
            out.push(Dispatched {
                event_type: p.event.clone().unwrap_or_else(|| "message".into()),
                data: data.clone(),
                last_event_id: last_id.clone(),
            });
        }
    }
    out
}
