//! The simulated slow model API: a hyper HTTP/1.1 server on 127.0.0.1 that
//! answers like OpenAI chat completions (`POST /v1/chat/completions`) and
//! Anthropic messages (`POST /v1/messages`), but slowly, the way reasoning
//! models and busy upstreams do.
//!
//! Timeline of a streaming answer: nothing for `head_delay` (not even
//! headers), then the headers and the first event (OpenAI's role chunk,
//! Anthropic's `message_start`), nothing for `pause`, then one token per
//! event `token_gap` apart, then the usage (OpenAI: a usage-only chunk when
//! `stream_options.include_usage` is set; Anthropic: `message_delta` with
//! the cumulative `output_tokens`) and the dialect's last event. A
//! non-streaming answer arrives whole after the same total time.
//!
//! Tokens are words: the prompt's token count is the number of words in the
//! request's messages, the answer's the number of words it streams.
//! Dropping a response body (the client left) stops its timeline, since
//! every frame is produced only when the body is polled.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use simd_json::BorrowedValue;
use simd_json::prelude::*;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Sleep;

use super::script::{self, Dialect, Reply};
use crate::shutdown::Shutdown;

/// Largest request body the simulated API reads.
const MAX_REQUEST: usize = 1 << 20;

/// How slowly the simulated API answers.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timing {
    /// Silence before the response headers.
    pub head_delay: Duration,
    /// Silence after the first event, before the first token.
    pub pause: Duration,
    /// Time between two tokens.
    pub token_gap: Duration,
}

/// The running simulated API.
pub(super) struct SimulatedApi {
    pub addr: SocketAddr,
    stop: Shutdown,
    task: JoinHandle<()>,
}

impl SimulatedApi {
    /// Binds 127.0.0.1 on an ephemeral port and starts serving.
    pub(super) async fn start(timing: Timing) -> io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let stop = Shutdown::new();
        let task = tokio::spawn(serve(listener, Arc::new(timing), stop.clone()));
        Ok(Self { addr, stop, task })
    }

    /// Closes the listener and every connection, and waits for them.
    pub(super) async fn stop(self) {
        self.stop.signal();
        if let Err(e) = self.task.await {
            tracing::warn!("simulated API task failed: {e}");
        }
    }
}

async fn serve(listener: TcpListener, timing: Arc<Timing>, stop: Shutdown) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let timing = timing.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req| answer(req, timing.clone()));
                    let conn = http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(Duration::from_secs(30))
                        .serve_connection(TokioIo::new(stream), svc);
                    let _ = conn.await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            () = stop.wait() => break,
        }
    }
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

/// What a request asked for.
struct Ask {
    stream: bool,
    include_usage: bool,
    model: String,
    prompt_tokens: u64,
}

async fn answer(
    req: Request<Incoming>,
    timing: Arc<Timing>,
) -> Result<Response<Paced>, Infallible> {
    let dialect = match req.uri().path() {
        "/v1/chat/completions" => Dialect::OpenAi,
        "/v1/messages" => Dialect::Anthropic,
        other => {
            let why = format!(
                "no such endpoint {other}: try POST /v1/chat/completions or POST /v1/messages"
            );
            return Ok(error(Dialect::OpenAi, StatusCode::NOT_FOUND, &why));
        }
    };
    if req.method() != Method::POST {
        return Ok(error(dialect, StatusCode::METHOD_NOT_ALLOWED, "use POST"));
    }
    let body = match Limited::new(req.into_body(), MAX_REQUEST).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            let why = "the request body could not be read (at most 1 MiB)";
            return Ok(error(dialect, StatusCode::BAD_REQUEST, why));
        }
    };
    let Some(ask) = read_ask(&body) else {
        let why = "the request body is not a JSON object with a messages array";
        return Ok(error(dialect, StatusCode::BAD_REQUEST, why));
    };
    let reply = Reply::new(dialect, &ask.model, ask.prompt_tokens, next_id());
    if ask.stream {
        tokio::time::sleep(timing.head_delay).await;
        Ok(sse(stream_frames(&reply, ask.include_usage, &timing)))
    } else {
        let tokens = u32::try_from(reply.token_count()).unwrap_or(u32::MAX);
        let thinking = timing.head_delay + timing.pause + timing.token_gap * tokens;
        tokio::time::sleep(thinking).await;
        Ok(json(StatusCode::OK, reply.whole(unix_now())))
    }
}

fn read_ask(body: &[u8]) -> Option<Ask> {
    let mut copy = body.to_vec();
    let value = simd_json::to_borrowed_value(&mut copy).ok()?;
    let messages = value.get("messages")?.as_array()?;
    let mut prompt_tokens: u64 = messages.iter().map(message_words).sum();
    // Anthropic takes the system prompt beside the messages.
    prompt_tokens += value.get("system").map_or(0, content_words);
    Some(Ask {
        stream: value.get("stream").and_then(|s| s.as_bool()) == Some(true),
        include_usage: value
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(|i| i.as_bool())
            == Some(true),
        model: value
            .get("model")
            .and_then(|m| m.as_str())
            .unwrap_or(script::DEFAULT_MODEL)
            .to_owned(),
        prompt_tokens,
    })
}

fn message_words(message: &BorrowedValue<'_>) -> u64 {
    message.get("content").map_or(0, content_words)
}

/// Words of a content value: a string, or an array of `{"text": ...}` parts.
fn content_words(content: &BorrowedValue<'_>) -> u64 {
    let words = |s: &str| s.split_whitespace().count() as u64;
    if let Some(text) = content.as_str() {
        return words(text);
    }
    content.as_array().map_or(0, |parts| {
        parts
            .iter()
            .filter_map(|p| p.get("text").and_then(|t| t.as_str()))
            .map(words)
            .sum()
    })
}

fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The frames of a streaming answer with the silence before each.
fn stream_frames(reply: &Reply, include_usage: bool, timing: &Timing) -> Paced {
    let created = unix_now();
    let mut frames = VecDeque::new();
    frames.push_back((Duration::ZERO, reply.opening(created)));
    for (i, token) in reply.token_events(created).into_iter().enumerate() {
        let delay = if i == 0 {
            timing.pause
        } else {
            timing.token_gap
        };
        frames.push_back((delay, token));
    }
    for closing in reply.closing(created, include_usage) {
        frames.push_back((timing.token_gap, closing));
    }
    Paced::new(frames)
}

/// Seconds since the Unix epoch (OpenAI's `created`).
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn sse(body: Paced) -> Response<Paced> {
    let mut res = Response::new(body);
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

fn json(status: StatusCode, body: String) -> Response<Paced> {
    let mut res = Response::new(Paced::new(VecDeque::from([(
        Duration::ZERO,
        Bytes::from(body),
    )])));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// An error answer in the dialect's JSON shape.
fn error(dialect: Dialect, status: StatusCode, message: &str) -> Response<Paced> {
    json(status, script::error_body(dialect, status, message))
}

/// A response body that yields each frame after the silence before it.
pub(super) struct Paced {
    frames: VecDeque<(Duration, Bytes)>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Paced {
    fn new(frames: VecDeque<(Duration, Bytes)>) -> Self {
        Self {
            frames,
            sleep: None,
        }
    }
}

impl Body for Paced {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        let Some(&(delay, _)) = this.frames.front() else {
            return Poll::Ready(None);
        };
        if !delay.is_zero() {
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(delay)));
            ready!(sleep.as_mut().poll(cx));
            this.sleep = None;
        }
        Poll::Ready(this.frames.pop_front().map(|(_, b)| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
    }
}
