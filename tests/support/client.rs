//! Test clients over real sockets: HTTP/1.1, h2c and TLS connections,
//! whole and frame-by-frame response reading, and raw HTTP/1.1 exchanges.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri, Version, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::{http1 as client_h1, http2 as client_h2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{TestBody, client_tls_config, empty, full};

/// A complete response.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }
}

/// Reads a whole response.
pub async fn collect(res: Response<Incoming>) -> Resp {
    let (parts, body) = res.into_parts();
    let body = body.collect().await.expect("response body").to_bytes();
    Resp {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body,
    }
}

/// One data frame and when it arrived.
#[derive(Debug, Clone)]
pub struct Timed {
    pub at: Instant,
    pub data: Bytes,
}

/// Reads a body frame by frame; returns the frames and the error that ended
/// it, if any.
pub async fn read_frames(mut body: Incoming) -> (Vec<Timed>, Option<hyper::Error>) {
    let mut out = Vec::new();
    loop {
        match body.frame().await {
            None => return (out, None),
            Some(Ok(f)) => {
                if let Ok(data) = f.into_data() {
                    out.push(Timed {
                        at: Instant::now(),
                        data,
                    });
                }
            }
            Some(Err(e)) => return (out, Some(e)),
        }
    }
}

pub fn joined(frames: &[Timed]) -> Vec<u8> {
    frames.iter().flat_map(|f| f.data.iter().copied()).collect()
}

/// What a TLS handshake negotiated.
#[derive(Debug, Clone)]
pub struct TlsInfo {
    pub alpn: Option<Vec<u8>>,
    /// The peer's leaf certificate (DER).
    pub peer_cert: Vec<u8>,
}

/// A TLS connection to `addr` trusting [`test_ca`], SNI `localhost`.
pub async fn tls_connect(
    addr: SocketAddr,
    alpn: &[&[u8]],
) -> (tokio_rustls::client::TlsStream<TcpStream>, TlsInfo) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(client_tls_config(alpn));
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake");
    let c = tls.get_ref().1;
    let info = TlsInfo {
        alpn: c.alpn_protocol().map(<[u8]>::to_vec),
        peer_cert: c
            .peer_certificates()
            .and_then(|certs| certs.first())
            .map(|c| c.to_vec())
            .unwrap_or_default(),
    };
    (tls, info)
}

/// A client connection (HTTP/1.1 or HTTP/2) over a real socket.
pub struct Client {
    conn: ClientConn,
    authority: String,
    scheme: &'static str,
}

enum ClientConn {
    H1(client_h1::SendRequest<TestBody>),
    H2(client_h2::SendRequest<TestBody>),
}

impl Client {
    /// Plain HTTP/1.1.
    pub async fn h1(addr: SocketAddr) -> Client {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.set_nodelay(true).unwrap();
        Client::over(tcp, false, addr.to_string(), false).await
    }

    /// HTTP/2 with prior knowledge (h2c).
    pub async fn h2(addr: SocketAddr) -> Client {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.set_nodelay(true).unwrap();
        Client::over(tcp, true, addr.to_string(), false).await
    }

    /// TLS with `alpn`; speaks HTTP/2 if the server picked `h2`.
    pub async fn tls(addr: SocketAddr, alpn: &[&[u8]]) -> (Client, TlsInfo) {
        let (tls, info) = tls_connect(addr, alpn).await;
        let h2 = info.alpn.as_deref() == Some(b"h2");
        let authority = format!("localhost:{}", addr.port());
        (Client::over(tls, h2, authority, true).await, info)
    }

    pub async fn over<I>(io: I, h2: bool, authority: String, https: bool) -> Client
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let io = TokioIo::new(io);
        let conn = if h2 {
            let (tx, conn) = client_h2::Builder::new(TokioExecutor::new())
                .handshake(io)
                .await
                .expect("h2 handshake");
            tokio::spawn(async move {
                let _ = conn.await;
            });
            ClientConn::H2(tx)
        } else {
            let (tx, conn) = client_h1::handshake(io).await.expect("h1 handshake");
            tokio::spawn(async move {
                let _ = conn.await;
            });
            ClientConn::H1(tx)
        };
        Client {
            conn,
            authority,
            scheme: if https { "https" } else { "http" },
        }
    }

    pub fn is_h2(&self) -> bool {
        matches!(self.conn, ClientConn::H2(_))
    }

    /// Sends `req`; fills in Host (HTTP/1.1) or scheme and authority (HTTP/2).
    pub async fn send(&mut self, mut req: Request<TestBody>) -> hyper::Result<Response<Incoming>> {
        match &mut self.conn {
            ClientConn::H1(tx) => {
                if !req.headers().contains_key(header::HOST) {
                    let host = HeaderValue::from_str(&self.authority).unwrap();
                    req.headers_mut().insert(header::HOST, host);
                }
                tx.ready().await?;
                tx.send_request(req).await
            }
            ClientConn::H2(tx) => {
                if req.uri().scheme().is_none() {
                    let pq = req
                        .uri()
                        .path_and_query()
                        .map_or("/", |p| p.as_str())
                        .to_owned();
                    *req.uri_mut() = format!("{}://{}{pq}", self.scheme, self.authority)
                        .parse::<Uri>()
                        .unwrap();
                }
                *req.version_mut() = Version::HTTP_2;
                tx.ready().await?;
                tx.send_request(req).await
            }
        }
    }

    /// Sends `req` and reads the whole response.
    pub async fn fetch(&mut self, req: Request<TestBody>) -> Resp {
        let res = self.send(req).await.expect("request sent");
        collect(res).await
    }

    pub async fn get(&mut self, path: &str) -> Resp {
        self.fetch(get(path)).await
    }
}

pub fn get(path: &str) -> Request<TestBody> {
    Request::get(path).body(empty()).unwrap()
}

pub fn post(path: &str, body: impl Into<Bytes>) -> Request<TestBody> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(full(body))
        .unwrap()
}

/// A chat-completions request body asking for a stream.
pub const STREAM_REQ: &str = r#"{"model":"m","stream":true,"messages":[]}"#;

/// A reconnect in the SDK's form: the original streaming chat request
/// again, with `Last-Event-ID: id`.
pub fn resume_post(id: &str) -> Request<TestBody> {
    let mut req = post("/v1/chat/completions", STREAM_REQ);
    req.headers_mut()
        .insert("last-event-id", id.parse().expect("header value"));
    req
}

/// A reconnect in the `EventSource` form: `GET` on the resume path of
/// `token`, with `Last-Event-ID` when given.
pub fn resume_get(token: &str, last: Option<&str>) -> Request<TestBody> {
    let mut b =
        Request::get(format!("/sse-edge/streams/{token}")).header("accept", "text/event-stream");
    if let Some(id) = last {
        b = b.header("last-event-id", id);
    }
    b.body(empty()).unwrap()
}

/// A JSON POST of [`STREAM_REQ`].
pub fn stream_post(path: &str) -> Request<TestBody> {
    post(path, STREAM_REQ)
}

/// One request on a fresh HTTP/1.1 connection.
pub async fn fetch_once(addr: SocketAddr, req: Request<TestBody>) -> Resp {
    Client::h1(addr).await.fetch(req).await
}

/// Writes `raw` on a fresh TCP connection and reads until the peer closes
/// (bounded at 10 s).
pub async fn raw_exchange(addr: SocketAddr, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    match read {
        Ok(_) => String::from_utf8_lossy(&out).into_owned(),
        Err(_) => panic!(
            "raw exchange did not end; got so far: {}",
            String::from_utf8_lossy(&out)
        ),
    }
}

/// The status code of a raw HTTP/1.1 response.
pub fn raw_status(resp: &str) -> u16 {
    resp.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {resp:?}"))
}

/// Like [`fetch_once`] but returns errors instead of panicking.
pub async fn try_fetch(addr: SocketAddr, req: Request<TestBody>) -> Result<Resp, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut tx, conn) = client_h1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = req;
    req.headers_mut().insert(
        header::HOST,
        HeaderValue::from_str(&addr.to_string()).unwrap(),
    );
    let res = tx
        .send_request(req)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let (parts, body) = res.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok(Resp {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body,
    })
}
