//! Bodies on the data path, both directions, forwarded frame by frame as
//! `Bytes` without copying.
//!
//! - [`RequestBody`]: the client's body on its way upstream, with the size
//!   limit enforced while it streams.
//! - [`ResponseBody`]: what the client receives: the upstream's body (with
//!   the pool lease and the request's record riding along) or a small
//!   relay-made answer.

mod request;
mod response;

pub use request::RequestBody;
pub use response::ResponseBody;
