//! Heartbeat timers.
//!
//! Each client connection owns one [`Wheel`]; the connection task drives it
//! (see `server`), and every SSE stream on the connection holds one
//! [`TimerKey`] in it. The contract that keeps idle streams cheap:
//!
//! - forwarding a chunk only records the time of the last write; it never
//!   touches the wheel;
//! - an entry fires at its deadline; the stream then either sends a
//!   keepalive or, if it wrote in the meantime, pushes its entry forward to
//!   `last_write + interval` (linkerd's idle-timeout pattern);
//! - the driver sleeps until the earliest deadline, so between deadlines a
//!   connection with idle streams costs nothing.

mod wheel;

pub(crate) use wheel::TimerKey;
pub use wheel::Wheel;

#[cfg(test)]
mod tests;
