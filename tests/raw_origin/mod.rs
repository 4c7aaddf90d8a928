//! A raw HTTP/1.1 upstream for the codec and retry tests: it reads each
//! request by its framing, records it as text, and writes exactly the bytes
//! a test's `answer` gives, then keeps the connection, closes it or resets
//! it. Included by `upstream_h1.rs` and `upstream_retry.rs`.
#![allow(dead_code)] // each test file uses part of it

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{TestBody, get, start_relay};

/// What the raw upstream does after writing its answer.
#[derive(Clone, Copy, PartialEq)]
pub enum Then {
    KeepOpen,
    Close,
    /// Close a moment later (an upstream acting on its own keep-alive
    /// decision after the answer has left).
    CloseAfter(Duration),
    /// Reset the connection (RST, not FIN).
    Reset,
}

/// An upstream that reads each request (head and body, by its framing),
/// records it, and writes the bytes `answer` returns for it (given the
/// request and how many came before it on its connection).
pub struct RawOrigin {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
}

pub type Answer = fn(&str, usize) -> (Vec<u8>, Then);

impl RawOrigin {
    pub async fn start(answer: Answer) -> RawOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (n, seen) = (connections.clone(), requests.clone());
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                n.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(s, answer, seen.clone()));
            }
        });
        RawOrigin {
            addr,
            connections,
            requests,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

async fn serve(mut s: TcpStream, answer: Answer, seen: Arc<Mutex<Vec<String>>>) {
    let mut buf = Vec::new();
    let mut nth = 0;
    while let Some(req) = read_request(&mut s, &mut buf).await {
        seen.lock().unwrap().push(req.clone());
        let (bytes, then) = answer(&req, nth);
        nth += 1;
        if s.write_all(&bytes).await.is_err() {
            return;
        }
        match then {
            Then::KeepOpen => {}
            Then::Close => return,
            Then::CloseAfter(pause) => return tokio::time::sleep(pause).await,
            Then::Reset => {
                let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                return;
            }
        }
    }
}

/// One request off the socket (as text), framed by Content-Length or
/// chunked coding; `None` at EOF.
pub async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        read_more(s, buf).await?;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let end = if head.contains("transfer-encoding: chunked") {
        loop {
            if let Some(i) = buf[head_end..].windows(5).position(|w| w == b"0\r\n\r\n") {
                break head_end + i + 5;
            }
            read_more(s, buf).await?;
        }
    } else {
        let len = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map_or(0, |v| v.trim().parse::<usize>().unwrap());
        while buf.len() < head_end + len {
            read_more(s, buf).await?;
        }
        head_end + len
    };
    let req = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end);
    Some(req)
}

pub async fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 4096];
    match s.read(&mut chunk).await {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Some(())
        }
    }
}

pub async fn relay_to(origin: &RawOrigin) -> sse_edge::Running {
    start_relay(&["--upstream", &origin.url()]).await
}

pub fn plain_get(path: &str) -> Request<TestBody> {
    get(path)
}
