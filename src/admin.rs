//! The admin listener: `/healthz`, `/readyz`, `/metrics`.
//!
//! In cluster mode `/readyz` stays 200 while Redis is down and says so on
//! a second line (`cluster: up`, `down`, or `unknown` before the first
//! round trip): every replica shares
//! the one Redis, so turning unready would take the whole Service out
//! while traffic without rate limits (and fail-open routes) can still be
//! served; fail-closed routes answer 503 themselves. The state is also
//! `sse_edge_cluster_up` on `/metrics`.
//!
//! Separate port, HTTP/1.1 only, plaintext: it is meant for kubelet probes
//! and Prometheus on the pod network, not for the internet.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::cluster::Cluster;
use crate::proxy::Relay;
use crate::server::AcceptBackoff;
use crate::shutdown::Shutdown;
use crate::telemetry::Metrics;
use crate::upstream::Pool;

/// What the admin endpoints report on.
pub(crate) struct Admin {
    pub metrics: Arc<Metrics>,
    /// Reports its own gauges on `/metrics`.
    pub pool: Arc<Pool>,
    pub relay: Arc<Relay>,
    /// Cluster mode's Redis client, when `[cluster]` is set.
    pub cluster: Option<Arc<Cluster>>,
    /// Set once the client listener is accepting.
    pub ready: AtomicBool,
}

impl Admin {
    /// Serves until `stop`.
    pub(crate) async fn run(self: Arc<Self>, listener: TcpListener, stop: Shutdown) {
        let mut conns = JoinSet::new();
        let mut backoff = AcceptBackoff::new("admin");
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let stream = match accepted {
                        Ok((stream, _)) => stream,
                        Err(e) => {
                            backoff.failed(&e).await;
                            continue;
                        }
                    };
                    let this = self.clone();
                    conns.spawn(async move {
                        let svc = service_fn(move |req| {
                            let this = this.clone();
                            async move { Ok::<_, Infallible>(this.answer(&req)) }
                        });
                        let conn = http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(std::time::Duration::from_secs(10))
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

    fn answer(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
        }
        match req.uri().path() {
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" => {
                if self.relay.is_draining() {
                    text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
                } else if !self.ready.load(Ordering::Acquire) {
                    text(StatusCode::SERVICE_UNAVAILABLE, "starting\n")
                } else {
                    match &self.cluster {
                        None => text(StatusCode::OK, "ready\n"),
                        Some(c) => {
                            let state = c.health().as_str();
                            text(StatusCode::OK, format!("ready\ncluster: {state}\n"))
                        }
                    }
                }
            }
            "/metrics" => {
                let mut out = self.metrics.render();
                self.pool.render_metrics(&mut out);
                self.relay.render_metrics(&mut out);
                if let Some(c) = &self.cluster {
                    c.render_metrics(&mut out);
                }
                let mut res = text(StatusCode::OK, out);
                res.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                res
            }
            _ => text(
                StatusCode::NOT_FOUND,
                "not found: /healthz, /readyz, /metrics\n",
            ),
        }
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(body.into()));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}
