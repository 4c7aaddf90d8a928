//! The request path: admit, route, rewrite, forward, relay back.
//!
//! ```text
//! client request ──admit──▶ route ──rewrite headers──▶ upstream::Origin::send
//!                                                          │
//! client ◀── ResponseBody (lease + Exchange ride along) ◀──┘
//! ```
//! Every answer, relayed or relay-made, carries the request's
//! [`Exchange`], which counts and logs it exactly once.

mod dialect;
mod headers;
mod reply;
mod route;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, Uri, Version, header};
use hyper::body::Incoming;

pub use dialect::Dialect;
pub use reply::error_body;
pub use route::{Route, RouteTable};

use crate::body::{RequestBody, ResponseBody};
use crate::config::Config;
use crate::error::{Error, Kind};
use crate::telemetry::{Exchange, Sinks};
use crate::upstream::Sent;

/// The real connection a request arrived on.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub https: bool,
}

/// Request-path settings taken from the configuration.
struct Settings {
    max_request_body: u64,
    trust_forwarded: bool,
    server_names: Vec<String>,
    first_byte_timeout: Option<Duration>,
}

/// Everything a request needs, shared by all connections.
pub struct Relay {
    routes: RouteTable,
    sinks: Arc<Sinks>,
    settings: Settings,
    draining: AtomicBool,
}

impl Relay {
    pub fn new(config: &Config, routes: RouteTable, sinks: Arc<Sinks>) -> Self {
        Self {
            routes,
            sinks,
            settings: Settings {
                max_request_body: config.server.max_request_body,
                trust_forwarded: config.server.trust_forwarded,
                server_names: config.server.server_names.clone(),
                first_byte_timeout: config.upstream.first_byte_timeout,
            },
            draining: AtomicBool::new(false),
        }
    }

    /// From now on HTTP/1 responses carry `connection: close`.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Serves one request. Never fails: errors become dialect-shaped answers.
    pub async fn handle(
        self: Arc<Self>,
        conn: ConnInfo,
        req: Request<Incoming>,
    ) -> Result<Response<ResponseBody>, Infallible> {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path();
        let guess = Dialect::from_path(path);
        let mut x = Exchange::new(
            self.sinks.clone(),
            parts.method.clone(),
            path,
            guess.as_str(),
        );
        if let Err(e) = self.admit(&parts, &conn) {
            tracing::info!(path, "refused: {e}");
            return Ok(self.finish(reply::error(&e, guess, Some(x)), parts.version));
        }
        let Some(route) = self.routes.find(path) else {
            let e = Error::new(Kind::NoRoute);
            return Ok(self.finish(reply::error(&e, guess, Some(x)), parts.version));
        };
        let dialect = Dialect::resolve(route.dialect, path);
        x.set_route(route.index, route.name.clone(), dialect.as_str());
        let version = parts.version;
        let sent = match self.forward(route, parts, body, &conn).await {
            Ok(sent) => sent,
            Err(e) => {
                if let Some(class) = e.upstream_class() {
                    x.upstream_error(class);
                    tracing::warn!(route = &*route.name, "upstream: {e}");
                }
                return Ok(self.finish(reply::error(&e, dialect, Some(x)), version));
            }
        };
        let (mut parts, body) = sent.response.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        parts.version = Version::HTTP_11;
        x.set_attempts(sent.attempts);
        x.set_status(parts.status.as_u16());
        let body = ResponseBody::relay(body, sent.lease, x);
        Ok(self.finish(Response::from_parts(parts, body), version))
    }

    /// Refusals that need no route: CONNECT, absolute-form targets naming
    /// another host (this is not an open proxy), missing or repeated Host,
    /// bodies announced larger than allowed.
    fn admit(&self, parts: &Parts, conn: &ConnInfo) -> Result<(), Error> {
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

    async fn forward(
        &self,
        route: &Route,
        parts: Parts,
        body: Incoming,
        conn: &ConnInfo,
    ) -> Result<Sent, Error> {
        let req = self.upstream_request(route, parts, body, conn)?;
        let send = route.origin.send(req);
        match self.settings.first_byte_timeout {
            Some(limit) => tokio::time::timeout(limit, send)
                .await
                .map_err(|_| Error::new(Kind::FirstByteTimeout))?,
            None => send.await,
        }
    }

    fn upstream_request(
        &self,
        route: &Route,
        parts: Parts,
        body: Incoming,
        conn: &ConnInfo,
    ) -> Result<Request<RequestBody>, Error> {
        let target = route.upstream_target(parts.uri.path(), parts.uri.query());
        let uri: Uri = target
            .parse()
            .map_err(|e| Error::with_cause(Kind::BadRequest, e))?;
        let mut req = Request::new(RequestBody::new(body, self.settings.max_request_body));
        *req.method_mut() = parts.method;
        *req.uri_mut() = uri;
        let h = req.headers_mut();
        *h = parts.headers;
        headers::strip_hop_by_hop(h);
        h.remove(header::HOST);
        // hyper answered any `Expect: 100-continue` already, by reading the body.
        h.remove(header::EXPECT);
        headers::set_forwarded(h, conn.peer.ip(), conn.https, self.settings.trust_forwarded);
        Ok(req)
    }

    fn finish(&self, mut res: Response<ResponseBody>, version: Version) -> Response<ResponseBody> {
        if version <= Version::HTTP_11 && self.is_draining() {
            res.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        res
    }
}
