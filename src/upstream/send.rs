//! A send that failed on one upstream connection, either protocol.
//!
//! The connection code builds it (`h1::send`, and the pool for HTTP/2,
//! which goes through hyper); the pool decides from it whether the request
//! goes out once more. It sits below both so the HTTP/1.1 code need not
//! name the pool; the retry contract it carries is written at the top of
//! `pool`.

use http::Request;

use super::RequestBody;
use crate::error::Error;

/// A failed send, with what the pool's retry contract decides on.
pub(crate) struct SendError {
    pub error: Error,
    /// The request, whole, when it can be written again as it was.
    pub request: Option<Request<RequestBody>>,
    /// Some byte of a response arrived before the failure.
    pub answered: bool,
    /// The connection had carried an exchange before this one. Set by the
    /// pool, which alone knows.
    pub reused: bool,
}

impl SendError {
    pub(crate) fn new(error: Error, request: Option<Request<RequestBody>>, answered: bool) -> Self {
        Self {
            error,
            request,
            answered,
            reused: false,
        }
    }
}
