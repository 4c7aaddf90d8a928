//! Continuation latency: from the moment an upstream cuts a chat stream
//! after its first events to the first continued token reaching the
//! client, through the relay on loopback.
//!
//! A relay route (in this process) has two endpoints: the primary streams
//! three content chunks and then resets the connection, noting the instant
//! just before it does; the fallback declares `continuation = "vllm"` and
//! answers at once. Each iteration is one streaming request on a fresh
//! client connection; the time measured is the client's receipt of the
//! first event after the cut minus the primary's reset instant (same
//! clock). The primary is kept out of its circuit breaker's reach by a
//! healthy request after each cut (three failures in a row would eject
//! it, and the next request would go to the fallback at once).
//!
//! Run: `cargo bench --bench continuation -- --warm-up-time 1 --measurement-time 5`.
// Bench code: an unwrap is an assertion.
#![allow(clippy::unwrap_used, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use sse_edge::AccessLog;
use sse_edge::cli::{Invocation, from_args};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PREFIX: [&str; 3] = ["The", " quick", " brown"];
const REST: [&str; 6] = [" fox", " jumps", " over", " the", " lazy", " dog."];

fn chunk(content: &str) -> String {
    let data = format!(
        "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{content}\"}},\"finish_reason\":null}}]}}\n\n"
    );
    format!("{:x}\r\n{data}\r\n", data.len())
}

const HEAD: &str =
    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";

/// Reads one request (head and `content-length` body); its body.
async fn read_request(s: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    loop {
        let n = s.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap_or(0));
        while buf.len() < end + 4 + len {
            let n = s.read(&mut tmp).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&tmp[..n]);
        }
        return Some(String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned());
    }
}

/// The primary: three chunks, then a reset (its instant noted), except
/// for requests asking `"model":"healthy"`, which it answers whole.
async fn primary(l: TcpListener, cut_at: Arc<Mutex<Option<Instant>>>) {
    loop {
        let Ok((mut s, _)) = l.accept().await else {
            return;
        };
        let cut_at = cut_at.clone();
        tokio::spawn(async move {
            let Some(body) = read_request(&mut s).await else {
                return;
            };
            let mut out = String::from(HEAD);
            for p in PREFIX {
                out.push_str(&chunk(p));
            }
            if body.contains("\"healthy\"") {
                for p in REST {
                    out.push_str(&chunk(p));
                }
                out.push_str("e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n");
                let _ = s.write_all(out.as_bytes()).await;
                return;
            }
            let _ = s.write_all(out.as_bytes()).await;
            // Let the relay read the events before the reset.
            tokio::time::sleep(Duration::from_millis(5)).await;
            let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
            *cut_at.lock().unwrap() = Some(Instant::now());
            drop(s);
        });
    }
}

/// The fallback: the rest of the answer, at once.
async fn fallback(l: TcpListener) {
    loop {
        let Ok((mut s, _)) = l.accept().await else {
            return;
        };
        tokio::spawn(async move {
            while read_request(&mut s).await.is_some() {
                let mut out = String::from(HEAD);
                for p in REST {
                    out.push_str(&chunk(p));
                }
                out.push_str("e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n");
                if s.write_all(out.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// One streaming request; when `cut` is set, the instant the first event
/// after the cut (" fox") arrived.
async fn stream(relay: SocketAddr, model: &str) -> Instant {
    let body = format!(
        "{{\"model\":\"{model}\",\"stream\":true,\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}"
    );
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut s = TcpStream::connect(relay).await.unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut tmp = [0u8; 16384];
    let mut fox_at = None;
    loop {
        let n = s.read(&mut tmp).await.unwrap();
        if fox_at.is_none() && tmp[..n].windows(5).any(|w| w == b" fox\"") {
            fox_at = Some(Instant::now());
        }
        seen.extend_from_slice(&tmp[..n]);
        if n == 0 || seen.windows(12).any(|w| w == b"data: [DONE]") {
            break;
        }
    }
    fox_at.unwrap()
}

fn continuation(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (relay, cut_at) = rt.block_on(async {
        let p = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let f = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (pa, fa) = (p.local_addr().unwrap(), f.local_addr().unwrap());
        let cut_at = Arc::new(Mutex::new(None));
        tokio::spawn(primary(p, cut_at.clone()));
        tokio::spawn(fallback(f));
        let dir = std::env::temp_dir().join(format!("sse-edge-bench-cont-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("relay.toml");
        let toml = format!(
            "[[route]]\nprefix = \"/\"\ncontinuation_attempts = 1\nheartbeat = \"15s\"\n\
             [[route.group]]\nendpoints = [ {{ name = \"primary\", url = \"http://{pa}\" }} ]\n\
             [[route.group]]\nendpoints = [ {{ name = \"fallback\", url = \"http://{fa}\", continuation = \"vllm\" }} ]\n"
        );
        std::fs::write(&file, toml).unwrap();
        let args = [
            "sse-edge",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--config",
            file.to_str().unwrap(),
            "--log-access-log",
            "false",
        ];
        let Ok(Invocation::Run(config)) = from_args(args, &|_| None) else {
            panic!("bench config")
        };
        let running = sse_edge::start(config, AccessLog::disabled()).await.unwrap();
        (running.listen, cut_at)
    });
    let mut g = c.benchmark_group("continuation");
    g.sample_size(30);
    g.bench_function("cut_to_first_continued_token", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let fox = stream(relay, "m").await;
                    let cut = cut_at.lock().unwrap().take().unwrap();
                    total += fox.saturating_duration_since(cut);
                    // A healthy answer: the primary's failures are never
                    // three in a row.
                    stream(relay, "healthy").await;
                }
                total
            })
        });
    });
    g.finish();
}

criterion_group!(benches, continuation);
criterion_main!(benches);
