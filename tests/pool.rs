//! Upstream connection reuse: HTTP/1.1 keep-alive, HTTP/2 multiplexing,
//! and recovery from connections the upstream closed.
// Test code: an unwrap is an assertion, and helpers are `pub` for the
// files that share them.
#![allow(clippy::unwrap_used, unreachable_pub)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::Version;
use support::*;
use tokio::sync::watch;

fn origin_labels(up: &Upstream) -> [(&'static str, String); 1] {
    [("origin", up.origin())]
}

fn pool_metric(text: &str, name: &str, up: &Upstream) -> f64 {
    let [(k, v)] = origin_labels(up);
    metric(text, name, &[(k, v.as_str())])
        .unwrap_or_else(|| panic!("no {name}{{origin={v}}} in metrics:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_http1_requests_share_one_connection() {
    within(async {
        let up = Upstream::start(Mode::Http1, |req: Recorded| async move {
            json_response(200, format!(r#"{{"seq":"{}"}}"#, req.target))
        })
        .await;
        let relay = start_relay_to(&up, &[]).await;
        let mut c = Client::h1(relay.listen).await;
        for i in 0..10 {
            let r = c.get(&format!("/n{i}")).await;
            assert_eq!(r.status, 200);
            assert_eq!(r.text(), format!(r#"{{"seq":"/n{i}"}}"#));
        }
        assert_eq!(
            up.connections(),
            1,
            "10 sequential requests, one connection"
        );
        assert!(up.requests().iter().all(|r| r.conn == 1));

        let m = metrics(relay.admin).await;
        assert_eq!(pool_metric(&m, "sse_edge_upstream_reuses_total", &up), 9.0);
        assert_eq!(
            pool_metric(&m, "sse_edge_upstream_connects_total", &up),
            1.0
        );
        assert_eq!(pool_metric(&m, "sse_edge_upstream_connections", &up), 1.0);
        assert_eq!(
            pool_metric(&m, "sse_edge_upstream_idle_connections", &up),
            1.0
        );
        stop_relay(relay).await;
    })
    .await;
}

/// Sends `n` concurrent streaming requests, each on its own client
/// connection, and checks every body.
async fn concurrent_streams(relay: &sse_edge::Running, n: usize) {
    let mut tasks = Vec::new();
    for i in 0..n {
        let addr = relay.listen;
        tasks.push(tokio::spawn(async move {
            let r = fetch_once(addr, post("/v1/chat/completions", format!("{{\"n\":{i}}}"))).await;
            assert_eq!(r.status, 200, "stream {i}: {}", r.text());
            assert_same(&r.body, &concat(&sse_events(5)), &format!("stream {i}"));
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_upstream_multiplexes_concurrent_streams() {
    within(async {
        let up = Upstream::streaming(Mode::H2c, 5, Duration::from_millis(30)).await;
        let relay = start_relay_h2c(&up, &[]).await;

        concurrent_streams(&relay, 20).await;
        assert_eq!(up.request_count(), 20);
        assert!(up.requests().iter().all(|r| r.version == Version::HTTP_2));
        assert_eq!(
            up.connections(),
            1,
            "20 concurrent h2 streams, one connection"
        );

        let m = metrics(relay.admin).await;
        assert_eq!(
            pool_metric(&m, "sse_edge_upstream_connects_total", &up),
            1.0
        );
        assert_eq!(pool_metric(&m, "sse_edge_upstream_h2_streams", &up), 0.0);
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn_h2_upstream_multiplexes_concurrent_streams() {
    within(async {
        let up = Upstream::streaming(Mode::Tls, 5, Duration::from_millis(30)).await;
        // protocol auto: ALPN picks h2.
        let relay = start_relay_to(&up, &[]).await;

        // The first request learns that the origin speaks h2.
        let r = fetch_once(relay.listen, post("/v1/chat/completions", "{}")).await;
        assert_eq!(r.status, 200);
        concurrent_streams(&relay, 20).await;
        assert_eq!(up.request_count(), 21);
        assert!(up.requests().iter().all(|r| r.version == Version::HTTP_2));
        assert_eq!(
            up.connections(),
            1,
            "21 h2 streams over TLS, one connection"
        );
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn_h2_cold_burst_shares_one_connection() {
    within(async {
        let up = Upstream::streaming(Mode::Tls, 5, Duration::from_millis(30)).await;
        let relay = start_relay_to(&up, &[]).await;
        // No warm-up: the pool does not know yet that the origin speaks h2.
        concurrent_streams(&relay, 20).await;
        assert_eq!(up.request_count(), 20);
        assert!(up.requests().iter().all(|r| r.version == Version::HTTP_2));
        assert_eq!(
            up.connections(),
            1,
            "a cold burst to an h2 (ALPN) origin opened one connection per request"
        );
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_stream_limit_opens_more_connections() {
    within(async {
        const N: usize = 12;
        let (release_tx, release_rx) = watch::channel(false);
        let up = Upstream::start(Mode::H2c, move |_| {
            let mut release = release_rx.clone();
            async move {
                let (tx, body) = channel_body();
                tokio::spawn(async move {
                    let _ = tx.send(Ok("data: first\n\n".into())).await;
                    let _ = release.wait_for(|r| *r).await;
                    let _ = tx.send(Ok("data: [DONE]\n\n".into())).await;
                });
                sse_response(body)
            }
        })
        .await;
        let relay = start_relay_h2c(&up, &["--upstream-h2-max-streams-per-connection", "5"]).await;

        let mut tasks = Vec::new();
        for i in 0..N {
            let addr = relay.listen;
            tasks.push(tokio::spawn(async move {
                let r = fetch_once(addr, post("/v1/chat/completions", format!("{i}"))).await;
                assert_eq!(r.status, 200);
                assert_same(&r.body, b"data: first\n\ndata: [DONE]\n\n", "held stream");
            }));
        }
        // All 12 streams are open at the upstream at once.
        up.wait_requests(N).await;
        let m = metrics(relay.admin).await;
        assert_eq!(
            pool_metric(&m, "sse_edge_upstream_h2_streams", &up),
            N as f64
        );
        assert!(
            up.connections() >= 3,
            "12 held streams with 5 per connection need >= 3 connections, saw {}",
            up.connections()
        );
        let mut per_conn = std::collections::HashMap::<usize, usize>::new();
        for r in up.requests() {
            *per_conn.entry(r.conn).or_default() += 1;
        }
        assert!(
            per_conn.values().all(|n| *n <= 5),
            "a connection carried more than 5 streams: {per_conn:?}"
        );

        release_tx.send(true).unwrap();
        for t in tasks {
            t.await.unwrap();
        }
        stop_relay(relay).await;
    })
    .await;
}

/// The upstream drops each connection, without a word, right after its
/// first response; the next request comes ~200 ms later.
async fn stale_connection_case(mode: Mode) {
    let up = Upstream::ok(Options {
        mode,
        close_after_first: true,
    })
    .await;
    let relay = match mode {
        Mode::H2c => start_relay_h2c(&up, &[]).await,
        _ => start_relay_to(&up, &[]).await,
    };
    let mut c = Client::h1(relay.listen).await;

    let r = c.get("/first").await;
    assert_eq!(r.status, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = c.get("/second").await;
    assert_eq!(
        r.status,
        200,
        "{mode:?}: second request failed: {}",
        r.text()
    );
    assert_eq!(r.text(), r#"{"ok":true}"#);
    assert_eq!(up.connections(), 2, "{mode:?}");
    assert_eq!(up.request_count(), 2, "{mode:?}");
    stop_relay(relay).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_pooled_connection_is_not_reused() {
    within(stale_connection_case(Mode::Http1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_h2_connection_is_replaced() {
    within(stale_connection_case(Mode::H2c)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_close_from_upstream_is_honoured() {
    within(async {
        let up = Upstream::start(Mode::Http1, |_| async {
            response(
                200,
                &[
                    ("connection", "close"),
                    ("content-type", "application/json"),
                ],
                full(r#"{"closing":true}"#),
            )
        })
        .await;
        let relay = start_relay_to(&up, &[]).await;
        let mut c = Client::h1(relay.listen).await;
        for i in 0..3 {
            let r = c.get(&format!("/c{i}")).await;
            assert_eq!(r.status, 200, "request {i}");
            assert_eq!(r.text(), r#"{"closing":true}"#);
            assert!(r.headers.get("connection").is_none());
        }
        assert_eq!(up.connections(), 3);
        stop_relay(relay).await;
    })
    .await;
}

async fn abandon_one_stream(relay: &sse_edge::Running) {
    let mut c = Client::h1(relay.listen).await;
    let res = c.send(post("/v1/chat/completions", "{}")).await.unwrap();
    assert_eq!(res.status(), 200);
    let mut body = res.into_body();
    let first = http_body_util::BodyExt::frame(&mut body).await.unwrap();
    assert!(first.is_ok());
    // The client goes away mid-stream.
    drop(body);
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_closes_http1_upstream_connection() {
    within(async {
        let stops = Arc::new(Stops::default());
        let up = Upstream::endless(Mode::Http1, Duration::from_millis(20), stops.clone()).await;
        let relay = start_relay_to(&up, &[]).await;
        abandon_one_stream(&relay).await;
        eventually(
            Duration::from_secs(5),
            "the upstream stream to stop",
            || stops.count() == 1,
        )
        .await;
        // A half-read response is never handed to the next request.
        let r = fetch_once(relay.listen, get("/ok")).await;
        assert_eq!(r.text(), r#"{"ok":true}"#);
        assert_eq!(up.connections(), 2);

        let m = metrics(relay.admin).await;
        assert_eq!(
            metric(&m, "sse_edge_client_disconnects_total", &[]),
            Some(1.0)
        );
        assert_eq!(metric(&m, "sse_edge_active_streams", &[]), Some(0.0));
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_resets_only_its_h2_stream() {
    within(async {
        let stops = Arc::new(Stops::default());
        let up = Upstream::endless(Mode::H2c, Duration::from_millis(20), stops.clone()).await;
        let relay = start_relay_h2c(&up, &[]).await;
        abandon_one_stream(&relay).await;
        eventually(
            Duration::from_secs(5),
            "the upstream stream to stop",
            || stops.count() == 1,
        )
        .await;
        // The connection itself stays in use.
        let r = fetch_once(relay.listen, get("/ok")).await;
        assert_eq!(r.text(), r#"{"ok":true}"#);
        assert_eq!(up.connections(), 1);
        let m = metrics(relay.admin).await;
        assert_eq!(pool_metric(&m, "sse_edge_upstream_h2_streams", &up), 0.0);
        assert_eq!(metric(&m, "sse_edge_active_streams", &[]), Some(0.0));
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_http1_origin_cold_burst_runs_concurrently() {
    within(async {
        // ALPN http/1.1 only: once the first connection shows it, the rest
        // of a cold burst connects in parallel (one connection per
        // concurrent request, since HTTP/1.1 cannot multiplex).
        let up = Upstream::start(Mode::TlsHttp1, |_| async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            json_response(200, r#"{"ok":true}"#)
        })
        .await;
        let relay = start_relay_to(&up, &[]).await;
        let start = std::time::Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..6 {
            let addr = relay.listen;
            tasks.push(tokio::spawn(
                async move { fetch_once(addr, get("/slow")).await },
            ));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().status, 200);
        }
        let took = start.elapsed();
        assert!(up.requests().iter().all(|r| r.version == Version::HTTP_11));
        assert_eq!(up.connections(), 6);
        assert!(
            took < Duration::from_millis(1500),
            "6 concurrent 300 ms requests took {took:?}: they were serialized"
        );
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_status_outside_100_to_599_becomes_502() {
    within(async {
        // HTTP/2 carries any three digits in `:status`.
        let up = Upstream::start(Mode::H2c, |req: Recorded| async move {
            match req.target.as_str() {
                "/fine" => json_response(200, r#"{"ok":true}"#),
                _ => response(999, &[("content-type", "text/plain")], full("odd")),
            }
        })
        .await;
        let relay = start_relay_h2c(&up, &[]).await;
        let message = "upstream sent an invalid response: status code outside 100..=599";
        let r = fetch_once(relay.listen, post("/v1/chat/completions", "{}")).await;
        assert_eq!(r.status, 502, "{}", r.text());
        assert_eq!(
            r.json(),
            serde_json::json!({"error":{"message":message,"type":"server_error","param":null,"code":"upstream_error"}})
        );
        let r = fetch_once(relay.listen, post("/v1/messages", "{}")).await;
        assert_eq!(r.status, 502, "{}", r.text());
        assert_eq!(
            r.json(),
            serde_json::json!({"type":"error","error":{"type":"api_error","message":message}})
        );
        let r = fetch_once(relay.listen, get("/fine")).await;
        assert_eq!((r.status.as_u16(), r.text().as_str()), (200, r#"{"ok":true}"#));
        assert_eq!(up.connections(), 1, "the stream was reset, not the connection");
        let m = metrics(relay.admin).await;
        assert_eq!(pool_metric(&m, "sse_edge_upstream_h2_streams", &up), 0.0);
        let protocol = metric_or_zero(&m, "sse_edge_upstream_errors_total", &[("class", "protocol")]);
        assert_eq!(protocol, 2.0, "{m}");
        stop_relay(relay).await;
    })
    .await;
}

/// `n` concurrent requests, each on its own client connection; all must
/// get the mock's answer.
async fn wave(relay: &sse_edge::Running, n: usize) {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let addr = relay.listen;
        tasks.push(tokio::spawn(async move {
            fetch_once(addr, get("/v1/models")).await
        }));
    }
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(
            (r.status.as_u16(), r.text().as_str()),
            (200, r#"{"ok":true}"#)
        );
    }
}

/// HTTP/1.1 carries one exchange per connection, so a wave of N
/// concurrent requests needs N connections; the pool keeps them for the
/// next wave instead of closing all but `max_idle_per_origin` (64).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_pool_keeps_the_connections_a_wave_needs() {
    const WAVE: usize = 120;
    const WAVES: usize = 4;
    within(async {
        let up = Upstream::start(Mode::Http1, |_| async {
            // Long enough for a wave's requests to be in flight together.
            tokio::time::sleep(Duration::from_millis(100)).await;
            json_response(200, r#"{"ok":true}"#)
        })
        .await;
        let relay = start_relay_to(&up, &[]).await;
        for _ in 0..WAVES {
            wave(&relay, WAVE).await;
        }
        let m = metrics(relay.admin).await;
        let connects = pool_metric(&m, "sse_edge_upstream_connects_total", &up);
        let idle = pool_metric(&m, "sse_edge_upstream_idle_connections", &up);
        eprintln!("{WAVES} waves of {WAVE}: {connects} upstream connects, {idle} idle after");
        assert!(
            connects <= (WAVE + WAVE / 20) as f64,
            "{WAVES} waves of {WAVE} concurrent requests opened {connects} connections"
        );
        assert_eq!(idle, connects, "every connection is kept between waves");
        stop_relay(relay).await;
    })
    .await;
}

/// Upstream connections opened for a steady load: `SSE_EDGE_CHURN_REQUESTS`
/// requests (default 4000), `SSE_EDGE_CHURN_IN_FLIGHT` at a time (200)
/// over `SSE_EDGE_CHURN_CLIENTS` HTTP/2 client connections (20), to an
/// HTTP/1.1 keep-alive upstream answering in 1 to 20 ms. The pool keeps
/// what the load needs, so connects stay near the requests in flight (a
/// fixed idle cap of 64 opened one per few requests). The issue's figure:
/// `SSE_EDGE_CHURN_REQUESTS=100000 SSE_EDGE_CHURN_IN_FLIGHT=500
/// SSE_EDGE_CHURN_CLIENTS=50 cargo test --test pool churn -- --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_under_steady_load() {
    let var = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let requests = var("SSE_EDGE_CHURN_REQUESTS", 4_000);
    let in_flight = var("SSE_EDGE_CHURN_IN_FLIGHT", 200);
    let clients = var("SSE_EDGE_CHURN_CLIENTS", 20);
    let seq = Arc::new(AtomicUsize::new(0));
    let up = Upstream::start(Mode::Http1, move |_| {
        let n = seq.fetch_add(1, Ordering::Relaxed);
        async move {
            let ms = 1 + (n * 7919) % 20;
            tokio::time::sleep(Duration::from_millis(ms as u64)).await;
            json_response(200, r#"{"ok":true}"#)
        }
    })
    .await;
    let relay = start_relay_to(&up, &[]).await;
    let started = std::time::Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let per_client = in_flight.div_ceil(clients);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let tx = h2_sender(relay.listen).await;
        for _ in 0..per_client {
            let (mut tx, next) = (tx.clone(), next.clone());
            let authority = relay.listen.to_string();
            tasks.push(tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < requests {
                    let uri = format!("http://{authority}/v1/models");
                    let req = http::Request::get(uri).body(empty()).unwrap();
                    tx.ready().await.unwrap();
                    let r = collect(tx.send_request(req).await.unwrap()).await;
                    assert_eq!(r.status, 200, "{}", r.text());
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let m = metrics(relay.admin).await;
    let connects = pool_metric(&m, "sse_edge_upstream_connects_total", &up);
    let reuses = pool_metric(&m, "sse_edge_upstream_reuses_total", &up);
    eprintln!(
        "{requests} requests, {} in flight over {clients} h2 client connections, in {:.1?}: \
         {connects} upstream connects, {reuses} reuses",
        per_client * clients,
        started.elapsed()
    );
    let bound = (per_client * clients) as f64 * 1.25;
    assert!(
        connects <= bound,
        "{connects} upstream connects for {} requests in flight (at most {bound})",
        per_client * clients
    );
    stop_relay(relay).await;
}

/// An HTTP/2 (prior knowledge) client connection to `addr`.
async fn h2_sender(
    addr: std::net::SocketAddr,
) -> hyper::client::conn::http2::SendRequest<TestBody> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let io = hyper_util::rt::TokioIo::new(tcp);
    let (tx, conn) = hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .handshake(io)
        .await
        .unwrap();
    tokio::spawn(conn);
    tx
}

/// An upstream answering each request head with `hel`, then `lo` a moment
/// later (`content-length: 5`); counts the connections it saw closed.
async fn slow_five_bytes(closed: Arc<AtomicUsize>) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let closed = closed.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                loop {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..i + 4);
                        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhel";
                        if s.write_all(head).await.is_err() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        if s.write_all(b"lo").await.is_err() {
                            break;
                        }
                    }
                }
                closed.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    addr
}

/// The pool's ownership contract (`upstream::pool`), on the pool alone: a
/// body read to its end puts its connection back; a body dropped early
/// closes it; a body outliving its pool is read to its end and then just
/// drops its connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_connection_goes_back_only_from_a_body_read_to_its_end() {
    use http_body_util::BodyExt;
    use sse_edge::config::{RootStore, UpstreamConfig, UpstreamProtocol};
    use sse_edge::internals::{OriginKey, Pool, RequestBody};

    within(async {
        let closed = Arc::new(AtomicUsize::new(0));
        let addr = slow_five_bytes(closed.clone()).await;
        let cfg = UpstreamConfig {
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            max_idle_per_origin: 8,
            h2_max_streams_per_connection: 100,
            tcp_keepalive: None,
            roots: RootStore::None,
            ca_file: None,
        };
        let pool = Pool::new(&cfg, sse_edge::internals::Shutdown::new()).unwrap();
        let key = OriginKey {
            tls: false,
            host: addr.ip().to_string(),
            port: addr.port(),
            protocol: UpstreamProtocol::Http1,
        };
        let origin = pool.origin(key).unwrap();
        let get = || {
            http::Request::get("/")
                .body(RequestBody::buffered(bytes::Bytes::new()))
                .unwrap()
        };
        let stat = |a: &AtomicUsize| a.load(Ordering::SeqCst);

        // Read to its end: back on the idle list, and used again.
        for _ in 0..2 {
            let sent = origin.send(get()).await.unwrap();
            let body = sent.response.into_body().collect().await.unwrap();
            assert_eq!(&body.to_bytes()[..], b"hello");
            assert_eq!(stat(&origin.stats().idle), 1);
        }
        assert_eq!(origin.stats().connects.load(Ordering::SeqCst), 1);

        // Dropped after its head: the connection is closed, not kept.
        let sent = origin.send(get()).await.unwrap();
        assert_eq!(stat(&origin.stats().idle), 0);
        drop(sent);
        let what = "the upstream to see the early-dropped body's connection closed";
        eventually(Duration::from_secs(5), what, || stat(&closed) == 1).await;
        assert_eq!(stat(&origin.stats().h1_open), 0);

        // Outliving its pool: read to its end, then its connection closed.
        let sent = origin.send(get()).await.unwrap();
        drop(origin);
        drop(pool);
        let body = sent.response.into_body().collect().await.unwrap();
        assert_eq!(&body.to_bytes()[..], b"hello");
        let what = "the upstream to see the orphaned body's connection closed";
        eventually(Duration::from_secs(5), what, || stat(&closed) == 2).await;
    })
    .await;
}
