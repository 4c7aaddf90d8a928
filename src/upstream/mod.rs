//! The upstream side: a connection pool over the relay's own HTTP/1.1
//! client codec ([`h1`]) and hyper's HTTP/2 client
//! (`hyper::client::conn::http2`).
//!
//! - [`connect`] opens one connection: DNS, TCP (socket2 options), TLS with
//!   ALPN, then (HTTP/2) the hyper handshake, all under `connect_timeout`.
//! - [`h1`] writes requests and reads responses on HTTP/1.1 connections,
//!   in the task of the request that uses them. It knows nothing of the
//!   pool: a response body read to its end hands its connection back
//!   through the check-in ([`h1::CheckIn`]) it was given.
//! - [`pool`] keeps connections per origin and hands out leases; the
//!   ownership and retry contract is written at its top.
//! - [`send`] is what a failed send hands back (either protocol), for the
//!   pool's retry decision; it sits below both so `h1` need not name the
//!   pool.
//! - [`health`] keeps each endpoint's circuit breaker and load, and
//!   chooses between a group's endpoints (the failover loop above decides
//!   what counts as a failure).
//! - [`tls`] builds the rustls client configuration (roots, extra CA, ALPN).

mod body;
mod connect;
pub mod h1;
mod health;
mod pool;
mod request;
mod send;
mod stats;
mod tls;

pub(crate) use body::Body;

pub(crate) use health::{Failure, Health, choose, least_recently_failed};
pub(crate) use pool::{Lease, Sent};
pub use pool::{Origin, OriginKey, Pool};
pub use request::RequestBody;
