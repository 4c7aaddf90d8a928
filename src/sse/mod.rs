//! The SSE engine: follows an upstream `text/event-stream` byte by byte,
//! without copying it, so that keepalive frames can be written into the
//! downstream only where a client's event-stream parser cannot notice them.
//!
//! [`Scanner`] tracks where the bytes sent so far leave a client's parser
//! ([`Position`]) and hands every complete upstream [`Event`] to the caller
//! as zero-copy slices. [`Keepalive`] picks the frame that is safe at that
//! position, or none. [`whatwg`] is a plain reference parser that the tests
//! and fuzz targets use as the oracle.
//!
//! # The WHATWG rules relied on
//!
//! From the HTML standard, "Server-sent events", "Parsing an event stream"
//! and "Interpreting an event stream":
//!
//! - The stream is UTF-8. **One** leading U+FEFF (`EF BB BF`) is stripped at
//!   the start of the stream only; anywhere else it is content (and it
//!   poisons the field name it lands in).
//! - "Lines must be separated by either a U+000D CARRIAGE RETURN U+000A LINE
//!   FEED (CRLF) character pair, a single U+000A LINE FEED (LF) character, or
//!   a single U+000D CARRIAGE RETURN (CR) character." So a CR at the end of a
//!   chunk ends a line, but whether the next byte is an LF belonging to it is
//!   undecided until that byte arrives.
//! - "If the line is empty (a blank line): Dispatch the event." Dispatch
//!   resets the data and event-type buffers (the last event ID is kept).
//! - "If the line starts with a U+003A COLON character (:): Ignore the
//!   line." Comments change no parser state at all.
//! - Otherwise the field name runs up to the first `:` and the value follows
//!   it with one leading space removed; a line without `:` is a field with an
//!   empty value. `event`, `data`, `id` (unless it contains NUL) and `retry`
//!   (digits only) are acted on; other names are ignored.
//! - "Once the end of the file is reached, any pending data must be
//!   discarded": an unterminated last event is never dispatched.
//!
//! # Where injection is safe
//!
//! - At an event boundary (stream start, right after a blank line's LF or
//!   CRLF) the parser's data and type buffers are empty, so a comment plus a
//!   blank line, or a whole extra event, changes nothing for the upstream's
//!   events (see [`Keepalive`] for the client quirks that make frames
//!   configurable).
//! - At a line start inside an event only a comment line is safe: a blank
//!   line there would dispatch the upstream's half-built event early.
//! - After a CR whose next byte is unknown, an LF is written first to finish
//!   the CR's line ending, then the comment line; the upstream's next byte is
//!   swallowed if it is that CR's LF, so CR LF stays one terminator and never
//!   turns into an extra blank line.
//! - Inside a line nothing is safe.
//! - Before the upstream's first byte anything may be written, but then a
//!   leading upstream BOM would no longer be first and would corrupt the
//!   first field name, so the scanner drops it.
//!
//! # Invariants (checked by the tests and fuzz targets)
//!
//! - `Scanner::position` after any prefix equals the line state a WHATWG
//!   parser has after the bytes forwarded plus the frames written.
//! - The bytes `Scanner::feed` returns are the upstream's, less only a
//!   leading BOM dropped after an injection and an LF swallowed after an
//!   injected CR completion; they are slices of the fed chunks.
//! - The events' raw bytes, concatenated, equal the forwarded upstream bytes
//!   (less a leading BOM) up to the last dispatching blank line, for every
//!   way of splitting the input into chunks.
//! - Every byte is examined once (`memchr2` from line end to line end); the
//!   state carries across chunks, so the work is O(total bytes) and at most
//!   `max_event` bytes (plus a 2-byte BOM prefix) are held.
//! - The reference parse of the downstream equals the reference parse of
//!   the upstream, whatever the chunking and wherever frames were asked for.

mod event;
mod inject;
mod scanner;
mod stamp;
#[cfg(any(test, feature = "internals"))]
pub mod whatwg;

#[cfg(test)]
mod tests;

pub use event::{Event, ParsedEvent};
pub(crate) use inject::COMMENT_LINE;
pub use inject::Keepalive;
pub(crate) use scanner::Position;
pub use scanner::Scanner;
pub use stamp::Stamp;
