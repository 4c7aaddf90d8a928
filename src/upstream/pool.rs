//! Connections per origin, and the lease a request holds on one.
//!
//! # Ownership
//! - An idle HTTP/1.1 connection is owned by its origin's idle list (LIFO:
//!   the most recently used connection is the warmest and least likely to
//!   have been closed by the upstream).
//! - A checked-out HTTP/1.1 connection is owned by the exchange, then by
//!   the response body ([`super::h1::H1Body`]). When the body has been read
//!   to its end, it checks the connection in ([`h1::CheckIn`], which the
//!   origin hands every exchange), and the origin puts it back on the idle
//!   list. A body dropped before that (client went away, upstream failed)
//!   closes the connection: a half-read response can never be handed to
//!   the next request.
//! - HTTP/2 connections stay in the origin's list while open; a lease only
//!   counts one stream against the connection's limit. Dropping the response
//!   body early makes hyper send RST_STREAM(CANCEL).
//! - The check-in HTTP/1.1 response bodies hold ([`Return`]) refers to
//!   the origin weakly, so a body outliving the pool (at shutdown) just
//!   drops its connection. The HTTP/1.1 code knows nothing of the pool
//!   beyond that interface. Nothing here panics in `Drop`.
//!
//! # Counters and lists
//! Under the state lock: `stats.idle` is the idle list's length; the idle
//! list holds no more than the open HTTP/1.1 connections (`stats.h1_open`),
//! is ordered oldest first (put back and taken at the top: the warmest
//! goes out first, and the surplus ages at the bottom), and its connections
//! hold no read buffer. Debug builds check these wherever they change
//! (`Origin::check`). A connection cannot be put back twice: it is moved
//! in, and nothing else holds it.
//!
//! # How many idle connections
//! HTTP/1.1 carries one exchange per connection, so a load of N concurrent
//! requests needs N connections. The idle list keeps, per origin, up to
//! the most connections that were in use at once over the last
//! `idle_timeout` (between one and two windows of it), and never fewer
//! than `upstream.max_idle_per_origin` nor more than [`IDLE_CEILING`]
//! (unless the configured floor is higher). With a fixed cap below the
//! load's concurrency, every wave of answers that ended together closed
//! the connections above the cap and the next wave opened them again (500
//! requests in flight, a cap of 64: one new connection per five requests).
//! The peak follows the load down: an idle connection still expires after
//! `idle_timeout` (LIFO leaves the surplus at the bottom to age), and a
//! window without checkouts forgets its peak. `max_idle_per_origin = 0`
//! turns HTTP/1.1 pooling off.
//!
//! # Checkout and retry
//! Checkout never hands out a connection known to be dead: closed HTTP/2
//! senders are discarded, idle connections past `idle_timeout` are closed,
//! and an idle HTTP/1.1 connection is polled for a close or stray bytes
//! when it goes back on the idle list and again when it is taken.
//!
//! A race remains, inherent to HTTP/1.1 keep-alive: the upstream closes
//! an idle connection (at its own keep-alive timeout, or just after an
//! answer, without `Connection: close`) while a request is on its way, and
//! the close reaches the relay only after the connection was taken. The
//! request then fails before any byte of an answer: its write fails, or
//! the read meets the close or a reset. Such a request is sent again, once,
//! on a newly opened connection, when all of these hold ([`SendError`]
//! carries each):
//! - the connection was *reused* (a new connection that fails is a real
//!   failure, left to the route's retry policy);
//! - no byte of a response arrived (`answered`): as far as HTTP can tell,
//!   the upstream did not act on the request;
//! - the request can be written again as it was (`request`): no byte of it
//!   went out, or the relay holds its body (JSON POSTs are read first, and
//!   bodiless requests have nothing to read). A streamed body whose first
//!   bytes were written is gone: that request fails, as before.
//!
//! This holds whatever the route's retry settings and whatever the method.
//! A POST whose bytes reached an upstream that then closed without a word
//! may run twice; hyper's client and Pingora retry this case too, and the
//! official OpenAI and Anthropic SDKs retry a reset POST even when it was
//! written whole. The second connection is a new one, not another idle one
//! (what closed the first, a restart or a keep-alive sweep, may have closed
//! them all). On an origin that may speak HTTP/2, the retry goes through
//! the serialized connect, so it may take a stream on a connection opened
//! meanwhile: a burst of retries after a GOAWAY shares one connection.
//! Retries are counted in [`OriginStats::retries`].

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri, Version, header};
use hyper::client::conn::http2;
use tokio::time::Instant;

use super::Body;
use super::RequestBody;
use super::connect::{Connector, Fresh};
use super::h1::head::{STATUS_OUT_OF_RANGE, status_in_range};
use super::h1::{self, H1Conn};
use super::health::Outstanding;
use super::send::SendError;
use crate::config::{UpstreamConfig, UpstreamProtocol};
use crate::error::{Error, Kind};
use crate::shutdown::Shutdown;

type H1 = H1Conn;
type H2 = http2::SendRequest<RequestBody>;

/// The most idle HTTP/1.1 connections an origin keeps because of a past
/// peak (a higher `max_idle_per_origin` still applies). An idle connection
/// costs the relay its socket and a few words (its read buffer is let go)
/// and the upstream a keep-alive slot, for at most `idle_timeout`.
pub(super) const IDLE_CEILING: usize = 4096;

/// Where connections go: scheme, host, port and protocol choice.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OriginKey {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub protocol: UpstreamProtocol,
}

#[derive(Clone, Copy)]
struct Limits {
    idle_timeout: Duration,
    max_idle: usize,
    h2_max_streams: usize,
}

/// All origins, sharing one connector.
pub struct Pool {
    connector: Arc<Connector>,
    limits: Limits,
    origins: Mutex<Vec<Arc<Origin>>>,
}

impl Pool {
    pub fn new(cfg: &UpstreamConfig, stop: Shutdown) -> std::io::Result<Self> {
        Ok(Self {
            connector: Arc::new(Connector::new(cfg, stop)?),
            limits: Limits {
                idle_timeout: cfg.idle_timeout,
                max_idle: cfg.max_idle_per_origin,
                h2_max_streams: cfg.h2_max_streams_per_connection,
            },
            origins: Mutex::new(Vec::new()),
        })
    }

    /// The origin for `key`, created on first use. Called while building
    /// routes, so the request path never looks origins up.
    pub fn origin(&self, key: OriginKey) -> Result<Arc<Origin>, Error> {
        let mut origins = lock(&self.origins);
        if let Some(o) = origins.iter().find(|o| o.key == key) {
            return Ok(o.clone());
        }
        let origin = Origin::new(key, self.connector.clone(), self.limits)?;
        origins.push(origin.clone());
        Ok(origin)
    }

    pub fn origins(&self) -> Vec<Arc<Origin>> {
        lock(&self.origins).clone()
    }

    /// Closes expired idle connections until `stop` fires.
    pub async fn reap_idle(&self, stop: Shutdown) {
        let period = (self.limits.idle_timeout / 2).max(Duration::from_secs(1));
        let mut tick = tokio::time::interval(period);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.wait() => break,
            }
            for origin in self.origins() {
                origin.reap();
            }
        }
        for origin in self.origins() {
            origin.close_idle();
        }
    }
}

/// Pool gauges and counters for one origin.
#[derive(Default, Debug)]
pub struct OriginStats {
    /// Open connections (both protocols).
    pub open: AtomicUsize,
    /// Idle HTTP/1.1 connections.
    pub idle: AtomicUsize,
    /// HTTP/2 streams in flight.
    pub h2_streams: AtomicUsize,
    /// Connections opened.
    pub connects: AtomicU64,
    /// Requests sent on a reused connection.
    pub reuses: AtomicU64,
    /// Requests sent again on a new connection after a reused one failed
    /// before any answer (see the retry contract above).
    pub retries: AtomicU64,
    /// Open HTTP/1.1 connections (idle or in use).
    pub h1_open: AtomicUsize,
}

struct H2Conn {
    tx: H2,
    streams: Arc<AtomicUsize>,
    peer_limit: Arc<AtomicUsize>,
}

#[derive(Default)]
struct State {
    idle: Vec<(H1, Instant)>,
    h2: Vec<H2Conn>,
    /// The origin answered with HTTP/2 before: serialize new connects so a
    /// burst shares one connection instead of opening one each.
    speaks_h2: bool,
    /// The origin answered with HTTP/1.1 over TLS (protocol `auto`): no
    /// need to serialize connects any more.
    speaks_h1: bool,
    /// The last serialized connect that failed: when, why. Requests that
    /// were queued behind it share its fate instead of each waiting out
    /// their own connect timeout in turn.
    failed_connect: Option<(Instant, Kind, Option<String>)>,
    /// HTTP/1.1 connections in use at once, at most, lately: the idle cap.
    peak: Peak,
}

/// The most of something seen at once over the current window and the one
/// before it; a window is `idle_timeout` long.
#[derive(Default)]
struct Peak {
    current: usize,
    previous: usize,
    /// When the current window began (`None` before the first sample).
    since: Option<Instant>,
}

impl Peak {
    /// Starts a new window when the current one is over.
    fn roll(&mut self, now: Instant, window: Duration) {
        let Some(since) = self.since else {
            self.since = Some(now);
            return;
        };
        let age = now.saturating_duration_since(since);
        if age < window {
            return;
        }
        // A window with no sample at all in between forgets both.
        self.previous = if age < window.saturating_mul(2) {
            self.current
        } else {
            0
        };
        self.current = 0;
        self.since = Some(now);
    }

    fn record(&mut self, value: usize, now: Instant, window: Duration) {
        self.roll(now, window);
        self.current = self.current.max(value);
    }

    fn get(&mut self, now: Instant, window: Duration) -> usize {
        self.roll(now, window);
        self.current.max(self.previous)
    }
}

/// One upstream origin and its connections.
pub struct Origin {
    key: OriginKey,
    scheme: Scheme,
    authority: Authority,
    host_header: HeaderValue,
    connector: Arc<Connector>,
    limits: Limits,
    state: Mutex<State>,
    h2_connect: tokio::sync::Mutex<()>,
    stats: Arc<OriginStats>,
    /// Where this origin's HTTP/1.1 bodies return their connections.
    check_in: Arc<dyn h1::CheckIn>,
}

/// An origin's end of its HTTP/1.1 response bodies: a body read to its end
/// hands its connection back through it, to the idle list. It holds the
/// origin weakly, so a body outliving the pool just drops its connection.
struct Return(Weak<Origin>);

impl h1::CheckIn for Return {
    fn check_in(&self, conn: H1Conn) {
        if let Some(origin) = self.0.upgrade() {
            origin.put_idle(conn);
        }
    }
}

enum Checked {
    H1(H1),
    H2(H2, Arc<AtomicUsize>),
}

impl SendError {
    /// The request back (with why it failed) when the contract above lets
    /// it be sent again, or the error that ends it.
    fn into_retry(self) -> Result<(Request<RequestBody>, Error), Error> {
        match self.request {
            Some(req) if self.reused && !self.answered => Ok((req, self.error)),
            _ => Err(self.error),
        }
    }
}

/// A response from the upstream and the lease that must travel with its body.
pub struct Sent {
    pub response: Response<Body>,
    pub lease: Lease,
    /// Times the request was handed to a connection (1 unless retried).
    pub attempts: u32,
}

impl Origin {
    fn new(key: OriginKey, connector: Arc<Connector>, limits: Limits) -> Result<Arc<Self>, Error> {
        let host = if key.host.contains(':') {
            format!("[{}]", key.host)
        } else {
            key.host.clone()
        };
        let default_port = if key.tls { 443 } else { 80 };
        let authority = if key.port == default_port {
            host
        } else {
            format!("{host}:{}", key.port)
        };
        let bad = |e: &dyn std::fmt::Display| {
            Error::with_cause(
                Kind::BadRequest,
                format!("upstream authority {authority:?}: {e}"),
            )
        };
        let parsed: Authority = authority.parse().map_err(|e| bad(&e))?;
        let host_header = HeaderValue::from_str(&authority).map_err(|e| bad(&e))?;
        Ok(Arc::new_cyclic(|me| Self {
            scheme: if key.tls { Scheme::HTTPS } else { Scheme::HTTP },
            authority: parsed,
            host_header,
            key,
            connector,
            limits,
            state: Mutex::new(State::default()),
            h2_connect: tokio::sync::Mutex::new(()),
            stats: Arc::new(OriginStats::default()),
            check_in: Arc::new(Return(me.clone())),
        }))
    }

    pub fn key(&self) -> &OriginKey {
        &self.key
    }

    pub fn stats(&self) -> &OriginStats {
        &self.stats
    }

    /// Sends `req` (origin-form target) and waits for response headers;
    /// sends it once more, on a new connection, when a reused one failed
    /// before any answer (see the retry contract above).
    pub async fn send(self: &Arc<Self>, req: Request<RequestBody>) -> Result<Sent, Error> {
        let (checked, reused) = self.checkout().await?;
        let failed = match self.send_on(checked, reused, req).await {
            Ok((response, lease)) => {
                return Ok(Sent {
                    response,
                    lease,
                    attempts: 1,
                });
            }
            Err(failed) => failed,
        };
        let req = match failed.into_retry() {
            Ok((req, error)) => {
                tracing::debug!(
                    "reused upstream connection failed before any answer: {error}; retrying on a new one"
                );
                req
            }
            Err(error) => return Err(error.with_attempts(1)),
        };
        self.stats.retries.fetch_add(1, Ordering::Relaxed);
        let fresh = self.connect_new().await.map_err(|e| e.with_attempts(2))?;
        match self.send_on(fresh, false, req).await {
            Ok((response, lease)) => Ok(Sent {
                response,
                lease,
                attempts: 2,
            }),
            Err(failed) => Err(failed.error.with_attempts(2)),
        }
    }

    async fn send_on(
        self: &Arc<Self>,
        checked: Checked,
        reused: bool,
        req: Request<RequestBody>,
    ) -> Result<(Response<Body>, Lease), SendError> {
        if reused {
            self.stats.reuses.fetch_add(1, Ordering::Relaxed);
        }
        let result = match checked {
            Checked::H1(tx) => self.send_h1(tx, req).await,
            Checked::H2(tx, streams) => self.send_h2(tx, streams, req).await,
        };
        result.map_err(|mut failed| {
            failed.reused = reused;
            failed
        })
    }

    async fn send_h1(
        &self,
        conn: H1,
        mut req: Request<RequestBody>,
    ) -> Result<(Response<Body>, Lease), SendError> {
        origin_form(&mut req);
        req.headers_mut()
            .insert(header::HOST, self.host_header.clone());
        let response = h1::send(conn, req, self.check_in.clone()).await?;
        // The body owns the connection and returns it itself.
        Ok((response.map(Body::H1), Lease::none()))
    }

    async fn send_h2(
        &self,
        mut tx: H2,
        streams: Arc<AtomicUsize>,
        mut req: Request<RequestBody>,
    ) -> Result<(Response<Body>, Lease), SendError> {
        // Count the stream from checkout on, so concurrent checkouts see it.
        let lease = Lease::h2(streams, self.stats.clone());
        self.absolute_form(&mut req);
        *req.version_mut() = Version::HTTP_2;
        req.headers_mut().remove(header::HOST);
        match tx.try_send_request(req).await {
            // HTTP/2 carries any three digits (h2 parses `:status` with
            // `http`, which takes up to 999); dropping the answer resets
            // its stream.
            Ok(response) if !status_in_range(response.status()) => Err(SendError::new(
                Error::with_cause(Kind::UpstreamProtocol, STATUS_OUT_OF_RANGE),
                None,
                true,
            )),
            Ok(response) => Ok((response.map(Body::H2), lease)),
            Err(mut e) => {
                let request = e.take_message();
                Err(SendError::new(classify(e.into_error()), request, false))
            }
        }
    }

    /// A connection to send on, and whether it was reused.
    async fn checkout(self: &Arc<Self>) -> Result<(Checked, bool), Error> {
        loop {
            let taken = {
                let mut state = lock(&self.state);
                if let Some(h2) = self.take_h2_stream(&mut state) {
                    return Ok((h2, true));
                }
                self.pop_idle(&mut state)
            };
            let Some(mut conn) = taken else { break };
            if conn.poll_closed() {
                continue;
            }
            return Ok((Checked::H1(conn), true));
        }
        self.connect_new().await.map(|c| (c, false))
    }

    /// Notes how many HTTP/1.1 connections are in use now that one more
    /// was taken.
    fn record_in_use(&self, state: &mut State, now: Instant) {
        self.check(state); // idle <= open: nothing saturates below
        let open = self.stats.h1_open.load(Ordering::Relaxed);
        let in_use = open.saturating_sub(state.idle.len());
        state.peak.record(in_use, now, self.limits.idle_timeout);
    }

    /// The counters and the idle list as the module docs state them;
    /// checked in debug builds under the lock, wherever they change
    /// (O(idle)). `h1_open` changes outside the lock, but never below the
    /// list's length: a connection is counted before it can be put back,
    /// and uncounted only once off the list.
    fn check(&self, state: &State) {
        let idle = state.idle.len();
        debug_assert_eq!(
            self.stats.idle.load(Ordering::Relaxed),
            idle,
            "the idle gauge is the idle list's length"
        );
        debug_assert!(
            idle <= self.stats.h1_open.load(Ordering::Relaxed),
            "more idle HTTP/1.1 connections than open ones"
        );
        debug_assert!(
            state.idle.windows(2).all(|w| w[0].1 <= w[1].1),
            "the idle list is oldest first"
        );
        debug_assert!(
            state.idle.iter().all(|(conn, _)| !conn.holds_buffer()),
            "an idle connection holds a read buffer"
        );
    }

    /// How many idle HTTP/1.1 connections may be kept now (see the module
    /// docs).
    fn idle_cap(&self, state: &mut State) -> usize {
        let floor = self.limits.max_idle;
        if floor == 0 {
            return 0;
        }
        let peak = state.peak.get(Instant::now(), self.limits.idle_timeout);
        peak.min(IDLE_CEILING).max(floor)
    }

    fn take_h2_stream(&self, state: &mut State) -> Option<Checked> {
        state.h2.retain(|c| !c.tx.is_closed());
        let limit = self.limits.h2_max_streams;
        let conn = state.h2.iter().find(|c| {
            let cap = limit.min(c.peer_limit.load(Ordering::Relaxed));
            c.streams.load(Ordering::Acquire) < cap
        })?;
        conn.streams.fetch_add(1, Ordering::AcqRel);
        self.stats.h2_streams.fetch_add(1, Ordering::Relaxed);
        Some(Checked::H2(conn.tx.clone(), conn.streams.clone()))
    }

    fn pop_idle(&self, state: &mut State) -> Option<H1> {
        let now = Instant::now();
        while let Some((tx, since)) = state.idle.pop() {
            self.stats.idle.fetch_sub(1, Ordering::Relaxed);
            if now.saturating_duration_since(since) < self.limits.idle_timeout {
                self.record_in_use(state, now);
                return Some(tx);
            }
        }
        self.check(state);
        None
    }

    /// Whether a new connection may turn out to be HTTP/2, so connects are
    /// serialized and a burst shares one connection. On TLS with protocol
    /// `auto` ALPN decides, so the first connects are serialized too until
    /// an answer shows which protocol the origin picks.
    fn may_speak_h2(&self) -> bool {
        let state = lock(&self.state);
        match self.key.protocol {
            UpstreamProtocol::Http2 => true,
            UpstreamProtocol::Http1 => false,
            UpstreamProtocol::Auto => state.speaks_h2 || (self.key.tls && !state.speaks_h1),
        }
    }

    async fn connect_new(self: &Arc<Self>) -> Result<Checked, Error> {
        let serial = if self.may_speak_h2() {
            let queued = Instant::now();
            let guard = self.h2_connect.lock().await;
            let mut state = lock(&self.state);
            if let Some(h2) = self.take_h2_stream(&mut state) {
                return Ok(h2);
            }
            let failed_meanwhile = state.failed_connect.as_ref().filter(|f| f.0 >= queued);
            if let Some((_, kind, cause)) = failed_meanwhile {
                return Err(match cause {
                    Some(c) => Error::with_cause(*kind, c.clone()),
                    None => Error::new(*kind),
                });
            }
            drop(state);
            // The connect we waited for may have shown an HTTP/1.1 origin.
            self.may_speak_h2().then_some(guard)
        } else {
            None
        };
        let stats = self.stats.clone();
        // Boxed: inline, the connect (TCP, TLS, handshake; over 4 KiB, see
        // `connect::tests::connect_future_size`) would size every request's
        // future, which `Relay::send` moves into a box of its own, though
        // most requests reuse a pooled connection.
        let on_h2_close = move || {
            stats.open.fetch_sub(1, Ordering::Relaxed);
        };
        let connected = Box::pin(self.connector.connect(&self.key, on_h2_close)).await;
        let fresh = match connected {
            Ok(fresh) => fresh,
            Err(e) => {
                if serial.is_some() {
                    let cause = std::error::Error::source(&e).map(ToString::to_string);
                    lock(&self.state).failed_connect = Some((Instant::now(), e.kind(), cause));
                }
                return Err(e);
            }
        };
        self.stats.open.fetch_add(1, Ordering::Relaxed);
        self.stats.connects.fetch_add(1, Ordering::Relaxed);
        match fresh {
            Fresh::H1(io) => {
                self.stats.h1_open.fetch_add(1, Ordering::Relaxed);
                let stats = self.stats.clone();
                let conn = H1Conn::new(
                    io,
                    Box::new(move || {
                        stats.h1_open.fetch_sub(1, Ordering::Relaxed);
                        stats.open.fetch_sub(1, Ordering::Relaxed);
                    }),
                );
                let mut state = lock(&self.state);
                state.speaks_h1 = true;
                self.record_in_use(&mut state, Instant::now());
                Ok(Checked::H1(conn))
            }
            Fresh::H2(tx, peer_limit) => {
                let mut state = lock(&self.state);
                state.speaks_h2 = true;
                let streams = Arc::new(AtomicUsize::new(1));
                self.stats.h2_streams.fetch_add(1, Ordering::Relaxed);
                state.h2.push(H2Conn {
                    tx: tx.clone(),
                    streams: streams.clone(),
                    peer_limit,
                });
                Ok(Checked::H2(tx, streams))
            }
        }
    }

    /// Keeps a connection whose response was read to its end, if it may
    /// (see [`Return`]).
    fn put_idle(&self, mut conn: H1) {
        if conn.poll_closed() {
            return;
        }
        let over_cap = {
            let mut state = lock(&self.state);
            if state.idle.len() >= self.idle_cap(&mut state) {
                Some(conn)
            } else {
                state.idle.push((conn, Instant::now()));
                self.stats.idle.fetch_add(1, Ordering::Relaxed);
                self.check(&state);
                None
            }
        };
        drop(over_cap); // closed outside the lock
    }

    fn reap(&self) {
        let mut state = lock(&self.state);
        let timeout = self.limits.idle_timeout;
        let before = state.idle.len();
        state
            .idle
            .retain_mut(|(conn, since)| since.elapsed() < timeout && !conn.poll_closed());
        let removed = before - state.idle.len();
        self.stats.idle.fetch_sub(removed, Ordering::Relaxed);
        state.h2.retain(|c| !c.tx.is_closed());
        self.check(&state);
    }

    fn close_idle(&self) {
        let mut state = lock(&self.state);
        let removed = state.idle.len();
        state.idle.clear();
        state.h2.clear();
        self.stats.idle.fetch_sub(removed, Ordering::Relaxed);
        self.check(&state);
    }

    fn absolute_form(&self, req: &mut Request<RequestBody>) {
        let path = path_and_query(req.uri());
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(path);
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
}

fn origin_form(req: &mut Request<RequestBody>) {
    if req.uri().authority().is_some() {
        *req.uri_mut() = Uri::from(path_and_query(req.uri()));
    }
}

fn path_and_query(uri: &Uri) -> PathAndQuery {
    uri.path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"))
}

/// Maps a hyper send error to the relay's error kind.
fn classify(err: hyper::Error) -> Error {
    if let Some(own) = find_own(&err) {
        return Error::new(own);
    }
    let kind = if err.is_parse() || err.is_parse_status() {
        Kind::UpstreamProtocol
    } else {
        Kind::UpstreamReset
    };
    Error::with_cause(kind, err)
}

/// A relay error raised inside the request body (e.g. the size limit).
fn find_own(err: &hyper::Error) -> Option<Kind> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(e) = next {
        if let Some(own) = e.downcast_ref::<Error>() {
            return Some(own.kind());
        }
        next = e.source();
    }
    None
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the idle list or counters
    // inconsistent in a way worse than losing some pooled connections.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a request holds on its connection until the response body ends:
/// for HTTP/2, the stream's place under the connection's stream limit.
/// (An HTTP/1.1 response body owns its connection instead.) It also
/// keeps the request counted on its endpoint's load ([`Outstanding`]).
pub struct Lease {
    inner: LeaseInner,
    load: Option<Outstanding>,
}

enum LeaseInner {
    H2 {
        streams: Arc<AtomicUsize>,
        stats: Arc<OriginStats>,
    },
    Released,
}

impl Lease {
    fn none() -> Self {
        Self {
            inner: LeaseInner::Released,
            load: None,
        }
    }

    fn h2(streams: Arc<AtomicUsize>, stats: Arc<OriginStats>) -> Self {
        Self {
            inner: LeaseInner::H2 { streams, stats },
            load: None,
        }
    }

    /// Keeps `load` counted until the body ends.
    pub(crate) fn hold(&mut self, load: Outstanding) {
        self.load = Some(load);
    }

    /// The request no longer counts on its endpoint's load (its answer was
    /// refused and is only being read to keep the connection).
    pub(crate) fn unload(&mut self) {
        self.load = None;
    }

    /// The response body was read to its end: the connection may serve the
    /// next request.
    pub fn release(&mut self) {
        self.load = None;
        match std::mem::replace(&mut self.inner, LeaseInner::Released) {
            LeaseInner::H2 { streams, stats } => end_stream(&streams, &stats),
            LeaseInner::Released => {}
        }
    }
}

fn end_stream(streams: &AtomicUsize, stats: &OriginStats) {
    streams.fetch_sub(1, Ordering::AcqRel);
    stats.h2_streams.fetch_sub(1, Ordering::Relaxed);
}

impl Drop for Lease {
    fn drop(&mut self) {
        // The stream no longer counts against the connection's limit.
        if let LeaseInner::H2 { streams, stats } = &self.inner {
            end_stream(streams, stats);
        }
    }
}
