//! The upstream HTTP/1.1 client.
//!
//! - `upstream/codec`: the wire format alone. A response head found,
//!   parsed and framed; a 300-event chunked SSE body decoded out of one
//!   read buffer (frames split off, never copied).
//! - `upstream/exchange`: one request on a pooled loopback connection, from
//!   pool checkout to the connection's return (request written, head read,
//!   a 460-byte body read to its end), with hyper's own HTTP/1.1 client
//!   connection doing the same exchange against the same upstream in the
//!   same run as the baseline.
//!
//! Run: `cargo bench --bench upstream -- --warm-up-time 1 --measurement-time 3`.
// Test code: an unwrap is an assertion, and helpers are `pub` for the
// files that share them.
#![allow(clippy::unwrap_used, unreachable_pub)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::{Method, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use sse_edge::config::{RootStore, UpstreamConfig, UpstreamProtocol};
use sse_edge::internals::RequestBody;
use sse_edge::internals::Shutdown;
use sse_edge::internals::h1::decode::Decoder;
use sse_edge::internals::h1::head;
use sse_edge::internals::{Origin, OriginKey, Pool};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ndate: Sat, 21 Nov 2026 12:00:00 GMT\r\n\
content-type: text/event-stream; charset=utf-8\r\ntransfer-encoding: chunked\r\n\
connection: keep-alive\r\ncache-control: no-cache\r\nx-request-id: req_8f3a2c\r\n\
openai-processing-ms: 212\r\n\r\n";

fn chunked_sse(events: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..events {
        let event = format!(
            "data: {{\"id\":\"chatcmpl-BZ3kq9\",\"object\":\"chat.completion.chunk\",\"created\":1747000000,\"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\" tok{i}\"}},\"finish_reason\":null}}]}}\n\n"
        );
        out.extend_from_slice(format!("{:x}\r\n", event.len()).as_bytes());
        out.extend_from_slice(event.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("upstream/codec");
    g.throughput(Throughput::Bytes(HEAD.len() as u64));
    g.bench_function("response_head", |b| {
        b.iter(|| {
            let mut from = 0;
            let end = head::find_head(black_box(HEAD), &mut from)
                .unwrap()
                .unwrap();
            let mut parsed = head::parse_response(&HEAD[..end]).unwrap();
            black_box(head::framing(&mut parsed, &Method::POST).unwrap())
        });
    });
    let body = chunked_sse(300);
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("chunked_sse_300_events", |b| {
        b.iter(|| {
            let mut buf = BytesMut::from(black_box(&body[..]));
            let mut d = Decoder::new(head::Framing::Chunked);
            let mut n = 0;
            while let Some(frame) = d.decode(&mut buf).unwrap() {
                n += frame.data_ref().map_or(0, Bytes::len);
            }
            assert!(d.is_done());
            n
        });
    });
    g.finish();
}

const BODY_LEN: usize = 460;

/// A keep-alive upstream answering every request head with 460 bytes.
async fn upstream() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {BODY_LEN}\r\n\r\n"
    )
    .into_bytes();
    answer.extend(std::iter::repeat_n(b'x', BODY_LEN));
    let answer: Arc<[u8]> = answer.into();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            s.set_nodelay(true).unwrap();
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut have = 0;
                loop {
                    match s.read(&mut buf[have..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => have += n,
                    }
                    // Requests here are GETs: a head ends each one.
                    while let Some(i) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.copy_within(i + 4..have, 0);
                        have -= i + 4;
                        if s.write_all(&answer).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

fn pool_origin(addr: std::net::SocketAddr) -> (Pool, Arc<Origin>) {
    let cfg = UpstreamConfig {
        connect_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(60),
        max_idle_per_origin: 8,
        h2_max_streams_per_connection: 100,
        tcp_keepalive: None,
        roots: RootStore::None,
        ca_file: None,
    };
    let pool = Pool::new(&cfg, Shutdown::new()).unwrap();
    let origin = pool
        .origin(OriginKey {
            tls: false,
            host: addr.ip().to_string(),
            port: addr.port(),
            protocol: UpstreamProtocol::Http1,
        })
        .unwrap();
    (pool, origin)
}

async fn relay_exchange(origin: &Arc<Origin>) -> usize {
    let req = Request::get("/v1/models")
        .body(RequestBody::buffered(Bytes::new()))
        .unwrap();
    let sent = origin.send(req).await.unwrap();
    let body = sent
        .response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes();
    drop(sent.lease);
    body.len()
}

fn exchange(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let addr = rt.block_on(upstream());
    let mut g = c.benchmark_group("upstream/exchange");
    g.throughput(Throughput::Elements(1));

    let _guard = rt.enter();
    let (_pool, origin) = pool_origin(addr);
    assert_eq!(rt.block_on(relay_exchange(&origin)), BODY_LEN);
    assert_eq!(
        origin
            .stats()
            .connects
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    g.bench_function("relay_h1_pooled", |b| {
        b.iter(|| rt.block_on(relay_exchange(&origin)));
    });
    assert_eq!(
        origin
            .stats()
            .connects
            .load(std::sync::atomic::Ordering::Relaxed),
        1,
        "every exchange reused the pooled connection"
    );

    let mut tx = rt.block_on(hyper_client(addr));
    g.bench_function("hyper_client_conn_h1", |b| {
        b.iter(|| rt.block_on(hyper_exchange(&mut tx)));
    });
    g.finish();
}

type HyperTx = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn hyper_client(addr: std::net::SocketAddr) -> HyperTx {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    tx
}

async fn hyper_exchange(tx: &mut HyperTx) -> usize {
    tx.ready().await.unwrap();
    let req = Request::get("/v1/models")
        .header("host", "127.0.0.1")
        .body(Empty::new())
        .unwrap();
    let res = tx.send_request(req).await.unwrap();
    res.into_body().collect().await.unwrap().to_bytes().len()
}

criterion_group!(benches, codec, exchange);
criterion_main!(benches);
