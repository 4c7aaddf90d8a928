//! The relay's one error type.
//!
//! Every failure carries a [`Kind`] (what went wrong), a [`Side`] (whose
//! fault: the client or the upstream) and keeps its cause. The kind decides
//! the HTTP status a relay-made error answer gets, the metrics class and
//! whether a retry is allowed. Retry safety is *not* decided here: only the
//! pool knows whether request bytes were written (see `upstream::pool`).

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use http::StatusCode;

type Cause = Box<dyn StdError + Send + Sync>;

/// A relay error: kind, side and cause.
#[derive(Debug)]
pub struct Error {
    kind: Kind,
    cause: Option<Cause>,
    /// How long the client should wait before trying again (`Retry-After`).
    retry_after: Option<Duration>,
    /// Upstream attempts made before giving up (0: none, or not counted).
    attempts: u32,
}

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// TCP connect to the upstream failed (refused, unreachable, DNS).
    Connect,
    /// Connect, TLS or HTTP/2 handshake did not finish in time.
    ConnectTimeout,
    /// TLS handshake with the upstream failed.
    Tls,
    /// The upstream connection failed while the request was in flight.
    UpstreamReset,
    /// The upstream sent something that is not HTTP.
    UpstreamProtocol,
    /// Upstream response headers did not arrive in time.
    FirstByteTimeout,
    /// An event stream's head arrived, but no event within
    /// `first_event_timeout`.
    FirstEventTimeout,
    /// The upstream went silent inside a body past `upstream.read_timeout`.
    UpstreamReadTimeout,
    /// No route matches the request path.
    NoRoute,
    /// The request body is larger than allowed.
    BodyTooLarge,
    /// The request is malformed or not allowed here (absolute-form to
    /// another host, bad path).
    BadRequest,
    /// A method this relay refuses (CONNECT).
    MethodNotAllowed,
    /// A request feature the relay does not implement (a transfer coding
    /// other than `chunked`).
    NotImplemented,
    /// Reading the client's request body failed (client went away).
    DownstreamBody,
    /// The relay is draining.
    ShuttingDown,
    /// `server.max_requests` requests are already in flight.
    Overloaded,
    /// The request target is longer than `server.max_uri_length`.
    UriTooLong,
    /// The client paused its request body longer than `server.body_timeout`.
    RequestTimeout,
    /// The route wants a client key and none, or an unknown one, was given.
    Unauthorized,
    /// The client's key (or address) has used up the route's rate limit.
    RateLimited,
    /// Cluster mode: Redis cannot decide a fail-closed route's rate limit.
    ClusterUnavailable,
}

/// Why an upstream exchange failed (`sse_edge_upstream_errors_total{class}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamClass {
    Connect,
    Timeout,
    Tls,
    Reset,
    Protocol,
    /// The upstream answered 429 or 5xx.
    Status,
    /// The upstream ended a stream without its terminal event.
    Truncated,
}

impl UpstreamClass {
    pub(crate) const ALL: [UpstreamClass; 7] = [
        UpstreamClass::Connect,
        UpstreamClass::Timeout,
        UpstreamClass::Tls,
        UpstreamClass::Reset,
        UpstreamClass::Protocol,
        UpstreamClass::Status,
        UpstreamClass::Truncated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamClass::Connect => "connect",
            UpstreamClass::Timeout => "timeout",
            UpstreamClass::Tls => "tls",
            UpstreamClass::Reset => "reset",
            UpstreamClass::Protocol => "protocol",
            UpstreamClass::Status => "status",
            UpstreamClass::Truncated => "truncated",
        }
    }
}

/// Whose side failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Downstream,
    Upstream,
}

impl Error {
    pub fn new(kind: Kind) -> Self {
        Self {
            kind,
            cause: None,
            retry_after: None,
            attempts: 0,
        }
    }

    pub fn with_cause(kind: Kind, cause: impl Into<Cause>) -> Self {
        Self {
            kind,
            cause: Some(cause.into()),
            retry_after: None,
            attempts: 0,
        }
    }

    /// Records how many upstream attempts ended in this error.
    pub fn with_attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts;
        self
    }

    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// A [`Kind::RateLimited`] refusal; the client may try again after `wait`.
    pub fn rate_limited(wait: Duration) -> Self {
        Self {
            retry_after: Some(wait),
            ..Self::new(Kind::RateLimited)
        }
    }

    /// `Retry-After` in whole seconds, rounded up (at least 1).
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after.map(|d| {
            let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
            secs.max(1)
        })
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn side(&self) -> Side {
        match self.kind {
            Kind::Connect
            | Kind::ConnectTimeout
            | Kind::Tls
            | Kind::UpstreamReset
            | Kind::UpstreamProtocol
            | Kind::FirstByteTimeout
            | Kind::FirstEventTimeout
            | Kind::UpstreamReadTimeout => Side::Upstream,
            Kind::NoRoute
            | Kind::BodyTooLarge
            | Kind::BadRequest
            | Kind::MethodNotAllowed
            | Kind::NotImplemented
            | Kind::DownstreamBody
            | Kind::ShuttingDown
            | Kind::Overloaded
            | Kind::ClusterUnavailable
            | Kind::UriTooLong
            | Kind::RequestTimeout
            | Kind::Unauthorized
            | Kind::RateLimited => Side::Downstream,
        }
    }

    pub fn is_timeout(&self) -> bool {
        matches!(
            self.kind,
            Kind::ConnectTimeout
                | Kind::FirstByteTimeout
                | Kind::FirstEventTimeout
                | Kind::UpstreamReadTimeout
        )
    }

    /// Status of the relay-made answer for this error.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            Kind::Connect | Kind::Tls | Kind::UpstreamReset | Kind::UpstreamProtocol => {
                StatusCode::BAD_GATEWAY
            }
            Kind::ConnectTimeout
            | Kind::FirstByteTimeout
            | Kind::FirstEventTimeout
            | Kind::UpstreamReadTimeout => StatusCode::GATEWAY_TIMEOUT,
            Kind::NoRoute => StatusCode::NOT_FOUND,
            Kind::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Kind::BadRequest | Kind::DownstreamBody => StatusCode::BAD_REQUEST,
            Kind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Kind::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            Kind::ShuttingDown | Kind::Overloaded | Kind::ClusterUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Kind::UriTooLong => StatusCode::URI_TOO_LONG,
            Kind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Kind::Unauthorized => StatusCode::UNAUTHORIZED,
            Kind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// Metrics class for upstream failures (`sse_edge_upstream_errors_total{class}`).
    pub fn upstream_class(&self) -> Option<UpstreamClass> {
        self.kind.class()
    }

    /// Short client-facing description; never contains internal detail
    /// beyond the cause's own message.
    pub fn message(&self) -> String {
        let what = self.kind.describe();
        match (&self.cause, self.retry_after_secs()) {
            (Some(cause), _) => format!("{what}: {}", chain(cause.as_ref())),
            (None, Some(secs)) => format!("{what}: retry after {secs}s"),
            (None, None) => what.to_owned(),
        }
    }
}

impl Kind {
    /// The `sse-edge-error` code for a relay error kind.
    pub fn code(self) -> &'static str {
        match self {
            Kind::Connect | Kind::Tls => "upstream_unreachable",
            Kind::ConnectTimeout => "upstream_connect_timeout",
            Kind::FirstByteTimeout | Kind::FirstEventTimeout | Kind::UpstreamReadTimeout => {
                "upstream_timeout"
            }
            Kind::UpstreamReset | Kind::UpstreamProtocol => "upstream_error",
            Kind::NoRoute => "no_route",
            Kind::BodyTooLarge => "request_too_large",
            Kind::BadRequest | Kind::DownstreamBody => "bad_request",
            Kind::MethodNotAllowed => "method_not_allowed",
            Kind::NotImplemented => "not_implemented",
            Kind::ShuttingDown => "shutting_down",
            Kind::Overloaded => "overloaded",
            Kind::UriTooLong => "uri_too_long",
            Kind::RequestTimeout => "request_timeout",
            Kind::Unauthorized => "invalid_api_key",
            Kind::RateLimited => "rate_limit_exceeded",
            Kind::ClusterUnavailable => "rate_limit_unavailable",
        }
    }

    /// Metrics class of an upstream failure of this kind.
    pub fn class(self) -> Option<UpstreamClass> {
        match self {
            Kind::Connect => Some(UpstreamClass::Connect),
            Kind::ConnectTimeout
            | Kind::FirstByteTimeout
            | Kind::FirstEventTimeout
            | Kind::UpstreamReadTimeout => Some(UpstreamClass::Timeout),
            Kind::Tls => Some(UpstreamClass::Tls),
            Kind::UpstreamReset => Some(UpstreamClass::Reset),
            Kind::UpstreamProtocol => Some(UpstreamClass::Protocol),
            _ => None,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Kind::Connect => "upstream connect failed",
            Kind::ConnectTimeout => "upstream connect timed out",
            Kind::Tls => "upstream TLS handshake failed",
            Kind::UpstreamReset => "upstream connection failed",
            Kind::UpstreamProtocol => "upstream sent an invalid response",
            Kind::FirstByteTimeout => "upstream response headers timed out",
            Kind::FirstEventTimeout => "upstream sent no event in time",
            Kind::UpstreamReadTimeout => "upstream went silent inside the response",
            Kind::NoRoute => "no route for this path",
            Kind::BodyTooLarge => "request body too large",
            Kind::BadRequest => "bad request",
            Kind::MethodNotAllowed => "method not allowed",
            Kind::NotImplemented => "not implemented",
            Kind::DownstreamBody => "reading the request body failed",
            Kind::ShuttingDown => "relay is shutting down",
            Kind::Overloaded => "relay at its request limit, retry shortly",
            Kind::UriTooLong => "request target too long",
            Kind::RequestTimeout => "request body timed out",
            Kind::Unauthorized => "authentication failed",
            Kind::RateLimited => "rate limit exceeded",
            Kind::ClusterUnavailable => "rate limit store unreachable, retry shortly",
        }
    }
}

/// The cause and its sources, joined with `: `.
fn chain(err: &(dyn StdError + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        next = e.source();
    }
    out
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.cause
            .as_deref()
            .map(|c| c as &(dyn StdError + 'static))
    }
}
