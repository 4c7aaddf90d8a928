//! Raw-socket helpers: bytes written and read without an HTTP client
//! ([`raw_roundtrip`], [`RawReply`]), abrupt resets, a TCP "upstream" that
//! hands every connection to a closure ([`RawUpstream`]), and hand-built
//! HTTP/2 frames.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// What a raw socket received until the peer closed it.
pub(crate) struct RawReply {
    pub(crate) bytes: Vec<u8>,
    /// Time from the start until EOF or reset; `None` if still open at the limit.
    pub(crate) closed: Option<Duration>,
    pub(crate) reset: bool,
}

impl RawReply {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    pub(crate) fn status(&self) -> Option<u16> {
        let t = self.text();
        t.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
    }

    pub(crate) fn responses(&self) -> usize {
        self.text().matches("HTTP/1.1 ").count()
    }
}

pub(crate) async fn read_until_close(
    mut r: OwnedReadHalf,
    start: Instant,
    limit: Duration,
) -> RawReply {
    let mut bytes = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let read = tokio::time::timeout(limit, async {
        loop {
            match r.read(&mut buf).await {
                Ok(0) => return false,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
                Err(_) => return true,
            }
        }
    })
    .await;
    match read {
        Ok(reset) => RawReply {
            bytes,
            closed: Some(start.elapsed()),
            reset,
        },
        Err(_) => RawReply {
            bytes,
            closed: None,
            reset: false,
        },
    }
}

/// Writes `raw` (errors ignored: the peer may close early) and reads until
/// the peer closes, at most `limit`. The write side stays open meanwhile.
pub(crate) async fn raw_roundtrip(
    addr: SocketAddr,
    raw: Vec<u8>,
    limit: Duration,
) -> Result<RawReply, String> {
    let s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let start = Instant::now();
    let (r, w) = s.into_split();
    let writer = tokio::spawn(write_then_hold(w, raw));
    let reply = read_until_close(r, start, limit).await;
    writer.abort();
    Ok(reply)
}

async fn write_then_hold(mut w: OwnedWriteHalf, raw: Vec<u8>) {
    let _ = w.write_all(&raw).await;
    std::future::pending::<()>().await;
    drop(w);
}

/// Reads one request head (and whatever came with it).
pub(crate) async fn read_head(s: &mut TcpStream) -> Vec<u8> {
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
pub(crate) fn reset(s: TcpStream) {
    let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
    drop(s);
}

/// A TCP "upstream" whose every connection is handed to `serve`.
pub(crate) struct RawUpstream {
    pub(crate) addr: SocketAddr,
    pub(crate) accepted: Arc<AtomicUsize>,
    task: tokio::task::AbortHandle,
}

impl RawUpstream {
    pub(crate) async fn start<F, Fut>(serve: F) -> RawUpstream
    where
        F: Fn(TcpStream, usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
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

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) async fn expect_raw_status(
    addr: SocketAddr,
    raw: Vec<u8>,
    status: u16,
) -> Result<RawReply, String> {
    let reply = raw_roundtrip(addr, raw, Duration::from_secs(5)).await?;
    ensure!(
        reply.status() == Some(status),
        "want {status}, got {:?} (reset: {})",
        &reply.text().chars().take(300).collect::<String>(),
        reply.reset
    );
    Ok(reply)
}

pub(crate) fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = Vec::with_capacity(9 + len);
    f.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}
