//! The request path: admit, route, rewrite, forward, relay back.
//!
//! ```text
//! client request ─admit─▶ route ─rewrite─▶ (read body if JSON POST) ─▶ send
//!                                                                       │
//!   upstream answers within `heartbeat` ─▶ its status, body relayed ◀───┤
//!   (a 2xx event stream goes through the SSE engine)                    │
//!   streaming request, upstream still silent ─▶ early commit: 200 SSE ◀─┘
//!       with keepalives while the send (and its retries) completes
//! ```
//! Every answer, relayed or relay-made, carries the request's
//! [`Exchange`], which counts and logs it exactly once.
//!
//! On a route with a CORS policy (`cors.rs`), the relay answers
//! preflights itself and every answer carries the policy.
//!
//! On a route with `resume_window`, an event stream is consumed by a
//! producer task and the client reads it from the stream's replay log;
//! a reconnect (`resume.rs`) reads the same log from where it left off.

mod continuation;
mod cors;
mod failover;
mod headers;
mod reply;
mod request;
mod response;
mod resume;
mod route;
mod upstreams;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode, Version, header};
use hyper::body::Incoming;

pub(crate) use headers::peer_value;
pub(crate) use response::ResponseBody;
pub(crate) use route::{Route, RouteError, RouteTable};

use crate::body::{
    Answer, Continuer, Heartbeat, JsonWaitBody, Pending, SseBody, SseSetup, UsageCapture,
};
use crate::config::Config;
use crate::dialect::Dialect;
use crate::dialect::stream::ChatAsk;
use crate::error::{Error, Kind, UpstreamClass};
use crate::resume::{Hub, Reader};
use crate::sse::Stamp;
use crate::telemetry::{Activity, Exchange, Sinks};
use crate::timer::Wheel;
use crate::upstream::RequestBody;
use request::{BodyLimits, OutBody, Outbound};
use response::first_frame;

/// The real connection a request arrived on.
#[derive(Clone)]
pub(crate) struct ConnInfo {
    pub peer: SocketAddr,
    /// `peer`'s address as `X-Forwarded-For` carries it.
    pub peer_value: http::HeaderValue,
    pub local: SocketAddr,
    pub https: bool,
    /// The connection's heartbeat timer wheel.
    pub wheel: Arc<Wheel>,
    /// Requests open on the connection (its idle timeout).
    pub activity: Arc<Activity>,
}

impl ConnInfo {
    /// A new connection from `peer` to `local`, with its timer wheel and
    /// no request open yet.
    pub(crate) fn new(peer: SocketAddr, local: SocketAddr, https: bool, wheel: Arc<Wheel>) -> Self {
        ConnInfo {
            peer,
            peer_value: peer_value(peer.ip()),
            local,
            https,
            wheel,
            activity: Arc::default(),
        }
    }
}

/// Request-path settings taken from the configuration.
struct Settings {
    max_request_body: u64,
    trust_forwarded: bool,
    server_names: Vec<String>,
    usage_body_cap: u64,
    max_requests: usize,
    max_uri_length: u64,
    body_timeout: Duration,
}

/// Everything a request needs, shared by all connections.
pub(crate) struct Relay {
    routes: RouteTable,
    sinks: Arc<Sinks>,
    /// Resumable streams.
    hub: Arc<Hub>,
    settings: Settings,
    draining: AtomicBool,
}

impl Relay {
    pub(crate) fn new(
        config: &Config,
        routes: RouteTable,
        sinks: Arc<Sinks>,
        hub: Arc<Hub>,
    ) -> Self {
        Self {
            routes,
            sinks,
            hub,
            settings: Settings {
                max_request_body: config.server.max_request_body,
                trust_forwarded: config.server.trust_forwarded,
                server_names: config.server.server_names.clone(),
                usage_body_cap: config.usage.max_body_size,
                max_requests: config.server.limits.max_requests,
                max_uri_length: config.server.limits.max_uri_length,
                body_timeout: config.server.limits.body_timeout,
            },
            draining: AtomicBool::new(false),
        }
    }

    /// Appends the endpoint and failover metrics of every route.
    pub(crate) fn render_metrics(&self, out: &mut String) {
        self.routes.render_metrics(out);
    }

    /// From now on HTTP/1 responses carry `connection: close`.
    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Timer-wheel resolution: a sixteenth of the shortest heartbeat,
    /// between 10 ms and 500 ms (a keepalive may be one tick late).
    pub(crate) fn wheel_tick(&self) -> Duration {
        let shortest = self.routes.shortest_heartbeat();
        (shortest / 16).clamp(Duration::from_millis(10), Duration::from_millis(500))
    }

    /// Serves one request. Never fails: errors become dialect-shaped answers.
    pub(crate) async fn handle(
        self: Arc<Self>,
        conn: ConnInfo,
        req: Request<Incoming>,
    ) -> Result<Response<ResponseBody>, Infallible> {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path();
        let guess = Dialect::from_path(path);
        let logged = crate::resume::redact_path(path);
        let mut x = Exchange::new(
            self.sinks.clone(),
            parts.method.clone(),
            &logged,
            guess.as_str(),
        );
        x.hold(conn.activity.begin());
        let version = parts.version;
        let cors = self.cors_grant(&parts);
        let cors = cors.as_ref();
        if let Err(e) = self.admit(&parts, &conn, x.in_flight()) {
            tracing::info!(path = short(&logged), "refused: {e}");
            return Ok(self.finish(reply::error(&e, guess, Some(x)), version, cors));
        }
        if let Some(grant) = cors.filter(|_| cors::is_preflight(&parts)) {
            let on_route = !path.starts_with(crate::resume::PATH_PREFIX);
            if let Some(route) = self.routes.find(path).filter(|_| on_route) {
                x.set_route(route.index, route.name.clone(), guess.as_str());
            }
            return Ok(self.finish(grant.preflight(&parts, x), version, None));
        }
        match resume::by_path(&parts) {
            Ok(Some(ask)) => {
                let res = self.resume(ask, &parts, &conn, guess, None, x).await;
                return Ok(self.finish(res, version, cors));
            }
            Ok(None) => {}
            Err(e) => return Ok(self.finish(reply::error(&e, guess, Some(x)), version, cors)),
        }
        let Some(route) = self.routes.find(path) else {
            let e = Error::new(Kind::NoRoute);
            return Ok(self.finish(reply::error(&e, guess, Some(x)), version, cors));
        };
        let dialect = Dialect::resolve(route.dialect, path);
        x.set_route(route.index, route.name.clone(), dialect.as_str());
        if let Err(e) = route
            .auth
            .check(&parts.headers, conn.peer.ip(), &mut x)
            .await
        {
            return Ok(self.finish(reply::error(&e, dialect, Some(x)), version, cors));
        }
        if route.stream.resume_window.is_some() {
            if let Some(ask) = resume::by_header(&parts) {
                let res = self
                    .resume(ask, &parts, &conn, dialect, Some(route.index), x)
                    .await;
                return Ok(self.finish(res, version, cors));
            }
        }
        let mut ctx = Ctx {
            route,
            dialect,
            conn: &conn,
            strip_usage_chunk: false,
            chat_ask: None,
            usage_cap: self.settings.usage_body_cap,
            read_timeout: route.stream.timeouts.read,
            hub: &self.hub,
            continuer: None,
            // Without a policy only the upstream's head can carry CORS
            // fields: a cross-origin request waits for it.
            hold_commit: route.cors.is_none() && cors::cross_origin(&parts.headers),
        };
        let res = match self.forward(&mut ctx, parts, body, &mut x).await {
            Ok(Forwarded::Answered(answer)) => respond(answer, &mut ctx, x).await,
            Ok(Forwarded::Committed(pending)) => committed(pending, &mut ctx, x),
            Ok(Forwarded::JsonCommitted(pending)) => json_committed(pending, &ctx, x),
            Err(e) => reply::error(&e, dialect, Some(x)),
        };
        Ok(self.finish(res, version, cors))
    }

    /// Refusals that need no route: CONNECT, absolute-form targets naming
    /// another host (this is not an open proxy), missing or repeated Host,
    /// bodies announced larger than allowed.
    fn admit(&self, parts: &Parts, conn: &ConnInfo, in_flight: usize) -> Result<(), Error> {
        if in_flight > self.settings.max_requests {
            return Err(Error::new(Kind::Overloaded));
        }
        let target = parts.uri.path_and_query().map_or(0, |p| p.as_str().len());
        if target as u64 > self.settings.max_uri_length {
            return Err(Error::new(Kind::UriTooLong));
        }
        if parts.method == Method::CONNECT {
            return Err(Error::with_cause(
                Kind::MethodNotAllowed,
                "CONNECT is not served: this is not a forward proxy",
            ));
        }
        if parts.version <= Version::HTTP_11 {
            if let Some(authority) = parts.uri.authority() {
                if !self.is_own_authority(authority.as_str(), conn) {
                    return Err(Error::with_cause(
                        Kind::BadRequest,
                        "absolute-form target names another host: this is not a forward proxy",
                    ));
                }
            }
            let hosts = parts.headers.get_all(header::HOST).iter().count();
            if hosts > 1 || (hosts == 0 && parts.version == Version::HTTP_11) {
                return Err(Error::with_cause(
                    Kind::BadRequest,
                    "HTTP/1.1 requests need exactly one Host header",
                ));
            }
        }
        if let Some(coding) = headers::unsupported_transfer_coding(&parts.headers) {
            let coding = String::from_utf8_lossy(coding.as_bytes());
            let coding = short(&coding);
            return Err(Error::with_cause(
                Kind::NotImplemented,
                format!("request Transfer-Encoding {coding:?}: only chunked is decoded"),
            ));
        }
        let announced = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if announced.is_some_and(|n| n > self.settings.max_request_body) {
            return Err(Error::new(Kind::BodyTooLarge));
        }
        Ok(())
    }

    fn is_own_authority(&self, authority: &str, conn: &ConnInfo) -> bool {
        if authority == conn.local.to_string() {
            return true;
        }
        let host = authority.rsplit_once(':').map_or(authority, |(h, p)| {
            if p.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                authority
            }
        });
        self.settings
            .server_names
            .iter()
            .any(|n| n.eq_ignore_ascii_case(host))
    }

    /// Sends the request; for a streaming request whose upstream is slower
    /// than the heartbeat, hands the unfinished send to an early commit.
    async fn forward(
        &self,
        ctx: &mut Ctx<'_>,
        parts: Parts,
        body: Incoming,
        x: &mut Exchange,
    ) -> Result<Forwarded, Error> {
        let route = ctx.route;
        let head = request::head(route, parts, ctx.conn, self.settings.trust_forwarded)?;
        let add_usage = route.stream.include_usage && ctx.dialect == Dialect::OpenAiChat;
        let limits = BodyLimits {
            size: self.settings.max_request_body,
            idle: self.settings.body_timeout,
        };
        let out = request::prepare(head, body, limits, add_usage).await?;
        if let Some(m) = &out.model {
            x.set_model(m);
        }
        ctx.strip_usage_chunk = out.strip_usage_chunk;
        ctx.chat_ask = out.chat_ask;
        ctx.continuer = continuation::continuer(route, ctx.dialect, &out);
        // How to answer if the upstream is slower than the heartbeat.
        let commit: Option<fn(Pending) -> Forwarded> = if ctx.hold_commit {
            None
        } else if out.streaming {
            route.stream.early_commit.then_some(Forwarded::Committed)
        } else {
            route
                .stream
                .json_keepalive
                .then_some(Forwarded::JsonCommitted)
        };
        let mut send = self.send(route, out);
        let Some(commit) = commit else {
            return Ok(Forwarded::Answered(send.await));
        };
        match tokio::time::timeout(route.stream.heartbeat, &mut send).await {
            Ok(answer) => Ok(Forwarded::Answered(answer)),
            Err(_) => {
                tracing::debug!(
                    route = &*route.name,
                    dialect = ctx.dialect.as_str(),
                    "early commit"
                );
                x.set_committed();
                Ok(commit(send))
            }
        }
    }

    /// The upstream exchange as a boxed future, so an early commit can take
    /// it over. A buffered body can be sent again: it fails over
    /// (`failover.rs`); one that streams from the client gets one attempt.
    fn send(&self, route: &Route, out: Outbound) -> Pending {
        let ups = route.upstreams.clone();
        match out.body {
            OutBody::Buffered(body) => {
                let policy = failover::Policy::new(&route.stream);
                let name = route.name.clone();
                let payload = failover::Payload::Body(body);
                Box::pin(failover::send(ups, name, out.head, payload, policy))
            }
            OutBody::Streaming { body, limit, idle } => {
                let body = RequestBody::streaming(body, limit, idle);
                Box::pin(failover::send_once(ups, out.head, body))
            }
        }
    }

    /// Last touches on every answer: the route's CORS policy, and
    /// `connection: close` while draining.
    fn finish(
        &self,
        mut res: Response<ResponseBody>,
        version: Version,
        cors: Option<&cors::Grant<'_>>,
    ) -> Response<ResponseBody> {
        if let Some(grant) = cors {
            grant.apply(res.headers_mut());
        }
        if version <= Version::HTTP_11 && self.is_draining() {
            res.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        res
    }
}

/// One request's route, dialect and connection, for building its answer.
struct Ctx<'a> {
    route: &'a Route,
    dialect: Dialect,
    conn: &'a ConnInfo,
    /// The relay injected `include_usage` (see `request::prepare`).
    strip_usage_chunk: bool,
    /// What an OpenAI chat request says about its stream's end.
    chat_ask: Option<ChatAsk>,
    /// Largest JSON answer parsed for usage.
    usage_cap: u64,
    /// The serving group's `read_timeout` (the route's until one serves).
    read_timeout: Option<Duration>,
    hub: &'a Arc<Hub>,
    /// Continues a cut answer, on a route that does (taken by the SSE body).
    continuer: Option<Box<dyn Continuer>>,
    /// Answer with the upstream's own head, never an early commit (a
    /// cross-origin request on a route without a CORS policy).
    hold_commit: bool,
}

impl Ctx<'_> {
    fn sse_setup(&mut self, stamp: Option<Stamp>) -> SseSetup<'_> {
        SseSetup {
            continuer: self.continuer.take(),
            dialect: self.dialect,
            wheel: self.conn.wheel.clone(),
            stream: &self.route.stream,
            strip_usage_chunk: self.strip_usage_chunk,
            chat_ask: self.chat_ask,
            read_timeout: self.read_timeout,
            stamp,
        }
    }

    /// The client's body for an event stream: the SSE engine itself, or on
    /// a resumable route a reader of the stream's producer (the response
    /// then names the stream in `sse-edge-stream-id`).
    fn event_stream(
        &mut self,
        make: impl FnOnce(SseSetup<'_>) -> SseBody,
        mut x: Exchange,
    ) -> (ResponseBody, Option<crate::resume::Token>) {
        let stream = &self.route.stream;
        let opened = stream.resume_window.and_then(|window| {
            let key = x.key().cloned();
            let (index, max) = (self.route.index, stream.resume_max_bytes);
            self.hub.open(self.dialect, index, key, window, max)
        });
        let Some((resumable, stamp)) = opened else {
            return (ResponseBody::sse(make(self.sse_setup(None)), x), None);
        };
        let sse = make(self.sse_setup(Some(stamp)));
        x.start_streaming();
        let at = self.hub.start(&resumable, sse, x);
        let heartbeat = Heartbeat::new(self.conn.wheel.clone(), stream.heartbeat);
        let metrics = self.hub.metrics().clone();
        let token = resumable.token();
        let reader = Reader::new(resumable, at, heartbeat, metrics);
        (ResponseBody::resumable(reader, None), Some(token))
    }
}

/// The upstream's own answer, relayed.
///
/// Only the head is the upstream's to decide: hop-by-hop fields and any
/// `sse-edge-*` field it sent are removed. An event stream's body is the
/// relay's (keepalives, error events, ids), so its `Content-Length` goes too:
/// hyper then frames it chunked (HTTP/1.1) or by the end of the stream
/// (HTTP/2). Any other body is relayed as is, after its first frame has
/// arrived: until then, a failing body is still a `502`.
async fn respond(mut answer: Answer, ctx: &mut Ctx<'_>, mut x: Exchange) -> Response<ResponseBody> {
    answer.record(&mut x);
    ctx.read_timeout = answer.read_timeout;
    let sent = match answer.result {
        Ok(sent) => sent,
        Err(e) => {
            if let Some(class) = e.upstream_class() {
                x.upstream_error(class);
                tracing::warn!(route = &*ctx.route.name, "upstream: {e}");
            }
            return reply::error(&e, ctx.dialect, Some(x));
        }
    };
    let (mut parts, mut body) = sent.response.into_parts();
    headers::clean_response(&mut parts.headers);
    parts.version = Version::HTTP_11;
    let event_stream = parts.status.is_success() && crate::dialect::is_event_stream(&parts.headers);
    let first = if event_stream {
        None
    } else {
        match first_frame(&mut body, ctx.read_timeout).await {
            Ok(first) => first,
            Err(e) => {
                let class = e.upstream_class().unwrap_or(UpstreamClass::Reset);
                x.upstream_error(class);
                x.set_upstream_status(parts.status.as_u16());
                tracing::warn!(
                    route = &*ctx.route.name,
                    status = parts.status.as_u16(),
                    "upstream body failed before its first byte: {e}"
                );
                return reply::error(&e, ctx.dialect, Some(x));
            }
        }
    };
    x.set_status(parts.status.as_u16());
    if parts.status.as_u16() == 429 || parts.status.is_server_error() {
        x.upstream_error(UpstreamClass::Status);
    }
    if !event_stream {
        let usage = usage_capture(&parts, ctx);
        let body = ResponseBody::relay(body, first, sent.lease, x, usage, ctx.read_timeout);
        return Response::from_parts(parts, body);
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    parts
        .headers
        .entry(&headers::X_ACCEL_BUFFERING)
        .or_insert(HeaderValue::from_static("no"));
    let (body, token) = ctx.event_stream(|s| SseBody::streaming(body, sent.lease, s), x);
    let mut res = Response::from_parts(parts, body);
    if let Some(token) = token {
        resume::set_stream_id(&mut res, token);
    }
    res
}

/// A 2xx JSON answer is kept (as shared `Bytes`, up to the cap) to read its
/// usage when it is complete.
fn usage_capture(parts: &http::response::Parts, ctx: &Ctx<'_>) -> Option<UsageCapture> {
    let json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("json"));
    (parts.status.is_success() && json).then(|| UsageCapture::new(ctx.dialect, ctx.usage_cap))
}

/// A path cut for diagnostics: clients choose its length.
fn short(path: &str) -> &str {
    match path.char_indices().nth(256) {
        Some((i, _)) => &path[..i],
        None => path,
    }
}

/// What forwarding produced.
// Lives on the stack for one `match`; boxing `Sent` would cost an
// allocation per request to save a few hundred bytes of stack.
#[allow(clippy::large_enum_variant)]
enum Forwarded {
    /// The upstream answered in time.
    Answered(Answer),
    /// Still waiting: commit `200 text/event-stream` now.
    Committed(Pending),
    /// Still waiting on a non-streaming request with `json_keepalive`.
    JsonCommitted(Pending),
}

/// `200 application/json` before the upstream answered (`json_keepalive`).
fn json_committed(pending: Pending, ctx: &Ctx<'_>, mut x: Exchange) -> Response<ResponseBody> {
    x.set_status(StatusCode::OK.as_u16());
    let heartbeat = Heartbeat::new(ctx.conn.wheel.clone(), ctx.route.stream.heartbeat);
    let capture = UsageCapture::new(ctx.dialect, ctx.usage_cap);
    let wait = JsonWaitBody::new(pending, heartbeat, ctx.dialect, capture);
    early_commit(ResponseBody::json_wait(wait, x), "application/json")
}

/// `200 text/event-stream` before the upstream answered.
fn committed(pending: Pending, ctx: &mut Ctx<'_>, mut x: Exchange) -> Response<ResponseBody> {
    x.set_status(StatusCode::OK.as_u16());
    let (body, token) = ctx.event_stream(|s| SseBody::waiting(pending, s), x);
    let mut res = early_commit(body, "text/event-stream");
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Some(token) = token {
        resume::set_stream_id(&mut res, token);
    }
    res
}

/// The head of an early-committed `200`: unbuffered, and marked so the
/// client (and an operator reading headers) can tell it was the relay's.
fn early_commit(body: ResponseBody, content_type: &'static str) -> Response<ResponseBody> {
    let mut res = Response::new(body);
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(&headers::X_ACCEL_BUFFERING, HeaderValue::from_static("no"));
    h.insert("sse-edge-early-commit", HeaderValue::from_static("1"));
    res
}
