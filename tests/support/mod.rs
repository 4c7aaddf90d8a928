//! Shared helpers for the integration tests and the fault suite: a
//! scriptable mock upstream (HTTP/1.1, h2c, TLS with ALPN), canned streaming
//! and raw-socket upstreams, relay starters (in-process and the real
//! binary), small hyper clients over real sockets, a throwaway CA, the
//! captured access log, and Prometheus text parsing.
//!
//! Every test file includes this with `mod support;` (the fault suite with
//! `#[path = "../support/mod.rs"]`, and `#[macro_use]` for [`ensure!`]) and
//! uses a subset of it; every helper is reachable as `support::NAME`
//! whichever file defines it:
//!
//! - [`bodies`]: test bodies, SSE frames, byte patterns, canned responses;
//! - [`tls`]: the test CA, rustls configs, scratch directories;
//! - [`upstream`]: the mock upstream, a silent listener, free ports;
//! - [`streams`]: finite and endless SSE upstreams, [`Stops`];
//! - [`raw`]: raw TCP upstreams ([`RawUpstream`], [`RawOrigin`]);
//! - [`faulty`]: a model API upstream that fails on request
//!   ([`FaultyUpstream`]), for failover;
//! - [`forwarder`]: a TCP forwarder that cuts its first connection;
//! - [`node`]: the npm packages of `tests/interop`, installed on first use;
//! - [`groups`]: route files with endpoint groups, and a relay from one;
//! - [`relay`]: the relay in-process (plain, h2c route, logged) and as the
//!   real binary;
//! - [`access_log`]: the captured access log;
//! - [`client`]: HTTP/1.1, h2c and TLS clients, raw exchanges;
//! - [`outcome`]: one request with its whole outcome, error-shape checks;
//! - [`metrics`]: `/metrics` fetch and Prometheus text lookup;
//! - [`redis`]: a real `redis-server` on a loopback port (cluster mode).
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

/// `return Err(...)` unless `cond` holds: for helpers that report a
/// failure as a `Result<_, String>` instead of panicking.
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if let false = $cond {
            return Err(format!($($arg)+));
        }
    };
}

// The modules come after the macro: `ensure!` is in scope textually.
mod access_log;
mod bodies;
mod client;
mod faulty;
mod forwarder;
mod groups;
mod metrics;
mod node;
mod outcome;
mod raw;
mod redis;
mod relay;
mod streams;
mod tls;
mod upstream;

pub use access_log::*;
pub use bodies::*;
pub use client::*;
#[allow(unused_imports)]
pub use faulty::*;
#[allow(unused_imports)]
pub use forwarder::*;
#[allow(unused_imports)]
pub use groups::*;
pub use metrics::*;
#[allow(unused_imports)]
pub use node::*;
#[allow(unused_imports)] // in files that use none of it
pub use outcome::*;
#[allow(unused_imports)]
pub use raw::*;
#[allow(unused_imports)]
pub use redis::*;
pub use relay::*;
#[allow(unused_imports)]
pub use streams::*;
pub use tls::*;
pub use upstream::*;

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;

/// Body type used by the mock upstream's answers and the test clients.
pub type TestBody = BoxBody<Bytes, std::io::Error>;

/// Upper bound for one whole test; a hang fails instead of blocking.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `f` with [`TEST_TIMEOUT`].
pub async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("test timed out")
}

/// Polls `cond` every 10 ms until it holds; panics with `what` after `limit`.
pub async fn eventually(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
