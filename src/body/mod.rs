//! Bodies on the data path, both directions, forwarded frame by frame as
//! `Bytes` without copying.
//!
//! - [`RequestBody`]: the client's body on its way upstream, with the size
//!   limit enforced while it streams.
//! - [`ResponseBody`]: what the client receives: the upstream's body (with
//!   the pool lease and the request's record riding along) or a small
//!   relay-made answer.
//! - [`SseBody`]: an event stream through the SSE engine, with keepalives
//!   from the connection's timer wheel and an honest ending.

mod capture;
mod events;
mod heartbeat;
mod idle;
mod json_wait;
mod request;
mod response;
mod sse;

pub use capture::UsageCapture;
pub use heartbeat::Heartbeat;
pub use json_wait::JsonWaitBody;
pub use request::RequestBody;
pub use response::{ResponseBody, first_frame};
pub use sse::{Pending, SseBody, SseSetup};
