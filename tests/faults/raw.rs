//! Raw client sockets: bytes written and read without an HTTP client
//! ([`raw_roundtrip`], [`RawReply`]), and hand-built HTTP/2 frames. The raw
//! upstreams (`RawUpstream`, `read_head`, `reset`) are in `support`.

use std::net::SocketAddr;
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
