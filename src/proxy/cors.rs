//! CORS at the edge: a route's policy (`config::CorsConfig`) applied to
//! every answer the route gives, whoever made it.
//!
//! Rules this file keeps:
//! - **Preflights are the relay's.** On a route with a policy, an
//!   `OPTIONS` with `Origin` and `Access-Control-Request-Method` is
//!   answered here, before auth (browsers never send credentials on a
//!   preflight) and without an upstream round trip: `204` with the
//!   policy's fields for an allowed origin, a bare `403` (only
//!   `sse-edge-error: cors_origin_refused`) for any other.
//! - **Every answer to an allowed origin carries the policy** (relayed,
//!   early-committed, relay-made, resumed, `json_keepalive`):
//!   `Access-Control-Allow-Origin` (the request's origin, echoed),
//!   `-Allow-Credentials` when allowed, `-Expose-Headers`. A disallowed
//!   origin, or no `Origin`, gets none of them.
//! - **The upstream's CORS fields are replaced, not merged**: every
//!   `access-control-*` field it sent is removed on a route with a policy.
//!   Merging could let an upstream's `*` widen the policy, or send two
//!   `Access-Control-Allow-Origin` values, which browsers reject.
//! - **`Vary: Origin` on every answer of a policy route**, added to what
//!   the upstream's `Vary` says (unless that is `*` or names it), since
//!   the answer depends on `Origin` even when it grants nothing.
//! - **Routes without a policy** leave the upstream's fields alone and do
//!   not commit early for a cross-origin request ([`cross_origin`]): its
//!   head must be the upstream's, the only one that can carry CORS fields
//!   there.
//! - **The resume endpoint** takes the policy of the stream's route (live
//!   or remembered as gone); for a token the relay does not know, the
//!   first route in the file with resumption and a policy that allows the
//!   origin, so a browser can read the `404`.

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, header};

use super::{Relay, ResponseBody, RouteTable};
use crate::config::{Allowed, AllowedOrigins, CorsConfig, StreamConfig, relay_exposed};
use crate::resume::{self, Token};
use crate::telemetry::{Exchange, Outcome};

/// A route's policy, its fields rendered once.
pub(crate) struct Cors {
    origins: AllowedOrigins,
    /// `None`: echo the preflight's request.
    methods: Option<HeaderValue>,
    headers: Option<HeaderValue>,
    expose: HeaderValue,
    credentials: bool,
    max_age: HeaderValue,
}

static PREFLIGHT_VARY: HeaderValue = HeaderValue::from_static(
    "origin, access-control-request-method, access-control-request-headers",
);

impl Cors {
    pub(crate) fn new(c: &CorsConfig, stream: &StreamConfig) -> Self {
        let joined = |items: &[String]| HeaderValue::from_str(&items.join(", ")).ok();
        let allowed = |a: &Allowed| match a {
            Allowed::Echo => None,
            Allowed::List(l) => joined(l),
        };
        let mut expose: Vec<String> = c.expose.clone();
        for field in relay_exposed(stream) {
            if !expose.iter().any(|e| e == field) {
                expose.push(field.to_owned());
            }
        }
        Self {
            origins: c.origins.clone(),
            methods: allowed(&c.methods),
            headers: allowed(&c.headers),
            // Tokens joined by ", ": always a valid value.
            expose: joined(&expose).unwrap_or(HeaderValue::from_static("sse-edge-error")),
            credentials: c.credentials,
            max_age: HeaderValue::from(c.max_age.as_secs()),
        }
    }

    pub(crate) fn allows(&self, origin: &HeaderValue) -> bool {
        self.origins.allows(origin.as_bytes())
    }
}

/// What one request's answer gets on a route with a policy.
pub(super) struct Grant<'a> {
    policy: &'a Cors,
    /// The request's `Origin`, when the policy allows it.
    origin: Option<HeaderValue>,
}

impl<'a> Grant<'a> {
    fn new(policy: &'a Cors, headers: &HeaderMap) -> Self {
        let origin = headers
            .get(header::ORIGIN)
            .filter(|o| policy.allows(o))
            .cloned();
        Self { policy, origin }
    }

    /// Applies the policy to an answer's head (see the module doc).
    pub(super) fn apply(&self, h: &mut HeaderMap) {
        remove_cors_fields(h);
        add_vary_origin(h);
        let Some(origin) = &self.origin else { return };
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        if self.policy.credentials {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            self.policy.expose.clone(),
        );
    }

    /// The relay's answer to a preflight: `204` with the policy for an
    /// allowed origin, a bare `403` for any other.
    pub(super) fn preflight(&self, parts: &Parts, mut x: Exchange) -> Response<ResponseBody> {
        let p = self.policy;
        let Some(origin) = &self.origin else {
            x.set_status(StatusCode::FORBIDDEN.as_u16());
            let mut res = Response::new(ResponseBody::full(Bytes::new(), Some(x)));
            *res.status_mut() = StatusCode::FORBIDDEN;
            let h = res.headers_mut();
            h.insert(header::VARY, PREFLIGHT_VARY.clone());
            h.insert(
                "sse-edge-error",
                HeaderValue::from_static("cors_origin_refused"),
            );
            return res;
        };
        x.set_status(StatusCode::NO_CONTENT.as_u16());
        x.finish(Outcome::Complete);
        let mut res = Response::new(ResponseBody::full(Bytes::new(), Some(x)));
        *res.status_mut() = StatusCode::NO_CONTENT;
        let h = res.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        if p.credentials {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        let asked = |name: HeaderName| parts.headers.get(name).filter(|v| is_token_list(v));
        let methods = p
            .methods
            .as_ref()
            .or_else(|| asked(header::ACCESS_CONTROL_REQUEST_METHOD));
        if let Some(v) = methods {
            h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, v.clone());
        }
        let headers = p
            .headers
            .as_ref()
            .or_else(|| asked(header::ACCESS_CONTROL_REQUEST_HEADERS));
        if let Some(v) = headers {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
        }
        h.insert(header::ACCESS_CONTROL_MAX_AGE, p.max_age.clone());
        h.insert(header::VARY, PREFLIGHT_VARY.clone());
        res
    }
}

/// A CORS preflight: `OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`.
pub(super) fn is_preflight(parts: &Parts) -> bool {
    parts.method == Method::OPTIONS
        && parts.headers.contains_key(header::ORIGIN)
        && parts
            .headers
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// A request a browser made for a page of another origin: it carries
/// `Origin`, and no `Sec-Fetch-Site: same-origin` (browsers send `Origin`
/// on same-origin `POST`s too, and those need no CORS fields).
pub(super) fn cross_origin(headers: &HeaderMap) -> bool {
    headers.contains_key(header::ORIGIN)
        && headers
            .get("sec-fetch-site")
            .is_none_or(|v| v.as_bytes() != b"same-origin")
}

impl Relay {
    /// The CORS treatment of a request: `None` when its route (or, on the
    /// resume endpoint, its stream's route) has no policy.
    pub(super) fn cors_grant(&self, parts: &Parts) -> Option<Grant<'_>> {
        if !self.routes.any_cors() {
            return None;
        }
        let path = parts.uri.path();
        let policy = match path.strip_prefix(resume::PATH_PREFIX) {
            Some(rest) => self.resume_policy(Token::parse(rest), &parts.headers),
            None => self.routes.find(path).and_then(|r| r.cors.as_ref()),
        }?;
        Some(Grant::new(policy, &parts.headers))
    }

    fn resume_policy(&self, token: Option<Token>, headers: &HeaderMap) -> Option<&Cors> {
        let route = token.and_then(|t| self.hub.route_of(t));
        match route {
            Some(index) => self.routes.get(index).and_then(|r| r.cors.as_ref()),
            None => {
                let origin = headers.get(header::ORIGIN)?;
                self.routes.resume_cors(origin)
            }
        }
    }
}

impl RouteTable {
    /// For a resume token the relay does not know: the policy of the first
    /// route (in file order) with resumption on and a policy allowing
    /// `origin`.
    fn resume_cors(&self, origin: &HeaderValue) -> Option<&Cors> {
        self.in_order()
            .filter(|r| r.stream.resume_window.is_some())
            .filter_map(|r| r.cors.as_ref())
            .find(|c| c.allows(origin))
    }
}

/// Removes every `access-control-*` field (the upstream's, replaced).
fn remove_cors_fields(h: &mut HeaderMap) {
    let is_cors = |k: &HeaderName| k.as_str().starts_with("access-control-");
    if !h.keys().any(is_cors) {
        return;
    }
    let names: Vec<HeaderName> = h.keys().filter(|k| is_cors(k)).cloned().collect();
    for name in names {
        h.remove(name);
    }
}

/// Adds `origin` to `Vary` unless a `Vary` field already names it or is `*`.
fn add_vary_origin(h: &mut HeaderMap) {
    let covered = h.get_all(header::VARY).iter().any(|v| {
        v.as_bytes().split(|&b| b == b',').any(|t| {
            let t = t.trim_ascii();
            t == b"*" || t.eq_ignore_ascii_case(b"origin")
        })
    });
    if !covered {
        h.append(header::VARY, HeaderValue::from_static("origin"));
    }
}

/// A comma-separated list of tokens (what a browser puts in
/// `Access-Control-Request-Method` / `-Headers`), safe to echo.
fn is_token_list(v: &HeaderValue) -> bool {
    let ok = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~, ".contains(&b);
    !v.is_empty() && v.as_bytes().iter().all(|&b| ok(b))
}

#[cfg(test)]
mod tests;
