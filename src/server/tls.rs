//! TLS termination with certificate reload.
//!
//! TLS 1.2 and 1.3 only, no 0-RTT (early data is replayable; a relay that
//! forwards POSTs must not accept it). ALPN offers `h2` (when HTTP/2 is on)
//! and `http/1.1`.
//!
//! The certificate lives behind a resolver that every handshake asks. A
//! reload task re-reads the cert and key files every `reload_interval` and
//! swaps the certificate when their contents changed and parse; live
//! connections keep the session they negotiated. A bad new pair is refused
//! with a log line and the old certificate stays in service. (Kubernetes
//! swaps a Secret's files through a symlink, so content comparison is the
//! reliable change test, not mtime.)

use std::io;
use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls::crypto::ring::default_provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConfig;
use crate::shutdown::Shutdown;
use crate::telemetry::Metrics;

/// The certificate in service, swappable.
#[derive(Debug)]
struct Resolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .map_or_else(|p| p.into_inner().clone(), |g| g.clone()),
        )
    }
}

/// Accepts TLS connections with the current certificate.
pub(crate) struct Terminator {
    acceptor: TlsAcceptor,
    resolver: Arc<Resolver>,
    cfg: TlsConfig,
    /// The file contents in service, the reload watcher's starting point.
    loaded: Raw,
}

impl Terminator {
    pub(crate) fn new(cfg: &TlsConfig, http2: bool) -> io::Result<Self> {
        let raw = read_raw(&cfg.cert, &cfg.key)
            .map_err(|e| io::Error::new(e.kind(), format!("reading TLS files: {e}")))?;
        let (cert, key) = parse_pair(&raw)?;
        let certified = certified_key(cert, key)?;
        let resolver = Arc::new(Resolver {
            current: RwLock::new(Arc::new(certified)),
        });
        let mut sc = ServerConfig::builder_with_provider(Arc::new(default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(io::Error::other)?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        sc.max_early_data_size = 0;
        sc.alpn_protocols = if http2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(sc)),
            resolver,
            cfg: cfg.clone(),
            loaded: raw,
        })
    }

    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    pub(crate) fn handshake_timeout(&self) -> std::time::Duration {
        self.cfg.handshake_timeout
    }

    /// Re-reads the files every `reload_interval` until `stop` fires.
    pub(crate) async fn watch(self: Arc<Self>, metrics: Arc<Metrics>, stop: Shutdown) {
        let mut last = self.loaded.clone();
        let mut tick = tokio::time::interval(self.cfg.reload_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.wait() => return,
            }
            let Ok(raw) = read_raw(&self.cfg.cert, &self.cfg.key) else {
                continue; // mid-rotation or briefly missing: try next tick
            };
            if last == raw {
                continue;
            }
            match parse_pair(&raw).and_then(|(c, k)| certified_key(c, k)) {
                Ok(ck) => {
                    *self
                        .resolver
                        .current
                        .write()
                        .unwrap_or_else(|p| p.into_inner()) = Arc::new(ck);
                    metrics
                        .cert_reloads_ok
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::info!("TLS certificate reloaded from {}", self.cfg.cert.display());
                }
                Err(e) => {
                    metrics
                        .cert_reloads_failed
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::error!("TLS certificate reload refused, keeping the old one: {e}");
                }
            }
            last = raw;
        }
    }
}

type Raw = (Vec<u8>, Vec<u8>);

fn read_raw(cert: &Path, key: &Path) -> io::Result<Raw> {
    Ok((std::fs::read(cert)?, std::fs::read(key)?))
}

fn parse_pair(raw: &Raw) -> io::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let certs = CertificateDer::pem_slice_iter(&raw.0)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| io::Error::other(format!("tls.cert: {e}")))?;
    if certs.is_empty() {
        return Err(io::Error::other("tls.cert: no certificate in file"));
    }
    let key = PrivateKeyDer::from_pem_slice(&raw.1)
        .map_err(|e| io::Error::other(format!("tls.key: {e}")))?;
    Ok((certs, key))
}

/// Checks that the key matches the certificate before it goes into service.
fn certified_key(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> io::Result<CertifiedKey> {
    let provider = default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| io::Error::other(format!("tls.key: {e}")))?;
    let ck = CertifiedKey::new(certs, signing);
    ck.keys_match()
        .map_err(|e| io::Error::other(format!("tls.cert/tls.key: {e}")))?;
    Ok(ck)
}
