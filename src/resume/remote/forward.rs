//! The producer's side of a reconnect served elsewhere: a task that reads
//! the stream like a local reader and publishes what it reads to the
//! resumer, in messages of at most [`MAX_MESSAGE`] bytes, one `PUBLISH`
//! at a time (the next batch is read only once Redis took the last, so a
//! slow bus slows the reader, which holds the producer back as a slow
//! client would).
//!
//! It ends when the stream ends for it (end, error or supersede: the
//! reader's own last events say which), when the resumer cancels, or when
//! nobody hears it any more (`PUBLISH` reached no one, or failed).

use std::future::poll_fn;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;

use super::wire::Msg;
use super::{BEAT, MAX_MESSAGE, Remote};
use crate::body::Heartbeat;
use crate::cluster::bus::ReplicaId;
use crate::resume::hub::{Hub, ResumeError};
use crate::resume::reader::Reader;
use crate::resume::token::Token;
use crate::sse::COMMENT_LINE;
use crate::timer::Wheel;

/// Resolution of a forwarder's own timer wheel (its heartbeat only).
const TICK: Duration = Duration::from_millis(100);

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// What the registry keeps of a running forwarder.
pub(super) struct Handle {
    id: u64,
    cancel: Arc<Notify>,
}

impl Handle {
    pub(super) fn id(&self) -> u64 {
        self.id
    }

    pub(super) fn cancel(&self) {
        self.cancel.notify_one();
    }
}

/// Serves `resumer`'s attach request (slot `slot`) in a task of its own.
#[allow(clippy::too_many_arguments)] // the fields of one request
pub(super) fn start(
    remote: Arc<Remote>,
    hub: Arc<Hub>,
    resumer: ReplicaId,
    slot: u64,
    token: Token,
    after: Option<u64>,
    route: usize,
    key: Option<String>,
) {
    // The route is checked before attaching: an attach supersedes.
    let found = match hub.find(token) {
        Some(s) if s.route() != route => Err(ResumeError::Unknown),
        _ => hub.attach(token, after, key.as_deref()),
    };
    let (stream, at) = match found {
        Ok(found) => found,
        Err(e) => {
            tracing::info!(?e, "resume from another replica refused");
            return remote.send_later(resumer, slot, Msg::Refused(e));
        }
    };
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let cancel = Arc::new(Notify::new());
    remote.register(
        resumer,
        slot,
        Handle {
            id,
            cancel: cancel.clone(),
        },
    );
    let busy = hub.busy();
    let wheel = Arc::new(Wheel::new(TICK));
    let heartbeat = Heartbeat::new(wheel.clone(), BEAT);
    let accepted = Msg::Accepted {
        dialect: stream.dialect(),
        max_bytes: stream.max_bytes,
    };
    let metrics = hub.metrics().clone();
    metrics
        .resume
        .forwarded_streams
        .fetch_add(1, Ordering::Relaxed);
    let reader = Reader::new(stream, at, heartbeat, metrics.clone());
    tracing::debug!(
        resumer = %format_args!("{resumer:08x}"),
        "stream resumed on another replica: forwarding"
    );
    tokio::spawn(async move {
        let _busy = busy;
        let sent = run(&remote, resumer, slot, accepted, reader, &wheel, &cancel).await;
        metrics
            .resume
            .forwarded_bytes
            .fetch_add(sent, Ordering::Relaxed);
        remote.unregister(resumer, slot, id);
    });
}

enum Batch {
    Data(Bytes),
    Beat,
    End,
}

async fn run(
    remote: &Remote,
    resumer: ReplicaId,
    slot: u64,
    accepted: Msg,
    mut reader: Reader,
    wheel: &Wheel,
    cancel: &Notify,
) -> u64 {
    let mut sent = 0;
    if !heard(remote.send(resumer, slot, accepted).await) {
        return sent;
    }
    let mut drive = pin!(wheel.drive());
    let mut buf = BytesMut::new();
    loop {
        let batch = tokio::select! {
            biased;
            () = cancel.notified() => return sent,
            () = &mut drive => return sent, // never: the driver runs forever
            b = poll_fn(|cx| poll_batch(&mut reader, cx, &mut buf)) => b,
        };
        let msg = match batch {
            Batch::Data(b) => {
                sent += b.len() as u64;
                Msg::Data(b)
            }
            Batch::Beat => Msg::Beat,
            Batch::End => Msg::End {
                ok: !reader.failed(),
            },
        };
        let end = matches!(msg, Msg::End { .. });
        if !heard(remote.send(resumer, slot, msg).await) || end {
            return sent;
        }
    }
}

/// A `PUBLISH` someone received.
fn heard(sent: Result<u64, ()>) -> bool {
    matches!(sent, Ok(n) if n > 0)
}

/// What the reader has ready, up to [`MAX_MESSAGE`] bytes; its keepalive
/// (due only after a silent [`BEAT`]) becomes a beat.
fn poll_batch(reader: &mut Reader, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<Batch> {
    loop {
        match reader.poll_frame(cx, None) {
            Poll::Ready(Some(b)) if b.as_ref() == COMMENT_LINE && buf.is_empty() => {
                return Poll::Ready(Batch::Beat);
            }
            Poll::Ready(Some(b)) if b.as_ref() == COMMENT_LINE => {}
            Poll::Ready(Some(b)) => {
                buf.extend_from_slice(&b);
                if buf.len() >= MAX_MESSAGE {
                    return Poll::Ready(Batch::Data(buf.split().freeze()));
                }
            }
            Poll::Ready(None) if buf.is_empty() => return Poll::Ready(Batch::End),
            Poll::Ready(None) | Poll::Pending if !buf.is_empty() => {
                return Poll::Ready(Batch::Data(buf.split().freeze()));
            }
            Poll::Ready(None) => return Poll::Ready(Batch::End),
            Poll::Pending => return Poll::Pending,
        }
    }
}
