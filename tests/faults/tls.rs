//! Area `tls`: TLS clients that offer only ALPN `h3`, send a garbage
//! ClientHello, never finish the handshake, or go idle after it. Each must
//! be refused or closed (failed handshakes counted in the metrics) while
//! TLS requests alongside stay fast.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::common::{ms, settled, sleep};
use crate::raw::raw_roundtrip;
use crate::support::*;
use crate::{CaseResult, note};

struct TlsRelay {
    _files: TempDir,
    _up: Upstream,
    relay: sse_edge::Running,
}

async fn tls_relay() -> TlsRelay {
    let leaf = test_ca().leaf("relay.test");
    let files = TempDir::new("faults-tls");
    let cert = files.write("tls.crt", leaf.cert_pem.as_bytes());
    let key = files.write("tls.key", leaf.key_pem.as_bytes());
    let up = Upstream::ok(Mode::Http1).await;
    let relay = start_relay_to(
        &up,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--tls-handshake-timeout",
            "1s",
            "--server-header-read-timeout",
            "1s",
            "--server-idle-timeout",
            "1s",
        ],
    )
    .await;
    TlsRelay {
        _files: files,
        _up: up,
        relay,
    }
}

/// TLS requests in a loop until `stop`; the slowest one.
fn tls_prober(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Result<(usize, Duration), String>> {
    tokio::spawn(async move {
        let (mut n, mut worst) = (0, Duration::ZERO);
        while !stop.load(Ordering::Relaxed) {
            let start = Instant::now();
            let r = tokio::time::timeout(Duration::from_secs(3), async {
                let (mut c, _) = Client::tls(addr, &[b"h2", b"http/1.1"]).await;
                c.get("/ok").await
            })
            .await
            .map_err(|_| "a TLS client hung during the fault".to_owned())?;
            ensure!(r.status == 200, "TLS client got {}", r.status);
            worst = worst.max(start.elapsed());
            n += 1;
            sleep(50).await;
        }
        ensure!(n > 0, "no TLS request completed");
        ensure!(
            worst < Duration::from_secs(1),
            "slowest TLS request during the fault: {worst:?}"
        );
        Ok((n, worst))
    })
}

async fn handshake_errors(admin: SocketAddr, at_least: f64) -> Result<f64, String> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let m = try_metrics(admin).await?;
        let n = metric_or_zero(&m, "sse_edge_tls_handshake_errors_total", &[]);
        if n >= at_least {
            return Ok(n);
        }
        ensure!(
            Instant::now() < deadline,
            "sse_edge_tls_handshake_errors_total {n}, want >= {at_least}"
        );
        sleep(20).await;
    }
}

async fn finish_tls(
    t: TlsRelay,
    stop: Arc<AtomicBool>,
    prober: tokio::task::JoinHandle<Result<(usize, Duration), String>>,
) -> CaseResult {
    stop.store(true, Ordering::Relaxed);
    let (n, worst) = prober.await.map_err(|e| e.to_string())??;
    note(format!(
        "{n} TLS requests alongside, slowest {} ms",
        ms(worst)
    ));
    settled(t.relay.admin, true).await?;
    stop_relay(t.relay).await;
    Ok(())
}

/// A completed handshake, then silence: with ALPN `http/1.1` hyper's head
/// deadline applies; without ALPN (protocol sniffed) or with `h2` the relay
/// has no deadline of its own, which is reported.
pub(crate) async fn tls_idle_after_handshake() -> CaseResult {
    let t = tls_relay().await;
    let stop = Arc::new(AtomicBool::new(false));
    let prober = tls_prober(t.relay.listen, stop.clone());
    let addr = t.relay.listen;
    let idle = |alpn: &'static [&'static [u8]]| async move {
        let (mut tls, _) = tls_connect(addr, alpn).await;
        let start = Instant::now();
        let mut buf = [0u8; 1024];
        let read = tokio::time::timeout(Duration::from_secs(4), async {
            loop {
                match tls.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        read.ok().map(|()| start.elapsed())
    };
    let (h1, none, h2) = tokio::join!(idle(&[b"http/1.1"]), idle(&[]), idle(&[b"h2"]));
    let h1 = h1.ok_or("an idle TLS http/1.1 connection is still open after 4 s")?;
    ensure!(
        h1 >= Duration::from_millis(900) && h1 < Duration::from_millis(2500),
        "idle TLS http/1.1 connection closed after {h1:?}, want ~1 s"
    );
    let mut times = vec![format!("http/1.1 {} ms", ms(h1))];
    for (what, closed) in [("without ALPN", none), ("with ALPN h2", h2)] {
        let t = closed.ok_or(format!(
            "an idle TLS connection {what} is still open after 4 s"
        ))?;
        ensure!(
            t < Duration::from_millis(3000),
            "idle TLS {what} closed after {t:?}"
        );
        times.push(format!("{what} {} ms", ms(t)));
    }
    note(format!("closed: {}", times.join(", ")));
    finish_tls(t, stop, prober).await
}

pub(crate) async fn tls_alpn_h3_only() -> CaseResult {
    let t = tls_relay().await;
    let stop = Arc::new(AtomicBool::new(false));
    let prober = tls_prober(t.relay.listen, stop.clone());
    let tcp = TcpStream::connect(t.relay.listen)
        .await
        .map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(client_tls_config(&[b"h3"]));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    match connector.connect(name, tcp).await {
        Err(e) => {
            let text = format!("{e:?}");
            ensure!(
                text.contains("NoApplicationProtocol"),
                "refused, but not with no_application_protocol: {text}"
            );
            let n = handshake_errors(t.relay.admin, 1.0).await?;
            note(format!(
                "refused with no_application_protocol, counted ({n})"
            ));
        }
        Ok(tls) => {
            let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
            ensure!(alpn.is_none(), "negotiated {alpn:?} for an h3-only offer");
            let mut c = Client::over(tls, false, "localhost".into(), true).await;
            let r = c.get("/ok").await;
            ensure!(r.status == 200, "http/1.1 fallback: {}", r.status);
            note("completed without ALPN, served as HTTP/1.1");
        }
    }
    finish_tls(t, stop, prober).await
}

pub(crate) async fn tls_garbage_hello() -> CaseResult {
    let t = tls_relay().await;
    let stop = Arc::new(AtomicBool::new(false));
    let prober = tls_prober(t.relay.listen, stop.clone());
    let mut times = Vec::new();
    for raw in [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        pattern(600, 7),
    ] {
        let reply = raw_roundtrip(t.relay.listen, raw, Duration::from_secs(3)).await?;
        let closed = reply
            .closed
            .ok_or("garbage ClientHello: connection still open after 3 s")?;
        ensure!(
            closed < Duration::from_millis(500),
            "garbage ClientHello closed only after {closed:?}"
        );
        ensure!(
            reply.bytes.len() < 64,
            "the relay answered garbage with {} bytes",
            reply.bytes.len()
        );
        times.push(ms(closed));
    }
    let n = handshake_errors(t.relay.admin, 2.0).await?;
    note(format!("closed after {times:?} ms, counted ({n})"));
    finish_tls(t, stop, prober).await
}

pub(crate) async fn tls_stalled_handshake() -> CaseResult {
    let t = tls_relay().await;
    let stop = Arc::new(AtomicBool::new(false));
    let prober = tls_prober(t.relay.listen, stop.clone());
    // Nothing at all, and a record header promising a ClientHello that
    // never comes in full.
    let silent = raw_roundtrip(t.relay.listen, Vec::new(), Duration::from_secs(4));
    let partial = raw_roundtrip(
        t.relay.listen,
        vec![
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ],
        Duration::from_secs(4),
    );
    let (silent, partial) = tokio::join!(silent, partial);
    let mut times = Vec::new();
    for (what, reply) in [("silent", silent?), ("partial", partial?)] {
        let closed = reply
            .closed
            .ok_or(format!("{what} handshake still open after 4 s"))?;
        ensure!(
            closed >= Duration::from_millis(900) && closed < Duration::from_millis(2500),
            "{what} handshake closed after {closed:?}, want ~1 s"
        );
        times.push(format!("{what} {} ms", ms(closed)));
    }
    let n = handshake_errors(t.relay.admin, 2.0).await?;
    note(format!("closed: {}, counted ({n})", times.join(", ")));
    finish_tls(t, stop, prober).await
}
