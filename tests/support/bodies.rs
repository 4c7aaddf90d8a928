//! Test bodies and canned responses: full, empty, channel-fed and paced
//! streamed bodies, SSE event frames, deterministic byte patterns, and
//! response builders for the mock upstream.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame};
use tokio::sync::mpsc;

use super::TestBody;

pub fn full(b: impl Into<Bytes>) -> TestBody {
    Full::new(b.into())
        .map_err(|e: Infallible| match e {})
        .boxed()
}

pub fn empty() -> TestBody {
    Empty::<Bytes>::new()
        .map_err(|e: Infallible| match e {})
        .boxed()
}

/// A body fed by a channel; it ends when the sender is dropped. Sending an
/// `Err` fails the body (the peer sees the stream cut).
pub fn channel_body() -> (mpsc::Sender<Result<Bytes, std::io::Error>>, TestBody) {
    let (tx, rx) = mpsc::channel(64);
    (tx, ChannelBody { rx }.boxed())
}

struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|item| item.map(|r| r.map(Frame::data)))
    }
}

/// A streamed body: `frames` sent one by one with `gap` before each but the
/// first. The instant each frame was handed over is pushed to `sent`.
pub fn stream_frames(
    frames: Vec<Bytes>,
    gap: Duration,
    sent: Option<Arc<Mutex<Vec<Instant>>>>,
) -> TestBody {
    let (tx, body) = channel_body();
    tokio::spawn(async move {
        for (i, f) in frames.into_iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(gap).await;
            }
            if tx.send(Ok(f)).await.is_err() {
                return;
            }
            if let Some(log) = &sent {
                log.lock().unwrap().push(Instant::now());
            }
        }
    });
    body
}

/// `n` SSE events, one frame each, in the OpenAI chat-completions shape:
/// `n - 1` chunks `data: {"i":k,...}` and a final `data: [DONE]`, so the
/// stream is complete in every dialect's eyes.
pub fn sse_events(n: usize) -> Vec<Bytes> {
    (0..n)
        .map(|i| {
            if i + 1 == n {
                Bytes::from_static(b"data: [DONE]\n\n")
            } else {
                Bytes::from(format!(
                    "data: {{\"i\":{i},\"choices\":[{{\"delta\":{{\"content\":\"token-{i} é✓\"}}}}]}}\n\n"
                ))
            }
        })
        .collect()
}

/// Asserts two byte strings are equal, showing them as text when not.
#[track_caller]
pub fn assert_same(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        panic!(
            "{what}: {} bytes differ from the expected {} bytes\n got: {:?}\nwant: {:?}",
            got.len(),
            want.len(),
            String::from_utf8_lossy(&got[..got.len().min(4096)]),
            String::from_utf8_lossy(&want[..want.len().min(4096)]),
        );
    }
}

pub fn concat(frames: &[Bytes]) -> Vec<u8> {
    frames.iter().flat_map(|f| f.iter().copied()).collect()
}

/// Deterministic pseudo-random bytes.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(seed);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

// ---------------------------------------------------------------- responses

pub fn response(status: u16, headers: &[(&str, &str)], body: TestBody) -> Response<TestBody> {
    let mut res = Response::new(body);
    *res.status_mut() = StatusCode::from_u16(status).unwrap();
    for (k, v) in headers {
        res.headers_mut().append(
            header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    res
}

pub fn json_response(status: u16, body: impl Into<Bytes>) -> Response<TestBody> {
    response(status, &[("content-type", "application/json")], full(body))
}

pub fn sse_response(body: TestBody) -> Response<TestBody> {
    response(
        200,
        &[
            ("content-type", "text/event-stream"),
            ("cache-control", "no-cache"),
        ],
        body,
    )
}
