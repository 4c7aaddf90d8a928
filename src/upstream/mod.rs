//! The upstream side: a connection pool written over
//! `hyper::client::conn::{http1, http2}`.
//!
//! - [`connect`] opens one connection: DNS, TCP (socket2 options), TLS with
//!   ALPN, then the hyper handshake, all under `connect_timeout`.
//! - [`pool`] keeps connections per origin and hands out leases; the
//!   ownership and retry contract is written at its top.
//! - [`tls`] builds the rustls client configuration (roots, extra CA, ALPN).

mod connect;
mod h1;
mod pool;
mod tls;

pub use connect::Connector;
pub use pool::{Lease, Origin, OriginKey, Pool, Sent};
