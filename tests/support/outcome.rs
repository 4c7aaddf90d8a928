//! One request with its whole outcome ([`Outcome`]: the response with the
//! body read to its end or its error, and the time taken), and checks of
//! relay-made errors that report instead of panicking: the dialect's JSON
//! error answer and the error event that ends a stream.

use std::net::SocketAddr;
use std::ops::Deref;
use std::time::{Duration, Instant};

use http::{HeaderMap, Request};
use serde_json::Value;
use sse_edge::internals::whatwg;

use super::{Client, Resp, TestBody, joined, read_frames};

/// A whole response as the client saw it: the [`Resp`] with the body as
/// far as it came, the error that ended the body early, and the time from
/// connecting to the body's end.
pub struct Outcome {
    pub resp: Resp,
    pub err: Option<String>,
    pub took: Duration,
}

impl Deref for Outcome {
    type Target = Resp;

    fn deref(&self) -> &Resp {
        &self.resp
    }
}

/// One request on a fresh HTTP/1.1 connection; the body is read to its end
/// or its error.
pub async fn send(addr: SocketAddr, req: Request<TestBody>) -> Result<Outcome, String> {
    let start = Instant::now();
    send_on(Client::h1(addr).await, start, req).await
}

/// [`send`] on a fresh h2c connection.
pub async fn send_h2(addr: SocketAddr, req: Request<TestBody>) -> Result<Outcome, String> {
    let start = Instant::now();
    send_on(Client::h2(addr).await, start, req).await
}

async fn send_on(mut c: Client, start: Instant, req: Request<TestBody>) -> Result<Outcome, String> {
    let proto = if c.is_h2() { "h2 " } else { "" };
    let res = c.send(req).await.map_err(|e| format!("{proto}send: {e}"))?;
    let (parts, body) = res.into_parts();
    let (frames, err) = read_frames(body).await;
    Ok(Outcome {
        resp: Resp {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            body: joined(&frames).into(),
        },
        err: err.map(|e| e.to_string()),
        took: start.elapsed(),
    })
}

/// Checks a relay-made error answer: status, `sse-edge-error`, and the
/// dialect's JSON shape (OpenAI unless the body is Anthropic-shaped).
pub fn dialect_error(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    code: &str,
) -> Result<(), String> {
    let text = String::from_utf8_lossy(body);
    let got = headers.get("sse-edge-error").and_then(|v| v.to_str().ok());
    ensure!(
        got == Some(code),
        "sse-edge-error {got:?}, want {code:?} (status {status}): {text}"
    );
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("error body not JSON ({e}): {text}"))?;
    if v["type"] == "error" {
        ensure!(
            v["error"]["type"].is_string() && v["error"]["message"].is_string(),
            "not the Anthropic error shape: {v}"
        );
    } else {
        ensure!(
            v["error"]["code"] == code
                && v["error"]["message"].is_string()
                && v["error"]["type"].is_string(),
            "not the OpenAI error shape with code {code}: {v}"
        );
    }
    Ok(())
}

/// [`dialect_error`] on an [`Outcome`], which must have `status`.
pub fn expect_error(r: &Outcome, status: u16, code: &str) -> Result<(), String> {
    ensure!(
        r.status == status,
        "status {} (want {status}): {}",
        r.status.as_u16(),
        r.text()
    );
    dialect_error(r.status.as_u16(), &r.headers, &r.body, code)
}

/// The code of the stream's last event if it is an error event (OpenAI
/// chat shape `data: {"error":{...}}`, or `event: error`).
pub fn error_event_code(body: &[u8]) -> Option<String> {
    let events = whatwg::parse(body);
    let last = events.last()?;
    let v: Value = serde_json::from_str(&last.data).ok()?;
    v["error"]["code"]
        .as_str()
        .or_else(|| v["error"]["type"].as_str())
        .map(str::to_owned)
}

/// A `200` stream that ends cleanly in an error event with `code`, and
/// without `[DONE]`.
pub fn expect_error_event(r: &Outcome, code: &str) -> Result<(), String> {
    ensure!(
        r.status == 200,
        "status {}: {}",
        r.status.as_u16(),
        r.text()
    );
    ensure!(
        r.err.is_none(),
        "the stream should end cleanly after its error event, got {:?}",
        r.err
    );
    let got = error_event_code(&r.body);
    ensure!(
        got.as_deref() == Some(code),
        "last event's error code {got:?}, want {code:?}: {:?}",
        r.text()
    );
    ensure!(
        !r.text().contains("[DONE]"),
        "an error stream must not carry [DONE]: {:?}",
        r.text()
    );
    Ok(())
}
