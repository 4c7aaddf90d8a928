//! A TCP forwarder in front of the relay that cuts its first connection
//! after a number of bytes from the relay, as a flaky network would, and
//! passes later connections through untouched, recording what crossed
//! each (`tests/eventsource.rs`, `tests/browser.rs`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::RawUpstream;

/// What crossed one forwarded connection.
#[derive(Debug, Clone, Default)]
pub struct Crossed {
    /// Client to relay: the request.
    pub request: Vec<u8>,
    /// Relay to client, as far as it was let through.
    pub response: Vec<u8>,
}

/// A TCP forwarder in front of the relay that cuts its first connection
/// after `cut` bytes from the relay, as a flaky network would, and passes
/// later ones through untouched. `reconnected` is notified when the second
/// connection arrives.
pub struct Forwarder {
    pub addr: SocketAddr,
    /// The listener; dropping it ends every connection.
    _raw: RawUpstream,
    seen: Arc<Mutex<Vec<Crossed>>>,
}

impl Forwarder {
    pub async fn start(target: SocketAddr, cut: usize, reconnected: Arc<Notify>) -> Forwarder {
        Self::across(vec![target], cut, reconnected).await
    }

    /// Like [`Forwarder::start`], sending connection `i` to
    /// `targets[i % targets.len()]`, as a load balancer in front of
    /// replicas would.
    pub async fn across(
        targets: Vec<SocketAddr>,
        cut: usize,
        reconnected: Arc<Notify>,
    ) -> Forwarder {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let raw = RawUpstream::start({
            let seen = seen.clone();
            move |client, _| {
                let index = {
                    let mut s = seen.lock().unwrap();
                    s.push(Crossed::default());
                    s.len() - 1
                };
                if index == 1 {
                    reconnected.notify_one();
                }
                let limit = (index == 0).then_some(cut);
                let target = targets[index % targets.len()];
                forward(client, target, limit, seen.clone(), index)
            }
        })
        .await;
        Forwarder {
            addr: raw.addr,
            _raw: raw,
            seen,
        }
    }

    pub fn seen(&self) -> Vec<Crossed> {
        self.seen.lock().unwrap().clone()
    }
}

/// Copies both ways until either side ends; with `limit`, drops both
/// sockets once that many bytes from the relay went through.
async fn forward(
    client: TcpStream,
    target: SocketAddr,
    limit: Option<usize>,
    seen: Arc<Mutex<Vec<Crossed>>>,
    index: usize,
) {
    let Ok(relay) = TcpStream::connect(target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = relay.set_nodelay(true);
    let (mut client_rd, mut client_wr) = client.into_split();
    let (mut relay_rd, mut relay_wr) = relay.into_split();
    let up = tokio::spawn({
        let seen = seen.clone();
        async move {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = client_rd.read(&mut buf).await {
                seen.lock().unwrap()[index]
                    .request
                    .extend_from_slice(&buf[..n]);
                if relay_wr.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            let _ = relay_wr.shutdown().await;
        }
    });
    let mut left = limit.unwrap_or(usize::MAX);
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = relay_rd.read(&mut buf).await {
        let n = n.min(left);
        seen.lock().unwrap()[index]
            .response
            .extend_from_slice(&buf[..n]);
        if client_wr.write_all(&buf[..n]).await.is_err() {
            break;
        }
        left -= n;
        if left == 0 {
            break;
        }
    }
    // Closing both halves here is the cut: the client sees its chunked body
    // end early, the relay its reader go.
    up.abort();
}
