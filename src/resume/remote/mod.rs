//! Resumption across replicas (cluster mode): a reconnect that lands on
//! another replica than its stream's is served from the producing replica
//! over the cluster's bus.
//!
//! ```text
//!  replica B (resumer)                      replica A (producer)
//!  reconnect, token names A
//!    ├─ Q ───────────── bus ──────────────▶ route, dialect  (path form only:
//!    │◀──────────────────────────────────── I               B checks the route's auth)
//!    ├─ R after=N, route, key ────────────▶ hub.attach: a reader like a local one
//!    │◀──────────────────────────────────── A, then D (replay, then live) ... H ... E
//!  client ◀── Reader (Feed)                      forwarder task ◀── Log
//! ```
//! - **Nothing per event while nobody resumes elsewhere.** The producer
//!   keeps its log in memory as on one replica, and the token names the
//!   producing replica, so no stream is registered anywhere: a stream
//!   costs Redis nothing until a reconnect lands elsewhere. A remote
//!   reader then costs one `PUBLISH` per batch of events.
//! - **Bounded.** Redis stores nothing (pub/sub); a forwarder publishes at
//!   most [`MAX_MESSAGE`] bytes at a time and waits for each `PUBLISH`; a
//!   resumer holds at most the stream's `resume_max_bytes` not yet taken by
//!   its client, else ends it with `resume_overflow`.
//! - **Producer lost.** A forwarder that has nothing to send says so every
//!   [`BEAT`]; a resumer that hears nothing for [`SILENCE`] (SIGKILL, a
//!   partition) ends its client's stream with an error event after every
//!   event it got. A producer that stops or drains sends its end itself.
//! - **Supersede** is the hub's: a forwarder is the stream's reader like
//!   any other, so a newer reconnect anywhere ends it (`resume_superseded`
//!   goes over the bus to its client).
//! - **Auth** is bound as on one replica: the route's auth runs on the
//!   resumer, and the producer checks route and client key against the
//!   stream's.

pub(super) mod feed;
mod forward;
mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

pub(crate) use feed::Feed;

use super::hub::{Hub, ResumeError};
use super::token::Token;
use crate::cluster::Cluster;
use crate::cluster::bus::{Inbound, ReplicaId};
use crate::dialect::Dialect;
use crate::shutdown::Shutdown;
use wire::{Envelope, Msg};

/// Most stream bytes in one bus message.
const MAX_MESSAGE: usize = 64 * 1024;
/// A forwarder with nothing to send says it is alive this often.
const BEAT: Duration = Duration::from_secs(1);
/// A resumer gives its producer up after this long without a message
/// (and waits this long at most for an answer to Q or R).
const SILENCE: Duration = Duration::from_secs(3);

/// This replica's end of the bus, for both roles.
pub(crate) struct Remote {
    cluster: Arc<Cluster>,
    replica: ReplicaId,
    hub: Weak<Hub>,
    next_slot: AtomicU64,
    /// Resumer side: this replica's reconnects served elsewhere, by slot.
    slots: Mutex<HashMap<u64, feed::Inlet>>,
    /// Producer side: forwarders serving other replicas, by (resumer, slot).
    forwarders: Mutex<HashMap<(ReplicaId, u64), forward::Handle>>,
}

impl Remote {
    /// Starts this replica's end of the bus: draws the replica id, then
    /// listens until `stop`.
    pub(crate) fn start(
        cluster: Arc<Cluster>,
        hub: Weak<Hub>,
        stop: &Shutdown,
    ) -> Option<(Arc<Self>, Vec<tokio::task::JoinHandle<()>>)> {
        let replica = Token::random()?.replica();
        let this = Arc::new(Self {
            cluster,
            replica,
            hub,
            next_slot: AtomicU64::new(1),
            slots: Mutex::new(HashMap::new()),
            forwarders: Mutex::new(HashMap::new()),
        });
        let listen = {
            let (this, stop) = (this.clone(), stop.clone());
            tokio::spawn(async move {
                this.cluster
                    .listen(replica, |m| this.inbound(m), &stop)
                    .await;
                this.fail_all(feed::Failure::Stopped);
            })
        };
        Some((this, vec![listen]))
    }

    pub(crate) fn replica(&self) -> ReplicaId {
        self.replica
    }

    /// Whether `token`'s stream was produced by another replica.
    pub(crate) fn elsewhere(&self, token: Token) -> bool {
        token.replica() != self.replica
    }

    /// The route and dialect of `token`'s stream, asked of its producer.
    pub(crate) async fn query(
        self: &Arc<Self>,
        token: Token,
    ) -> Result<(usize, Dialect), ResumeError> {
        let mut replies = self.open_slot(token.replica(), 0);
        self.ask(&replies, Msg::Query { token }).await?;
        match replies.first(SILENCE).await? {
            Msg::Info { route, dialect } => Ok((route, dialect)),
            Msg::Refused(e) => Err(e),
            _ => Err(ResumeError::Unreachable),
        }
    }

    /// Attaches to `token`'s stream on its producer, after event `after`,
    /// as a reconnect on `route` with client key `key`.
    pub(crate) async fn attach(
        self: &Arc<Self>,
        token: Token,
        after: Option<u64>,
        route: usize,
        key: Option<&str>,
    ) -> Result<(Dialect, Feed), ResumeError> {
        // The limit is the stream's own, set as its acceptance arrives;
        // until then the slot takes the largest a producer sends at once.
        let mut feed = self.open_slot(token.replica(), MAX_MESSAGE as u64);
        let msg = Msg::Attach {
            token,
            after,
            route,
            key: key.map(str::to_owned),
        };
        self.ask(&feed, msg).await?;
        // Whatever happens from here, dropping the feed frees the slot and,
        // unless the producer answered for good, tells it to let go.
        match feed.first(SILENCE).await? {
            Msg::Accepted { dialect, .. } => Ok((dialect, feed)),
            Msg::Refused(e) => Err(e),
            _ => Err(ResumeError::Unreachable),
        }
    }

    /// Publishes a request for `feed`'s slot to its producer. Redis
    /// answering that nobody listens for that replica means no replica
    /// holds the stream (it stopped, or the token is not one of the
    /// cluster's): unknown, as on one replica. Redis not answering is
    /// [`ResumeError::Unreachable`].
    async fn ask(&self, feed: &Feed, msg: Msg) -> Result<(), ResumeError> {
        let producer = feed.producer();
        match self.send(producer, feed.slot(), msg).await {
            Ok(n) if n > 0 => Ok(()),
            Ok(_) => {
                tracing::info!(
                    producer = %format_args!("{producer:08x}"),
                    "resume: no replica on the bus has this stream's id"
                );
                Err(ResumeError::Unknown)
            }
            Err(()) => Err(ResumeError::Unreachable),
        }
    }

    /// Sends `msg` about `slot` to `to`; how many replicas heard it.
    async fn send(&self, to: ReplicaId, slot: u64, msg: Msg) -> Result<u64, ()> {
        let e = Envelope {
            from: self.replica,
            slot,
            msg,
        };
        self.cluster.publish(to, e.encode()).await.map_err(|_| ())
    }

    /// Sends `msg` from a task of its own (from `Drop`, or without waiting).
    fn send_later(self: &Arc<Self>, to: ReplicaId, slot: u64, msg: Msg) {
        let this = self.clone();
        tokio::spawn(async move {
            let _ = this.send(to, slot, msg).await;
        });
    }

    /// A new slot for replies from `producer`, owned by the feed returned
    /// (dropping it frees the slot).
    fn open_slot(self: &Arc<Self>, producer: ReplicaId, limit: u64) -> Feed {
        let slot = self.next_slot.fetch_add(1, Ordering::Relaxed);
        let (inlet, outlet) = feed::channel(producer, limit);
        lock(&self.slots).insert(slot, inlet);
        Feed::new(self.clone(), producer, slot, outlet, SILENCE)
    }

    fn close_slot(&self, slot: u64) {
        lock(&self.slots).remove(&slot);
    }

    /// Hands what the bus brings to its slot or its handler.
    fn inbound(self: &Arc<Self>, m: Inbound) {
        match m {
            Inbound::Message(payload) => match Envelope::decode(payload) {
                Some(e) => self.receive(e),
                None => tracing::warn!("resume: malformed message on the replicas' bus"),
            },
            Inbound::Lost => self.fail_all(feed::Failure::BusLost),
        }
    }

    fn receive(self: &Arc<Self>, e: Envelope) {
        match e.msg {
            Msg::Query { token } => {
                let answer = match self.hub.upgrade() {
                    Some(hub) => hub
                        .peek(token)
                        .map(|(route, dialect)| Msg::Info { route, dialect }),
                    None => Err(ResumeError::Gone(super::Gone::Stopped)),
                };
                let msg = answer.unwrap_or_else(Msg::Refused);
                self.send_later(e.from, e.slot, msg);
            }
            Msg::Attach {
                token,
                after,
                route,
                key,
            } => match self.hub.upgrade() {
                Some(hub) => {
                    forward::start(self.clone(), hub, e.from, e.slot, token, after, route, key)
                }
                None => {
                    let gone = ResumeError::Gone(super::Gone::Stopped);
                    self.send_later(e.from, e.slot, Msg::Refused(gone));
                }
            },
            Msg::Cancel => {
                if let Some(h) = lock(&self.forwarders).remove(&(e.from, e.slot)) {
                    h.cancel();
                }
            }
            msg => {
                let mut slots = lock(&self.slots);
                let kept = match slots.get_mut(&e.slot) {
                    Some(inlet) if inlet.producer() == e.from => inlet.deliver(msg),
                    // Nobody here waits for it (any more).
                    _ => false,
                };
                if !kept {
                    slots.remove(&e.slot);
                    drop(slots);
                    // The forwarder should stop, if it has not already.
                    self.send_later(e.from, e.slot, Msg::Cancel);
                }
            }
        }
    }

    fn fail_all(&self, why: feed::Failure) {
        for (_, inlet) in lock(&self.slots).drain() {
            inlet.fail(why);
        }
    }

    fn register(&self, resumer: ReplicaId, slot: u64, h: forward::Handle) {
        if let Some(old) = lock(&self.forwarders).insert((resumer, slot), h) {
            old.cancel();
        }
    }

    fn unregister(&self, resumer: ReplicaId, slot: u64, id: u64) {
        let mut f = lock(&self.forwarders);
        if f.get(&(resumer, slot)).is_some_and(|h| h.id() == id) {
            f.remove(&(resumer, slot));
        }
    }
}

/// See `hub::lock`.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
