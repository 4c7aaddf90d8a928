//! The demo's client: plain HTTP/1.1 over hyper, one connection per
//! request, printing each piece of a streamed answer the moment it arrives.
//!
//! The event-stream reader keeps comment lines (a WHATWG parser drops them)
//! so the relay's keepalives can be shown. It splits lines at LF and drops
//! a CR before it, which is how the relay and the simulated API end lines.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::DemoError;
use super::output::{Mark, Output};
use super::script::{Dialect, Scenario};
use super::transcript::Transcript;

/// Most bytes of a non-streaming answer (metrics, error bodies) read.
const MAX_BODY: usize = 4 << 20;

/// One parsed piece of an event stream.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Item {
    /// A comment line, without its colon.
    Comment(String),
    /// A dispatched event: its type (`message` when unnamed) and data.
    Event { name: String, data: String },
}

/// A line-by-line event-stream reader that reports comments too.
#[derive(Debug, Default)]
pub(super) struct SseReader {
    pending: Vec<u8>,
    name: String,
    data: String,
    has_data: bool,
}

impl SseReader {
    /// Feeds one chunk; complete items are appended to `items`.
    pub(super) fn feed(&mut self, chunk: &[u8], items: &mut Vec<Item>) {
        self.pending.extend_from_slice(chunk);
        let mut start = 0;
        while let Some(i) = memchr::memchr(b'\n', &self.pending[start..]) {
            let end = start + i;
            let line = self.pending[start..end].strip_suffix(b"\r");
            let line = line.unwrap_or(&self.pending[start..end]);
            let line = String::from_utf8_lossy(line).into_owned();
            self.line(&line, items);
            start = end + 1;
        }
        self.pending.drain(..start);
    }

    fn line(&mut self, line: &str, items: &mut Vec<Item>) {
        if line.is_empty() {
            if self.has_data {
                let name = std::mem::take(&mut self.name);
                let name = if name.is_empty() {
                    "message".into()
                } else {
                    name
                };
                let data = std::mem::take(&mut self.data);
                items.push(Item::Event { name, data });
            }
            self.name.clear();
            self.has_data = false;
            return;
        }
        if let Some(comment) = line.strip_prefix(':') {
            items.push(Item::Comment(comment.trim_start().to_owned()));
            return;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => value.clone_into(&mut self.name),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            _ => {}
        }
    }
}

/// Opens an HTTP/1.1 connection to `addr`.
async fn connect(addr: SocketAddr) -> Result<http1::SendRequest<Full<Bytes>>, DemoError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|source| DemoError::Connect { addr, source })?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(DemoError::Http)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("demo client connection: {e}");
        }
    });
    Ok(sender)
}

fn request(method: Method, addr: SocketAddr, path: &str, body: Bytes) -> Request<Full<Bytes>> {
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = method;
    *req.uri_mut() = path.parse().unwrap_or_default();
    if let Ok(host) = HeaderValue::from_str(&addr.to_string()) {
        req.headers_mut().insert(header::HOST, host);
    }
    req
}

/// `GET path` on `addr`; the body as text.
pub(super) async fn get(addr: SocketAddr, path: &str) -> Result<String, DemoError> {
    let mut sender = connect(addr).await?;
    let res = sender
        .send_request(request(Method::GET, addr, path, Bytes::new()))
        .await
        .map_err(DemoError::Http)?;
    body_text(res).await
}

async fn body_text(res: Response<Incoming>) -> Result<String, DemoError> {
    let collected = http_body_util::Limited::new(res.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(DemoError::Body)?;
    Ok(String::from_utf8_lossy(&collected.to_bytes()).into_owned())
}

/// Sends `scenario` to the relay at `relay` and prints the answer as it
/// streams in; fails when it does not end as its dialect says it should.
pub(super) async fn stream(
    scenario: &Scenario,
    relay: SocketAddr,
    out: &mut Output,
    limit: Duration,
) -> Result<Transcript, DemoError> {
    let mut transcript = Transcript::new(scenario.dialect);
    let run = run_stream(scenario, relay, out, &mut transcript);
    match tokio::time::timeout(limit, run).await {
        Ok(result) => result.map(|()| transcript),
        Err(_) => Err(DemoError::Timeout {
            what: scenario.title,
            after: limit,
        }),
    }
}

async fn run_stream(
    scenario: &Scenario,
    relay: SocketAddr,
    out: &mut Output,
    transcript: &mut Transcript,
) -> Result<(), DemoError> {
    let mut sender = connect(relay).await?;
    let mut req = request(
        Method::POST,
        relay,
        scenario.path,
        Bytes::from_static(scenario.body.as_bytes()),
    );
    let h = req.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::ACCEPT,
        HeaderValue::from_static("text/event-stream"),
    );
    for (name, value) in scenario.headers {
        h.insert(*name, HeaderValue::from_static(value));
    }
    out.restart_clock();
    out.mark(
        Mark::Send,
        &format!("POST {} sent to the relay", scenario.path),
    );
    let res = sender.send_request(req).await.map_err(DemoError::Http)?;
    show_head(&res, scenario.dialect, out);
    let status = res.status();
    if !status.is_success() {
        let body = body_text(res).await?;
        out.mark(Mark::Error, &body);
        return Err(DemoError::Status {
            what: scenario.title,
            status,
        });
    }
    read_events(res.into_body(), out, transcript).await?;
    if transcript.complete() {
        Ok(())
    } else {
        Err(DemoError::Incomplete {
            what: scenario.title,
        })
    }
}

fn show_head(res: &Response<Incoming>, dialect: Dialect, out: &mut Output) {
    let status = res.status();
    let kind = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("no content-type");
    let early = res.headers().contains_key("sse-edge-early-commit");
    let why = if early {
        let frame = match dialect {
            Dialect::OpenAi => "`: keepalive` comments",
            Dialect::Anthropic => "`event: ping` events",
        };
        out.dim(&format!(
            "  early commit by the relay (sse-edge-early-commit: 1): the API is still silent; {frame} follow"
        ))
    } else {
        out.dim("  the model API's own headers")
    };
    out.mark(Mark::Head, &format!("{status}  {kind}{why}"));
}

async fn read_events(
    mut body: Incoming,
    out: &mut Output,
    transcript: &mut Transcript,
) -> Result<(), DemoError> {
    let mut reader = SseReader::default();
    let mut items = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(DemoError::Http)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        reader.feed(&data, &mut items);
        for item in items.drain(..) {
            transcript.show(item, out);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(chunks: &[&[u8]]) -> Vec<Item> {
        let mut reader = SseReader::default();
        let mut items = Vec::new();
        for c in chunks {
            reader.feed(c, &mut items);
        }
        items
    }

    #[test]
    fn comments_and_events_survive_any_split() {
        let stream: &[u8] =
            b": keepalive\n\nevent: ping\r\ndata: {\"type\": \"ping\"}\r\n\r\ndata: a\ndata: b\n\n: x\n";
        let want = vec![
            Item::Comment("keepalive".into()),
            Item::Event {
                name: "ping".into(),
                data: "{\"type\": \"ping\"}".into(),
            },
            Item::Event {
                name: "message".into(),
                data: "a\nb".into(),
            },
            Item::Comment("x".into()),
        ];
        for split in 0..=stream.len() {
            let (a, b) = stream.split_at(split);
            assert_eq!(items(&[a, b]), want, "split at {split}");
        }
    }

    #[test]
    fn an_event_without_data_is_not_dispatched() {
        assert_eq!(items(&[b"event: ping\n\n"]), Vec::new());
    }
}
