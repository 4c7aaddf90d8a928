//! rustls client configuration for upstream TLS.
//!
//! Roots come from Mozilla's set (webpki-roots), the system store, or both,
//! plus an optional extra PEM bundle. One `ClientConfig` per ALPN offer, so
//! an `http1`-only route never negotiates `h2`.

use std::io;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};

use crate::config::{RootStore, UpstreamConfig, UpstreamProtocol};

/// Client TLS configurations, one per ALPN offer.
#[derive(Clone)]
pub(super) struct ClientTls {
    auto: Arc<ClientConfig>,
    http1: Arc<ClientConfig>,
    http2: Arc<ClientConfig>,
}

impl ClientTls {
    pub(super) fn new(cfg: &UpstreamConfig) -> io::Result<Self> {
        let roots = Arc::new(root_store(cfg)?);
        let make = |alpn: &[&[u8]]| -> io::Result<Arc<ClientConfig>> {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut c = ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(io::Error::other)?
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Ok(Arc::new(c))
        };
        Ok(Self {
            auto: make(&[b"h2", b"http/1.1"])?,
            http1: make(&[b"http/1.1"])?,
            http2: make(&[b"h2"])?,
        })
    }

    pub(super) fn for_protocol(&self, protocol: UpstreamProtocol) -> Arc<ClientConfig> {
        match protocol {
            UpstreamProtocol::Auto => self.auto.clone(),
            UpstreamProtocol::Http1 => self.http1.clone(),
            UpstreamProtocol::Http2 => self.http2.clone(),
        }
    }
}

fn root_store(cfg: &UpstreamConfig) -> io::Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    if matches!(cfg.roots, RootStore::Webpki | RootStore::Both) {
        store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    if matches!(cfg.roots, RootStore::Native | RootStore::Both) {
        let native = rustls_native_certs::load_native_certs();
        for err in &native.errors {
            tracing::warn!("system CA store: {err}");
        }
        let (added, ignored) = store.add_parsable_certificates(native.certs);
        tracing::debug!("system CA store: {added} roots added, {ignored} ignored");
    }
    if let Some(path) = &cfg.ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| io::Error::other(format!("upstream.ca_file {}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(io::Error::other(format!(
                "upstream.ca_file {}: no certificates found",
                path.display()
            )));
        }
        for cert in certs {
            store.add(cert).map_err(|e| {
                io::Error::other(format!("upstream.ca_file {}: {e}", path.display()))
            })?;
        }
    }
    Ok(store)
}
