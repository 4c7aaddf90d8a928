//! TLS termination: ALPN picks the protocol, and certificates are reloaded
//! from disk without dropping live connections.
// Test code: an unwrap is an assertion, and helpers are `pub` for the
// files that share them.
#![allow(clippy::unwrap_used, unreachable_pub)]

mod support;

use std::time::Duration;

use http::Version;
use support::*;

struct TlsFiles {
    dir: TempDir,
    cert: String,
    key: String,
}

impl TlsFiles {
    fn new(leaf: &Leaf) -> Self {
        let dir = TempDir::new("tls");
        let files = Self {
            cert: dir.path.join("tls.crt").to_str().unwrap().to_owned(),
            key: dir.path.join("tls.key").to_str().unwrap().to_owned(),
            dir,
        };
        files.install(leaf);
        files
    }

    /// Replaces both files (each one atomically; key first).
    fn install(&self, leaf: &Leaf) {
        self.dir.write("tls.key", leaf.key_pem.as_bytes());
        self.dir.write("tls.crt", leaf.cert_pem.as_bytes());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_selects_http2_or_http1() {
    within(async {
        let up = Upstream::start(Mode::Http1, |req: Recorded| async move {
            let proto = req.header("x-forwarded-proto").unwrap_or("-").to_owned();
            json_response(200, format!(r#"{{"proto":"{proto}"}}"#))
        })
        .await;
        let files = TlsFiles::new(&test_ca().leaf("relay.test"));
        let relay =
            start_relay_to(&up, &["--tls-cert", &files.cert, "--tls-key", &files.key]).await;

        let (mut c, info) = Client::tls(relay.listen, &[b"h2", b"http/1.1"]).await;
        assert_eq!(info.alpn.as_deref(), Some(&b"h2"[..]));
        let r = c.get("/v1/models").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.version, Version::HTTP_2);
        assert_eq!(r.text(), r#"{"proto":"https"}"#);

        let (mut c, info) = Client::tls(relay.listen, &[b"http/1.1"]).await;
        assert_eq!(info.alpn.as_deref(), Some(&b"http/1.1"[..]));
        let r = c.get("/v1/models").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.version, Version::HTTP_11);
        assert_eq!(r.text(), r#"{"proto":"https"}"#);

        // Streaming over TLS + h2.
        let sse = Upstream::start(Mode::Http1, |_| async {
            sse_response(stream_frames(
                sse_events(5),
                Duration::from_millis(10),
                None,
            ))
        })
        .await;
        let relay2 =
            start_relay_to(&sse, &["--tls-cert", &files.cert, "--tls-key", &files.key]).await;
        let (mut c, _) = Client::tls(relay2.listen, &[b"h2"]).await;
        let r = c.fetch(post("/v1/chat/completions", "{}")).await;
        assert_same(&r.body, &concat(&sse_events(5)), "stream over TLS h2");

        assert_eq!(up.request_count(), 2);
        stop_relay(relay).await;
        stop_relay(relay2).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_reload_keeps_live_connections() {
    within(async {
        let up = Upstream::ok(Mode::Http1).await;
        let ca = test_ca();
        let (a, b) = (ca.leaf("a.test"), ca.leaf("b.test"));
        let files = TlsFiles::new(&a);
        let relay = start_relay_to(
            &up,
            &[
                "--tls-cert",
                &files.cert,
                "--tls-key",
                &files.key,
                "--tls-reload-interval",
                "200ms",
            ],
        )
        .await;

        // A connection made with cert A, kept open.
        let (mut old, info) = Client::tls(relay.listen, &[b"http/1.1"]).await;
        assert_eq!(info.peer_cert, a.cert_der.to_vec(), "starts with cert A");
        assert_eq!(old.get("/before").await.status, 200);

        files.install(&b);
        let mut presented = Vec::new();
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let (_, info) = tls_connect(relay.listen, &[b"http/1.1"]).await;
            presented = info.peer_cert;
            if presented == b.cert_der.to_vec() {
                break;
            }
        }
        assert_eq!(
            presented,
            b.cert_der.to_vec(),
            "cert B in service within ~4s"
        );
        // The old connection keeps working with its session.
        assert_eq!(old.get("/after").await.status, 200);

        let m = metrics(relay.admin).await;
        assert!(metric_or_zero(&m, "sse_edge_cert_reloads_total", &[("result", "ok")]) >= 1.0);
        let errors_before =
            metric_or_zero(&m, "sse_edge_cert_reloads_total", &[("result", "error")]);

        // A broken replacement is refused; cert B stays in service.
        files.dir.write(
            "tls.key",
            b"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n",
        );
        let mut errors = errors_before;
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let m = metrics(relay.admin).await;
            errors = metric_or_zero(&m, "sse_edge_cert_reloads_total", &[("result", "error")]);
            if errors > errors_before {
                break;
            }
        }
        assert!(
            errors > errors_before,
            "a garbage key must count as a failed reload"
        );
        let (mut c, info) = Client::tls(relay.listen, &[b"http/1.1"]).await;
        assert_eq!(
            info.peer_cert,
            b.cert_der.to_vec(),
            "cert B still in service"
        );
        assert_eq!(c.get("/still").await.status, 200);
        assert_eq!(old.get("/old-still").await.status, 200);
        stop_relay(relay).await;
    })
    .await;
}
