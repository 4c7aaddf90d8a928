//! HTTP/1.1 upstream connections driven by the request that uses them.
//!
//! An HTTP/2 connection is shared, so it runs as a task of its own. An
//! HTTP/1.1 connection serves one request at a time, so it needs no task:
//! the request's future polls it while waiting for response headers, and the
//! response body polls it while relaying ([`H1Conn::drive`]). Upstream bytes
//! are then read and decoded in the same task, in the same poll, that writes
//! them to the client: no cross-task wake-up per chunk, and every chunk
//! already received is relayed before hyper flushes, so back-to-back events
//! leave in one write instead of one write each.
//!
//! An idle connection in the pool is polled by nobody; checkout polls it
//! once ([`H1Conn::poll_closed`]) so a close the upstream sent meanwhile is
//! seen before a request is trusted to it. Dropping an `H1Conn` closes the
//! socket (and counts the connection as gone).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use hyper::client::conn::http1;

use crate::body::RequestBody;

type ConnFuture = Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>>;

pub struct H1Conn {
    pub(super) tx: http1::SendRequest<RequestBody>,
    /// `None` once the connection has ended (dropping hyper's dispatcher
    /// fails whatever was still queued on it, so no waiter is left behind).
    conn: Option<ConnFuture>,
    on_close: Option<Box<dyn FnOnce() + Send>>,
}

impl H1Conn {
    pub fn new(
        tx: http1::SendRequest<RequestBody>,
        conn: ConnFuture,
        on_close: Box<dyn FnOnce() + Send>,
    ) -> Self {
        Self {
            tx,
            conn: Some(conn),
            on_close: Some(on_close),
        }
    }

    /// Runs the connection's I/O; false once it has ended.
    pub fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        match conn.as_mut().poll(cx) {
            Poll::Pending => true,
            Poll::Ready(res) => {
                if let Err(e) = res {
                    tracing::debug!("upstream connection ended: {e}");
                }
                self.conn = None;
                false
            }
        }
    }

    /// Lets a pooled connection take in what happened while it sat idle;
    /// true if it is closed (or cannot take a request).
    pub fn poll_closed(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        !self.drive(&mut cx) || self.tx.is_closed()
    }

    /// Ready when the connection can take a request, or `Err` if it ended.
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ()>> {
        if !self.drive(cx) {
            return Poll::Ready(Err(()));
        }
        self.tx.poll_ready(cx).map_err(|_| ())
    }
}

impl Drop for H1Conn {
    fn drop(&mut self) {
        self.conn = None;
        if let Some(f) = self.on_close.take() {
            f();
        }
    }
}
