//! Reconnects to resumable streams (see `crate::resume`).
//!
//! Two ways in, one answer:
//! - `GET /sse-edge/streams/<token>`, what an `EventSource` opens with the
//!   `sse-edge-stream-id` of the original response (it then adds
//!   `Last-Event-ID` by itself on every reconnect);
//! - the original request again (any method, same route) with
//!   `Last-Event-ID: <token>:<seq>`, what an SDK retry or a fetch-based
//!   client sends. It is not forwarded: the generation it asked for is
//!   already running.
//!
//! The answer is `200 text/event-stream` replaying every event after the
//! named one, then following the live stream; or a refusal saying why.

use http::request::Parts;
use http::{HeaderValue, Method, Response, StatusCode, header};

use super::ResponseBody;
use super::{ConnInfo, Relay, reply};
use crate::body::Heartbeat;
use crate::dialect::Dialect;
use crate::error::{Error, Kind};
use crate::resume::{self, Gone, Reader, ResumeError, Token};
use crate::telemetry::{Exchange, ResumeResult};

/// What a request asks to resume, if anything.
pub(super) enum Ask {
    /// `GET /sse-edge/streams/<token>`, with `Last-Event-ID` if it had one.
    Path(Option<Token>, Option<u64>),
    /// `Last-Event-ID: <token>:<seq>` on a route with resumption on.
    Header(Token, u64),
}

/// A request on the resume path.
pub(super) fn by_path(parts: &Parts) -> Result<Option<Ask>, Error> {
    let Some(rest) = parts.uri.path().strip_prefix(resume::PATH_PREFIX) else {
        return Ok(None);
    };
    if parts.method != Method::GET {
        return Err(Error::with_cause(
            Kind::MethodNotAllowed,
            "the resume endpoint takes GET",
        ));
    }
    let token = Token::parse(rest);
    let after = match parts.headers.get("last-event-id") {
        None => None,
        Some(v) => match resume::parse_last_event_id(v.as_bytes()) {
            Some((t, seq)) if Some(t) == token => Some(seq),
            _ => {
                return Err(Error::with_cause(
                    Kind::BadRequest,
                    "Last-Event-ID is not an event id of the stream in the path",
                ));
            }
        },
    };
    Ok(Some(Ask::Path(token, after)))
}

/// A request carrying one of this relay's event ids.
pub(super) fn by_header(parts: &Parts) -> Option<Ask> {
    let v = parts.headers.get("last-event-id")?;
    let (token, seq) = resume::parse_last_event_id(v.as_bytes())?;
    Some(Ask::Header(token, seq))
}

impl Relay {
    /// Serves a reconnect. `checked` is the route whose auth the request
    /// already passed (the header form): the stream must be that route's.
    pub(super) async fn resume(
        &self,
        ask: Ask,
        parts: &Parts,
        conn: &ConnInfo,
        guess: Dialect,
        checked: Option<usize>,
        mut x: Exchange,
    ) -> Response<ResponseBody> {
        let as_event = accepts_event_stream(parts);
        let (token, after) = match ask {
            Ask::Path(Some(t), after) => (t, after),
            Ask::Path(None, _) => {
                return self.refused(ResumeError::Unknown, guess, as_event, x);
            }
            Ask::Header(t, seq) => (t, Some(seq)),
        };
        // Held here, or (cluster mode) by the replica the token names.
        let stream = self.hub.find(token);
        let remote = self
            .hub
            .remote()
            .filter(|r| stream.is_none() && r.elsewhere(token));
        let origin = match (&stream, remote, checked) {
            (Some(s), _, _) => Some((s.route(), s.dialect())),
            // The header form's route was checked: the producer checks it
            // is the stream's.
            (None, Some(_), Some(route)) => Some((route, guess)),
            // The path form asks the producer which route to check.
            (None, Some(r), None) => match r.query(token).await {
                Ok(found) => Some(found),
                Err(e) => return self.refused(e, guess, as_event, x),
            },
            (None, None, _) => None,
        };
        if checked.is_some_and(|i| origin.is_some_and(|(route, _)| route != i)) {
            return self.refused(ResumeError::Unknown, guess, as_event, x);
        }
        let dialect = origin.map_or(guess, |(_, d)| d);
        if checked.is_none() {
            // The path form is checked against the route the stream came from.
            if let Some(route) = origin.and_then(|(i, _)| self.routes.get(i)) {
                x.set_route(route.index, route.name.clone(), dialect.as_str());
                if let Err(e) = route
                    .auth
                    .check(&parts.headers, conn.peer.ip(), &mut x)
                    .await
                {
                    return reply::error(&e, dialect, Some(x));
                }
            }
        }
        let key = x.key().cloned();
        let metrics = self.hub.metrics().clone();
        let (reader, route) = match (remote, origin) {
            (Some(r), Some((route, _))) => {
                match r.attach(token, after, route, key.as_deref()).await {
                    Ok((dialect, feed)) => {
                        let heartbeat = self.heartbeat(route, conn);
                        let reader = Reader::remote(feed, dialect, heartbeat, metrics.clone());
                        (reader, route)
                    }
                    Err(e) => return self.refused(e, dialect, as_event, x),
                }
            }
            _ => match self.hub.attach(token, after, key.as_deref()) {
                Ok((stream, at)) => {
                    let heartbeat = self.heartbeat(stream.route(), conn);
                    let route = stream.route();
                    (Reader::new(stream, at, heartbeat, metrics.clone()), route)
                }
                Err(e) => return self.refused(e, dialect, as_event, x),
            },
        };
        metrics.resume.count(ResumeResult::Resumed);
        tracing::debug!(
            after = after.unwrap_or(0),
            route,
            elsewhere = remote.is_some(),
            "stream resumed"
        );
        x.set_status(StatusCode::OK.as_u16());
        let mut res = Response::new(ResponseBody::resumable(reader, Some(x)));
        stream_head(&mut res, token);
        res
    }

    /// A reconnect's keepalives: its route's interval, on its connection.
    fn heartbeat(&self, route: usize, conn: &ConnInfo) -> Heartbeat {
        let every = self
            .routes
            .get(route)
            .map_or(crate::config::StreamConfig::default().heartbeat, |r| {
                r.stream.heartbeat
            });
        Heartbeat::new(conn.wheel.clone(), every)
    }

    fn refused(
        &self,
        e: ResumeError,
        dialect: Dialect,
        as_event: bool,
        x: Exchange,
    ) -> Response<ResponseBody> {
        let (status, result) = match e {
            ResumeError::Unknown => (StatusCode::NOT_FOUND, ResumeResult::Unknown),
            ResumeError::Gone(Gone::Stopped) => {
                (StatusCode::SERVICE_UNAVAILABLE, ResumeResult::Expired)
            }
            ResumeError::Gone(_) => (StatusCode::GONE, ResumeResult::Expired),
            ResumeError::Overflow { .. } => (StatusCode::GONE, ResumeResult::Overflow),
            ResumeError::Ahead { .. } => (StatusCode::BAD_REQUEST, ResumeResult::BadPosition),
            ResumeError::Unreachable => {
                (StatusCode::SERVICE_UNAVAILABLE, ResumeResult::Unreachable)
            }
        };
        self.hub.metrics().resume.count(result);
        let (code, message) = resume::describe(e);
        tracing::info!(code, "resume refused: {message}");
        reply::resume_refused(status, code, &message, dialect, as_event, x)
    }
}

/// The head of a resumable stream's answer (original or resumed).
pub(super) fn stream_head(res: &mut Response<ResponseBody>, token: Token) {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        &super::headers::X_ACCEL_BUFFERING,
        HeaderValue::from_static("no"),
    );
    set_stream_id(res, token);
}

pub(super) fn set_stream_id(res: &mut Response<ResponseBody>, token: Token) {
    if let Ok(v) = HeaderValue::from_str(&token.to_string()) {
        res.headers_mut().insert(resume::STREAM_ID_HEADER, v);
    }
}

fn accepts_event_stream(parts: &Parts) -> bool {
    parts
        .headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("text/event-stream"))
}
