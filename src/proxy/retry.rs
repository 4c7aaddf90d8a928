//! Sending a streaming request, retrying while no upstream byte has been
//! forwarded.
//!
//! Connect failures and the statuses model APIs use for "busy, try again"
//! (429, 500, 502, 503, 504, 529) are retried with exponential backoff and
//! jitter, honouring `retry-after-ms` / `Retry-After` (seconds), within
//! `retry_attempts` retries and a `retry_budget` of total waiting. A wait
//! that would exceed the budget is not started: the last answer stands and
//! reaches the client (as its real status, or as an error event after an
//! early commit). Retried requests are re-sent from the buffered body, so
//! nothing is read from the client twice.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use tokio::time::Instant;

use crate::config::StreamConfig;
use crate::error::{Error, Kind};
use crate::upstream::RequestBody;
use crate::upstream::{Origin, Sent};

/// The parts of a request needed to send it again.
#[derive(Clone)]
pub(super) struct Head {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
}

impl Head {
    pub(super) fn request(&self, body: RequestBody) -> Request<RequestBody> {
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        req
    }
}

/// Retry limits for one request.
#[derive(Clone, Copy)]
pub(super) struct Policy {
    pub retries: u32,
    pub budget: Duration,
    pub backoff: Duration,
    pub first_byte_timeout: Option<Duration>,
}

impl Policy {
    pub(super) fn new(stream: &StreamConfig, first_byte_timeout: Option<Duration>) -> Self {
        Self {
            retries: stream.retry_attempts,
            budget: stream.retry_budget,
            backoff: stream.retry_backoff,
            first_byte_timeout,
        }
    }
}

/// Sends once, under the first-byte deadline.
pub(super) async fn send_once(
    origin: &Arc<Origin>,
    req: Request<RequestBody>,
    first_byte: Option<Duration>,
) -> Result<Sent, Error> {
    let send = origin.send(req);
    let res = match first_byte {
        Some(limit) => tokio::time::timeout(limit, send)
            .await
            .unwrap_or_else(|_| Err(Error::new(Kind::FirstByteTimeout))),
        None => send.await,
    };
    res.map_err(|e| match e.attempts() {
        0 => e.with_attempts(1),
        _ => e,
    })
}

/// Sends `head` + `body`, retrying as the module describes.
pub(super) async fn send(
    origin: Arc<Origin>,
    head: Head,
    body: Bytes,
    policy: Policy,
) -> Result<Sent, Error> {
    let started = Instant::now();
    let mut attempts = 0;
    let mut retry = 0;
    loop {
        let res = send_once(
            &origin,
            head.request(RequestBody::buffered(body.clone())),
            policy.first_byte_timeout,
        )
        .await;
        // The pool's own retry on a new connection counts too.
        attempts += match &res {
            Ok(sent) => sent.attempts,
            Err(e) => e.attempts().max(1),
        };
        let Some(wait) = retry_wait(&res, retry, policy.backoff) else {
            return with_attempts(res, attempts);
        };
        if retry >= policy.retries || started.elapsed() + wait > policy.budget {
            return with_attempts(res, attempts);
        }
        tracing::info!(
            "upstream {}; retry {} in {wait:?}",
            describe(&res),
            retry + 1
        );
        drop(res); // an unread retryable answer: its connection is closed
        tokio::time::sleep(wait).await;
        retry += 1;
    }
}

fn with_attempts(res: Result<Sent, Error>, attempts: u32) -> Result<Sent, Error> {
    match res {
        Ok(mut sent) => {
            sent.attempts = attempts;
            Ok(sent)
        }
        Err(e) => Err(e.with_attempts(attempts)),
    }
}

fn describe(res: &Result<Sent, Error>) -> String {
    match res {
        Ok(sent) => format!("answered {}", sent.response.status()),
        Err(e) => e.to_string(),
    }
}

/// How long to wait before retrying `res`, or `None` if it is final.
fn retry_wait(res: &Result<Sent, Error>, retry: u32, backoff: Duration) -> Option<Duration> {
    match res {
        Err(e) if matches!(e.kind(), Kind::Connect | Kind::ConnectTimeout) => {
            Some(jittered(backoff, retry))
        }
        Err(_) => None,
        Ok(sent) if retryable(sent.response.status()) => {
            Some(retry_after(sent.response.headers()).unwrap_or_else(|| jittered(backoff, retry)))
        }
        Ok(_) => None,
    }
}

fn retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504 | 529)
}

/// `retry-after-ms` (OpenAI) or `Retry-After` in seconds.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok()) {
        if ms.is_finite() && ms >= 0.0 {
            return Some(Duration::from_secs_f64(ms / 1000.0));
        }
    }
    let secs = text("retry-after")?.trim().parse::<u64>().ok()?;
    Some(Duration::from_secs(secs))
}

/// `backoff * 2^retry`, capped at 8x, scaled by a jitter in [0.5, 1.0].
fn jittered(backoff: Duration, retry: u32) -> Duration {
    let base = backoff.saturating_mul(1 << retry.min(3));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    // A cheap mix of the clock's low bits; this spreads retries, it is not
    // randomness anyone relies on.
    let mixed = nanos.wrapping_mul(0x9E37_79B9) >> 16;
    let factor = 0.5 + f64::from(mixed % 1024) / 2048.0;
    base.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert("retry-after-ms", "1500".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(1500)));
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn backoff_doubles_caps_and_jitters() {
        let b = Duration::from_millis(100);
        for retry in 0..6 {
            let w = jittered(b, retry);
            let full = b * (1 << retry.min(3));
            assert!(
                w >= full / 2 && w <= full,
                "retry {retry}: {w:?} vs {full:?}"
            );
        }
        assert!(retryable(StatusCode::TOO_MANY_REQUESTS));
        assert!(retryable(StatusCode::from_u16(529).unwrap()));
        assert!(!retryable(StatusCode::BAD_REQUEST));
    }
}
