//! Shared helpers for the integration tests: a scriptable mock upstream
//! (HTTP/1.1, h2c, TLS with ALPN), relay starters (in-process and the real
//! binary), small hyper clients over real sockets, a throwaway CA, and
//! Prometheus text parsing.
//!
//! Every test file includes this with `mod support;` and uses a subset of it;
//! every helper is reachable as `support::NAME` whichever file defines it:
//!
//! - [`bodies`]: test bodies, SSE frames, byte patterns, canned responses;
//! - [`tls`]: the test CA, rustls configs, scratch directories;
//! - [`upstream`]: the mock upstream, a silent listener, free ports;
//! - [`relay`]: the relay in-process and as the real binary;
//! - [`client`]: HTTP/1.1, h2c and TLS clients, raw exchanges;
//! - [`metrics`]: `/metrics` fetch and Prometheus text lookup.
#![allow(dead_code)]

mod bodies;
mod client;
mod metrics;
mod relay;
mod tls;
mod upstream;

pub use bodies::*;
pub use client::*;
pub use metrics::*;
pub use relay::*;
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
