//! What an attempt reads of an answer before the loop decides on it: a
//! `2xx` event stream up to its first event, any other `2xx` up to its
//! first frame, an error body to classify it; and what becomes of an
//! answer the loop refuses (its body read in the background, so its
//! connection is kept).

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Frame;
use tokio::time::Instant;

use super::Tried;
use crate::config::Timeouts;
use crate::error::{Error, Kind, UpstreamClass};
use crate::sse::Scanner;
use crate::upstream::{Failure, Sent};

/// Most bytes read ahead of the first event (upstream comments) before the
/// answer counts as served anyway, and most bytes of an error body read to
/// classify it.
const READ_AHEAD_CAP: usize = 64 * 1024;

/// Most of a refused answer's body read to keep its connection.
const RECYCLE_CAP: usize = 64 * 1024;
/// The longest a refused answer's body is waited for.
const RECYCLE_TIME: Duration = Duration::from_secs(1);

/// An answer the relay will not use (a status it fails over on): its
/// body, an error message, is read to its end in a task of its own, so
/// that its connection goes back to the pool rather than being closed
/// (HTTP/1.1 can reuse a connection only after a whole response). Bodies
/// over [`RECYCLE_CAP`] or slower than [`RECYCLE_TIME`] are dropped, and
/// their connection with them. The next attempt does not wait for this.
pub(super) fn recycle(tried: Tried) {
    let Ok(mut sent) = tried.result else {
        return; // nothing came, or a broken stream: nothing to keep
    };
    // The attempt is over for balancing; only its connection is pending.
    sent.lease.unload();
    tokio::spawn(async move {
        let deadline = Instant::now() + RECYCLE_TIME;
        let body = sent.response.body_mut();
        let mut read = 0;
        while read <= RECYCLE_CAP {
            match tokio::time::timeout_at(deadline, body.frame()).await {
                Ok(Some(Ok(frame))) => read += frame.data_ref().map_or(0, Bytes::len),
                // The end (the codec has checked the connection in), an
                // error, or too slow: either way the exchange is over.
                _ => break,
            }
        }
        sent.lease.release();
    });
}

/// Reads a `2xx` event stream up to its first event (an event with data;
/// comments and Anthropic's `ping` do not count) and puts what it read back
/// in front of the body.
pub(super) async fn first_event(sent: &mut Sent, t: &Timeouts) -> Result<(), (Failure, Error)> {
    let deadline = t.first_event.map(|d| Instant::now() + d);
    let mut scanner = Scanner::new(READ_AHEAD_CAP);
    let mut frames = VecDeque::new();
    let mut read = 0usize;
    let body = sent.response.body_mut();
    let outcome = loop {
        let stall = t.read.map(|d| (Instant::now() + d, Failure::Stall));
        let first = deadline.map(|d| (d, Failure::FirstEvent));
        let limit = match (stall, first) {
            (Some(a), Some(b)) => Some(if b.0 <= a.0 { b } else { a }),
            (a, b) => a.or(b),
        };
        let next = match limit {
            Some((at, why)) => match tokio::time::timeout_at(at, body.frame()).await {
                Ok(next) => next,
                Err(_) => break Err(timeout_failure(why, t)),
            },
            None => body.frame().await,
        };
        let frame = match next {
            None => break Err(ended_early()),
            Some(Err(e)) => {
                let class = e.upstream_class().unwrap_or(UpstreamClass::Reset);
                break Err((Failure::Upstream(class), e));
            }
            Some(Ok(frame)) => frame,
        };
        let mut found = false;
        if let Some(data) = frame.data_ref() {
            read += data.len();
            let mut on_event = |ev: &crate::sse::Event| {
                let p = ev.parse();
                found |= p.data.is_some() && p.event.as_deref() != Some("ping");
            };
            // An overflow (an event past the cap) counts as an event.
            found |= scanner.feed(data.clone(), &mut on_event).is_err();
        }
        frames.push_back(frame);
        if found || read > READ_AHEAD_CAP {
            break Ok(());
        }
    };
    body.prime(frames);
    outcome
}

fn timeout_failure(why: Failure, t: &Timeouts) -> (Failure, Error) {
    let e = match why {
        Failure::FirstEvent => Error::with_cause(
            Kind::FirstEventTimeout,
            format!(
                "no event within {:?} (first_event_timeout)",
                t.first_event.unwrap_or_default()
            ),
        ),
        _ => Error::with_cause(
            Kind::UpstreamReadTimeout,
            format!(
                "upstream sent nothing for {:?} (read_timeout)",
                t.read.unwrap_or_default()
            ),
        ),
    };
    (why, e)
}

fn ended_early() -> (Failure, Error) {
    let e = Error::with_cause(
        Kind::UpstreamReset,
        "upstream ended the event stream before its first event",
    );
    (Failure::Upstream(UpstreamClass::Truncated), e)
}

/// Reads the first frame of a `2xx` body that is not an event stream, so a
/// body that fails at once is a failed attempt, not a cut answer.
pub(super) async fn first_frame(
    sent: &mut Sent,
    read: Option<Duration>,
) -> Result<(), (Failure, Error)> {
    let body = sent.response.body_mut();
    let next = match read {
        Some(limit) => match tokio::time::timeout(limit, body.frame()).await {
            Ok(next) => next,
            Err(_) => {
                let e = Error::with_cause(
                    Kind::UpstreamReadTimeout,
                    format!("upstream sent no body within {limit:?} (read_timeout)"),
                );
                return Err((Failure::Stall, e));
            }
        },
        None => body.frame().await,
    };
    let front: VecDeque<Frame<Bytes>> = match next {
        None => VecDeque::new(),
        Some(Err(e)) => {
            let class = e.upstream_class().unwrap_or(UpstreamClass::Reset);
            return Err((Failure::Upstream(class), e));
        }
        Some(Ok(frame)) => VecDeque::from([frame]),
    };
    body.prime(front);
    Ok(())
}

/// Reads an error body (up to [`READ_AHEAD_CAP`]) to look into it, and
/// puts it back in front of whatever is left. A body that fails or stalls
/// is cut where it failed; the answer still passes through.
pub(super) async fn read_ahead_all(sent: &mut Sent, read: Option<Duration>) -> Bytes {
    let body = sent.response.body_mut();
    let mut frames = VecDeque::new();
    let mut text = BytesMut::new();
    let mut failed = None;
    while text.len() < READ_AHEAD_CAP {
        let next = match read {
            Some(limit) => match tokio::time::timeout(limit, body.frame()).await {
                Ok(next) => next,
                Err(_) => break,
            },
            None => body.frame().await,
        };
        match next {
            None => break,
            Some(Err(e)) => {
                failed = Some(e);
                break;
            }
            Some(Ok(frame)) => {
                if let Some(d) = frame.data_ref() {
                    text.extend_from_slice(d);
                }
                frames.push_back(frame);
            }
        }
    }
    if let Some(e) = failed {
        tracing::debug!("upstream error body failed: {e}");
    }
    body.prime(frames);
    text.freeze()
}
