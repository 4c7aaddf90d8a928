//! `hyper-floor`: the thinnest relay that can be built from hyper's own
//! server and client halves, as a yardstick for issue 18 (BENCHMARKS.md).
//!
//! It takes sse-edge's command line (so the harness runs it as a variant:
//! `e2e-bench run --variants sse-edge=BIN,hyper-floor=PATH`), uses
//! `--listen`, `--upstream`, `--tls-cert` and `--tls-key`, and ignores the
//! rest. One current-thread runtime, as `sse-edge --workers 1`. Each
//! request goes to the upstream unchanged over a pooled HTTP/1.1
//! connection (hyper's client `SendRequest`, handed back when the answer's
//! body ends), and the answer's body streams back as hyper's `Incoming`.
//! No header rewriting, no body reading, no event scanning, no usage, no
//! timeouts, no metrics: what is left is what hyper and tokio cost. A row
//! where this relay's CPU is above 0.9× the best peer cannot meet its
//! target on hyper, whatever the relay's own features cost.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};

type Pool = Arc<Mutex<Vec<SendRequest<Incoming>>>>;
type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() {
    if let Err(e) = run() {
        eprintln!("hyper-floor: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let listen: SocketAddr = opt("--listen").ok_or("--listen is required")?.parse()?;
    let upstream = opt("--upstream").ok_or("--upstream is required")?;
    let upstream: SocketAddr = upstream
        .strip_prefix("http://")
        .ok_or("--upstream must be http://HOST:PORT")?
        .trim_end_matches('/')
        .parse()?;
    let tls = match (opt("--tls-cert"), opt("--tls-key")) {
        (Some(cert), Some(key)) => Some(acceptor(&cert, &key)?),
        _ => None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(listen).await?;
        let pool: Pool = Arc::default();
        loop {
            let (tcp, _) = listener.accept().await?;
            tcp.set_nodelay(true)?;
            let pool = pool.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req| relay(req, upstream, pool.clone()));
                let http = hyper::server::conn::http1::Builder::new();
                let _ = match tls {
                    Some(tls) => match tls.accept(tcp).await {
                        Ok(s) => http.serve_connection(TokioIo::new(s), service).await,
                        Err(_) => return,
                    },
                    None => http.serve_connection(TokioIo::new(tcp), service).await,
                };
            });
        }
    })
}

fn acceptor(cert: &str, key: &str) -> Result<tokio_rustls::TlsAcceptor, Error> {
    let certs = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

async fn relay(
    req: Request<Incoming>,
    upstream: SocketAddr,
    pool: Pool,
) -> Result<Response<Returning>, Error> {
    let idle = pool.lock().map_err(|_| "pool poisoned")?.pop();
    let mut sender = match idle {
        Some(s) => s,
        None => {
            let tcp = TcpStream::connect(upstream).await?;
            tcp.set_nodelay(true)?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
            tokio::spawn(conn);
            sender
        }
    };
    sender.ready().await?;
    let answer = sender.send_request(req).await?;
    let (head, body) = answer.into_parts();
    let body = Returning {
        body,
        sender: Some(sender),
        pool,
    };
    Ok(Response::from_parts(head, body))
}

/// The answer's body; the upstream connection goes back to the pool when
/// the body has ended (a body dropped early closes it).
struct Returning {
    body: Incoming,
    sender: Option<SendRequest<Incoming>>,
    pool: Pool,
}

impl Body for Returning {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        // hyper stops polling a body that says it has ended, so the last
        // frame of a sized body is the end too.
        let ended = matches!(polled, Poll::Ready(None)) || this.body.is_end_stream();
        if ended {
            if let Some(sender) = this.sender.take() {
                if let Ok(mut idle) = this.pool.lock() {
                    idle.push(sender);
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
