//! The demo's web page: one self-contained HTML file (`page.html`: inline
//! CSS and script, nothing fetched from elsewhere) served on its own
//! loopback port, so the browser treats the relay as another origin and
//! the relay's CORS policy does the work a real app on another origin
//! needs.
//!
//! The page streams a chat completion through the relay's `/browser`
//! route with `fetch`, marks each keepalive and token as it arrives, shows
//! the usage, and has a "cut the connection" button: it aborts the fetch,
//! waits, and resumes from `GET /sse-edge/streams/<token>` with
//! `Last-Event-ID`, checking that every event came once and in order.
//!
//! Its `Content-Security-Policy` lets it load nothing and talk to nothing
//! but the relay.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use crate::shutdown::Shutdown;

const PAGE: &str = include_str!("page.html");

/// The relay route the page streams through (see `super::relay_config`).
pub(super) const ROUTE: &str = "/browser";

/// The page's listener, bound before the relay starts so that the relay's
/// CORS policy can name the page's origin.
pub(super) struct PageListener {
    listener: TcpListener,
    pub addr: SocketAddr,
}

impl PageListener {
    pub(super) async fn bind(addr: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        Ok(Self { listener, addr })
    }

    /// The origins a browser on this machine sends for the page.
    pub(super) fn origins(&self) -> Vec<String> {
        let port = self.addr.port();
        let mut origins = vec![
            format!("http://127.0.0.1:{port}"),
            format!("http://localhost:{port}"),
            format!("http://[::1]:{port}"),
        ];
        let ip = self.addr.ip();
        if !ip.is_loopback() && !ip.is_unspecified() {
            origins.push(format!("http://{}", self.addr));
        }
        origins
    }

    /// Serves the page, pointed at the relay at `relay`, until stopped.
    pub(super) fn serve(self, relay: SocketAddr) -> PageServer {
        let html = PAGE
            .replace("{{RELAY}}", &format!("http://{relay}"))
            .replace("{{ROUTE}}", ROUTE);
        let csp = format!(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src http://{relay}; base-uri 'none'; form-action 'none'"
        );
        let page = Arc::new(Page {
            html: Bytes::from(html),
            csp: HeaderValue::from_str(&csp)
                .unwrap_or(HeaderValue::from_static("default-src 'none'")),
        });
        let stop = Shutdown::new();
        let task = tokio::spawn(serve(self.listener, page, stop.clone()));
        PageServer { stop, task }
    }
}

/// The running page server.
pub(super) struct PageServer {
    stop: Shutdown,
    task: JoinHandle<()>,
}

impl PageServer {
    pub(super) async fn stop(self) {
        self.stop.signal();
        if let Err(e) = self.task.await {
            tracing::warn!("demo page task failed: {e}");
        }
    }
}

struct Page {
    html: Bytes,
    csp: HeaderValue,
}

async fn serve(listener: TcpListener, page: Arc<Page>, stop: Shutdown) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let page = page.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req| answer(req, page.clone()));
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

async fn answer(
    req: Request<Incoming>,
    page: Arc<Page>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let found = matches!(req.uri().path(), "/" | "/index.html");
    let mut res = if found && (req.method() == Method::GET || req.method() == Method::HEAD) {
        let mut res = Response::new(Full::new(page.html.clone()));
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        h.insert(header::CONTENT_SECURITY_POLICY, page.csp.clone());
        res
    } else {
        let mut res = Response::new(Full::new(Bytes::from_static(b"not found\n")));
        *res.status_mut() = StatusCode::NOT_FOUND;
        res
    };
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}
