//! Raw TCP upstreams. [`RawUpstream`] hands every accepted connection to a
//! closure; [`RawOrigin`], built on it, reads each HTTP/1.1 request by its
//! framing, records it as text and writes exactly the bytes a test's answer
//! gives, then keeps the connection, closes it or resets it ([`Then`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use http::Request;

use super::{TestBody, get, start_relay_to_url};

/// A TCP "upstream" whose every connection is handed to `serve` (with the
/// 0-based number of the connection). Dropping it stops the listener and
/// every connection task.
pub struct RawUpstream {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
    task: tokio::task::AbortHandle,
}

impl RawUpstream {
    pub async fn start<F, Fut>(serve: F) -> RawUpstream
    where
        F: Fn(TcpStream, usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let n = accepted.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    Ok((s, _)) = listener.accept() => {
                        let i = n.fetch_add(1, Ordering::SeqCst);
                        conns.spawn(serve(s, i));
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        })
        .abort_handle();
        RawUpstream {
            addr,
            accepted,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request head (and whatever came with it).
pub async fn read_head(s: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return buf,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    return buf;
                }
            }
        }
    }
}

/// Closes with a TCP RST instead of a FIN.
pub fn reset(s: TcpStream) {
    let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
    drop(s);
}

// ---------------------------------------------------------------- RawOrigin

/// What the raw origin does after writing its answer.
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

/// An answer given the request (as text) and how many came before it on
/// its connection.
pub type Answer = fn(&str, usize) -> (Vec<u8>, Then);

/// An upstream that reads each request (head and body, by its framing),
/// records it, and writes the bytes its answer returns for it (given the
/// request and how many came before it on its connection).
pub struct RawOrigin {
    pub addr: SocketAddr,
    raw: RawUpstream,
    requests: Arc<Mutex<Vec<String>>>,
}

impl RawOrigin {
    pub async fn start<F>(answer: F) -> RawOrigin
    where
        F: Fn(&str, usize) -> (Vec<u8>, Then) + Send + Sync + 'static,
    {
        let answer = Arc::new(answer);
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let raw = RawUpstream::start(move |s, _| serve(s, answer.clone(), seen.clone())).await;
        RawOrigin {
            addr: raw.addr,
            raw,
            requests,
        }
    }

    /// An origin that answers every request with `bytes`, then does `then`.
    pub async fn answering(bytes: &'static [u8], then: Then) -> RawOrigin {
        RawOrigin::start(move |_, _| (bytes.to_vec(), then)).await
    }

    pub fn url(&self) -> String {
        self.raw.url()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.raw.accepted.load(Ordering::SeqCst)
    }

    /// Every request read so far, as text.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

async fn serve<F>(mut s: TcpStream, answer: Arc<F>, seen: Arc<Mutex<Vec<String>>>)
where
    F: Fn(&str, usize) -> (Vec<u8>, Then),
{
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
            Then::Reset => return reset(s),
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

/// Appends what one read brings to `buf`; `None` at EOF or on an error.
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

/// The relay in front of `origin`.
pub async fn relay_to(origin: &RawOrigin) -> sse_edge::Running {
    start_relay_to_url(&origin.url(), &[]).await
}

/// A GET for `path` (what the codec tests call [`get`]).
pub fn plain_get(path: &str) -> Request<TestBody> {
    get(path)
}
