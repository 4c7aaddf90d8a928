//! Failover across a route's endpoint groups, over real sockets, against
//! [`FaultyUpstream`]s (`tests/support/faulty.rs`).
//!
//! What is held (issue 15): before the first event reaches the client the
//! relay moves on to the next healthy endpoint of the group, then to the
//! next group, on connect failures, resets and closes before any response
//! byte (`retry_on_reset`), 429, 500, 502, 503, 504, 529 and its three
//! deadlines (first byte, first event, a stall); 400/401/403/404/422 pass
//! through, except a context-window overflow, which goes to the
//! `context_fallback` group when there is one. Once an event has reached
//! the client nothing is retried and the stream ends honestly. The client
//! sees only the serving endpoint's status and bytes; the request's
//! `model` and credential are the endpoint's. A circuit breaker ejects
//! failing endpoints and probes them back; streams are balanced by least
//! outstanding requests (two random choices, weights).
//!
//! Modules: `triggers` (each reason to fail over, each answer that passes
//! through, order, limits, timeouts, leaks), `endpoints` (model rewrite,
//! credentials, access log and metrics), `circuit` (ejection, probes, all
//! endpoints open), `balance`, `continuation` (issue 16: an answer cut
//! after its first event continued on another endpoint, in the same client
//! stream), and `mock` (the faulty upstream itself, without failover:
//! these pass on any relay).
//!
//! Names the runtime may still settle differently (access-log fields, the
//! failover metric, failure classes) live in one place each, in the
//! "names" section below.
// Test code: an unwrap is an assertion, and helpers are `pub` for the
// files that share them.
#![allow(clippy::unwrap_used, unreachable_pub)]

#[macro_use]
#[path = "../support/mod.rs"]
mod support;

mod balance;
mod circuit;
mod continuation;
mod endpoints;
mod mock;
mod triggers;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use http::Request;
use serde_json::Value;
use support::*;

// ================================================================ names

/// Failovers, labelled `{route, from, to, reason}`: one per move from the
/// endpoint `from` to the endpoint `to`.
pub const FAILOVERS: &str = "sse_edge_failovers_total";

/// Access log: the name of the endpoint that served the request.
pub fn served_by(line: &Value) -> Option<&str> {
    line["endpoint"].as_str()
}

/// Access log: the model the serving endpoint was asked for.
pub fn served_model(line: &Value) -> Option<&str> {
    line["model"].as_str()
}

/// Access log: attempts made, the serving one included.
pub fn attempts(line: &Value) -> Option<u64> {
    line["upstream_attempts"].as_u64()
}

/// Access log: the failed attempts in order, as (endpoint, class).
pub fn failed_attempts(line: &Value) -> Vec<(String, String)> {
    let Some(list) = line["failed_attempts"].as_array() else {
        return Vec::new();
    };
    list.iter()
        .map(|a| {
            let s = |k: &str| a[k].as_str().unwrap_or_default().to_owned();
            (s("endpoint"), s("class"))
        })
        .collect()
}

/// The failure class (access log `failed_attempts`, metric `reason`) a
/// fault of [`FaultyUpstream`]'s vocabulary (or `connect`) is counted as.
pub fn class_of(fault: &str) -> String {
    let name = fault.split([':', '=']).next().unwrap_or_default();
    match name {
        "connect" => "connect".to_owned(),
        "reset" | "close" | "close-after-head-read" => "reset".to_owned(),
        "silent" | "slow-first" => "first_byte_timeout".to_owned(),
        "head-then-silent" | "comments-only" => "first_event_timeout".to_owned(),
        "partial-then-silent" => "read_timeout".to_owned(),
        "context" => "context_length".to_owned(),
        // 429, 500, 502, 503, 504, 529: the status.
        status => status.to_owned(),
    }
}

/// The count of failovers `from` -> `to` for `reason` in `/metrics` text.
pub fn failovers(m: &str, from: &str, to: &str, reason: &str) -> f64 {
    let labels = [
        ("route", ROUTE),
        ("from", from),
        ("to", to),
        ("reason", reason),
    ];
    metric_or_zero(m, FAILOVERS, &labels)
}

/// Every failover counted, whatever its labels.
pub fn all_failovers(m: &str) -> f64 {
    metric_sum(m, FAILOVERS, &[])
}

// ================================================================ requests

pub const CHAT: &str = "/v1/chat/completions";
pub const MESSAGES: &str = "/v1/messages";

/// A request body for `path` (chat or messages) with `model`.
pub fn body(path: &str, model: &str, stream: bool) -> String {
    if path == MESSAGES {
        format!(
            r#"{{"model":"{model}","max_tokens":64,"stream":{stream},"messages":[{{"role":"user","content":"hi"}}]}}"#
        )
    } else {
        format!(
            r#"{{"model":"{model}","stream":{stream},"messages":[{{"role":"user","content":"hi"}}]}}"#
        )
    }
}

/// A streaming request for `path` with `model`.
pub fn stream_req(path: &str, model: &str) -> Request<TestBody> {
    post(path, body(path, model, true))
}

/// `req` on a fresh connection, read to its end (bounded at 20 s).
pub async fn ask(addr: SocketAddr, req: Request<TestBody>) -> Outcome {
    tokio::time::timeout(Duration::from_secs(20), send(addr, req))
        .await
        .expect("the request ended within 20 s")
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Who answered, by the upstream's `x-served-by`.
pub fn served(r: &Outcome) -> Option<&str> {
    r.header("x-served-by")
}

/// `r` is `up`'s whole healthy stream for a request of `path` carrying
/// `model` upstream, byte for byte.
#[track_caller]
pub fn assert_served(r: &Outcome, up: &FaultyUpstream, model: &str, path: &str) {
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(served(r), Some(up.name.as_str()), "{:?}", r.headers);
    assert!(r.err.is_none(), "stream failed: {:?}", r.err);
    let want = healthy_stream(&up.name, model, path, false);
    assert_same(&r.body, want.as_bytes(), "the serving endpoint's stream");
}

/// `r` is the answer `up`'s status fault `fault` gives, unchanged.
#[track_caller]
pub fn assert_passed_through(r: &Outcome, up: &FaultyUpstream, fault: &str, path: &str) {
    let (status, body) = fault_answer(fault, path).expect("a status fault");
    assert_eq!(r.status, status, "{fault}: {}", r.text());
    assert_eq!(
        served(r),
        Some(up.name.as_str()),
        "{fault}: {:?}",
        r.headers
    );
    assert_same(&r.body, body.as_bytes(), fault);
}

/// A deadline ran out and nothing was left to try: a relay-made `504`
/// (before anything was sent) or a `200` stream ending in the error event,
/// both saying `upstream_timeout`.
pub fn timed_out(r: &Outcome) -> Result<(), String> {
    if r.status == 200 {
        expect_error_event(r, "upstream_timeout")
    } else {
        expect_error(r, 504, "upstream_timeout")
    }
}

/// The access-log line of the request to `path`.
pub async fn log_line(log: &mut CapturedLog, path: &str) -> Value {
    log.find(&format!("for {path}"), |v| v["path"] == path)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A faulty instance as an endpoint named after it.
pub fn ep(up: &FaultyUpstream) -> Endpoint {
    Endpoint::from(up)
}

/// Runs `f`, failing after `secs` seconds instead of hanging.
pub async fn limit<F: Future>(secs: u64, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("test hung: no result within {secs} s"))
}

/// Waits (up to 5 s) until the relay holds no request and no stream, and
/// `ups` have no answer in progress (failed attempts were let go of).
pub async fn at_rest(admin: SocketAddr, ups: &[&FaultyUpstream]) {
    let mut last = String::new();
    for _ in 0..100 {
        let m = metrics(admin).await;
        let busy: Vec<String> = ["sse_edge_requests_in_flight", "sse_edge_active_streams"]
            .into_iter()
            .map(|g| (g, metric_or_zero(&m, g, &[])))
            .filter(|(_, v)| *v != 0.0)
            .map(|(g, v)| format!("{g} {v}"))
            .chain(
                ups.iter()
                    .filter(|u| u.open_answers() != 0)
                    .map(|u| format!("{} answers still open at {}", u.open_answers(), u.name)),
            )
            .collect();
        if busy.is_empty() {
            return;
        }
        last = busy.join(", ");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not at rest 5 s after the requests: {last}");
}
