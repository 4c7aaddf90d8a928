//! Response bodies on their way down, forwarded frame by frame as `Bytes`
//! without copying.
//!
//! - [`SseBody`]: an event stream through the SSE engine, with keepalives
//!   from the connection's timer wheel and an honest ending.
//! - [`JsonWaitBody`]: a non-streaming answer kept alive with whitespace
//!   after an early commit.
//! - [`UsageCapture`], [`ReadDeadline`], [`Heartbeat`]: the pieces the
//!   client-facing body (`proxy::ResponseBody`) and resumable streams share.

mod capture;
mod events;
mod heartbeat;
mod idle;
mod json_wait;
mod sse;

pub(crate) use capture::UsageCapture;
pub use heartbeat::Heartbeat;
pub(crate) use idle::ReadDeadline;
pub(crate) use json_wait::JsonWaitBody;
pub(crate) use sse::{Answer, Continuer, Pending, SseBody, SseSetup};
