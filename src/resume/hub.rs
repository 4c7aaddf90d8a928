//! Every resumable stream of the relay, by token, and the memory they hold.
//!
//! A stream's shared state sits behind one mutex taken by its producer
//! (once per batch of upstream parts) and its reader (once per batch it
//! reads): two parties, short critical sections, no contention to speak
//! of. The hub's map is locked only to open, attach and close streams.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::task::Waker;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::Token;
use super::log::Log;
use super::remote::Remote;
use crate::body::SseBody;
use crate::dialect::Dialect;
use crate::shutdown::Shutdown;
use crate::sse::Stamp;
use crate::telemetry::{Exchange, Metrics};

/// Tokens remembered after their stream is gone, so a late reconnect hears
/// "expired" rather than "unknown".
const TOMBSTONES: usize = 65_536;

/// Why a stream can no longer be resumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gone {
    /// Nobody reconnected within the window; the upstream was cancelled.
    Expired,
    /// The stream ended and its window passed (or its memory was needed for
    /// newer streams).
    Finished,
    /// The relay is shutting down.
    Stopped,
}

/// A reconnect that cannot be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResumeError {
    /// No such stream (or not one this client key may read).
    Unknown,
    /// The stream existed and is gone.
    Gone(Gone),
    /// Events after the client's last one were dropped from the buffer.
    Overflow { after: u64, oldest: u64 },
    /// The client names an event this stream never sent.
    Ahead { after: u64, sent: u64 },
    /// Cluster mode: the replica holding the stream does not answer (it is
    /// gone, or the cluster store is unreachable).
    Unreachable,
}

pub(crate) struct Hub {
    streams: Mutex<HashMap<Token, Arc<Stream>>>,
    gone: Mutex<Tombstones>,
    /// Streams that ended, oldest first: their logs are the first given
    /// up when `resume_memory` runs out.
    ended: Mutex<VecDeque<Weak<Stream>>>,
    /// `resume_memory`: bytes all logs may hold together.
    memory: u64,
    metrics: Arc<Metrics>,
    drain: Shutdown,
    stop: Shutdown,
    /// Producer tasks, and forwarders to other replicas' readers: the
    /// tasks shutdown waits for.
    producers: AtomicUsize,
    idle: Notify,
    /// Of those, forwarders (a drain lets them finish as it lets clients).
    forwarders: AtomicUsize,
    forwarders_idle: Notify,
    /// Cluster mode: this replica's end of the bus.
    remote: OnceLock<Arc<Remote>>,
}

/// Counts a forwarder, a task [`Hub::wait_idle`] waits for, while it
/// lives.
pub(super) struct Busy(Arc<Hub>);

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.forwarders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.forwarders_idle.notify_waiters();
        }
        self.0.task_ended();
    }
}

impl Hub {
    /// `drain`: stop keeping streams nobody reads; `stop`: end them all.
    pub(crate) fn new(memory: u64, metrics: Arc<Metrics>, drain: Shutdown, stop: Shutdown) -> Self {
        Self {
            streams: Mutex::new(HashMap::new()),
            gone: Mutex::new(Tombstones::default()),
            ended: Mutex::new(VecDeque::new()),
            memory,
            metrics,
            drain,
            stop,
            producers: AtomicUsize::new(0),
            idle: Notify::new(),
            forwarders: AtomicUsize::new(0),
            forwarders_idle: Notify::new(),
            remote: OnceLock::new(),
        }
    }

    /// Cluster mode: streams are resumable from every replica on the bus.
    pub(crate) fn join(&self, remote: Arc<Remote>) {
        let _ = self.remote.set(remote);
    }

    /// This replica's end of the bus, in cluster mode.
    pub(crate) fn remote(&self) -> Option<&Arc<Remote>> {
        self.remote.get()
    }

    /// Counts a forwarder until the guard goes.
    pub(super) fn busy(self: &Arc<Self>) -> Busy {
        self.producers.fetch_add(1, Ordering::AcqRel);
        self.forwarders.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    /// Resolves when no forwarder serves another replica's reader: a
    /// draining replica gives those readers the time it gives its own
    /// clients.
    pub(crate) async fn wait_forwarders(&self) {
        loop {
            let idle = self.forwarders_idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.forwarders.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }

    fn task_ended(&self) {
        if self.producers.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// Registers a new resumable stream, or `None` when the relay is
    /// draining or the memory budget is used up (the stream is then relayed
    /// without resumption).
    pub(crate) fn open(
        &self,
        dialect: Dialect,
        route: usize,
        key: Option<Arc<str>>,
        window: Duration,
        max_bytes: u64,
    ) -> Option<(Arc<Stream>, Stamp)> {
        if self.drain.is_signaled() {
            return None;
        }
        if self.over_budget() && !self.reclaim() {
            self.metrics
                .resume
                .unavailable
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!("resume_memory is used up: stream relayed without resumption");
            return None;
        }
        let token = match self.remote() {
            Some(r) => Token::random_on(r.replica())?,
            None => Token::random()?,
        };
        let stream = Arc::new(Stream {
            token,
            dialect,
            route,
            key,
            window,
            max_bytes,
            state: Mutex::new(State {
                log: Log::new(),
                finished: false,
                closed: None,
                reader: None,
                readers: 0,
                detached_at: Instant::now(),
                producer_blocked: false,
                reclaimed: false,
            }),
            notify: Notify::new(),
        });
        lock(&self.streams).insert(token, stream.clone());
        self.metrics.resume.streams.fetch_add(1, Ordering::Relaxed);
        Some((stream, Stamp::new(token)))
    }

    /// Starts consuming `body` into the stream's log in a task of its own;
    /// returns the first reader's attachment (the original request's).
    pub(crate) fn start(
        self: &Arc<Self>,
        stream: &Arc<Stream>,
        body: SseBody,
        x: Exchange,
    ) -> Attached {
        let attached = stream.attach(0, 0);
        self.producers.fetch_add(1, Ordering::AcqRel);
        tokio::spawn(super::producer::run(self.clone(), stream.clone(), body, x));
        attached
    }

    /// A reconnect: the reader continues after event `after` (from the
    /// first event when `None`). `key` is the label of the client key the
    /// route accepted; it must be the one the stream was opened with.
    pub(crate) fn attach(
        &self,
        token: Token,
        after: Option<u64>,
        key: Option<&str>,
    ) -> Result<(Arc<Stream>, Attached), ResumeError> {
        let found = lock(&self.streams).get(&token).cloned();
        let Some(stream) = found.filter(|s| s.key.as_deref() == key) else {
            return Err(match lock(&self.gone).get(&token) {
                Some((why, _)) => ResumeError::Gone(why),
                None => ResumeError::Unknown,
            });
        };
        let seq = after.map_or(1, |n| n.saturating_add(1));
        let (offset, replay_end) = {
            let st = stream.lock();
            if let Some(why) = st.closed {
                return Err(ResumeError::Gone(why));
            }
            let sent = st.log.next_seq() - 1;
            if seq > sent + 1 {
                return Err(ResumeError::Ahead {
                    after: seq - 1,
                    sent,
                });
            }
            let offset = st.log.start_of(seq).map_err(|lost| ResumeError::Overflow {
                after: seq - 1,
                oldest: lost.oldest,
            })?;
            (offset, st.log.pushed())
        };
        Ok((stream.clone(), stream.attach(offset, replay_end)))
    }

    /// The route a stream came from, while it is held or remembered as
    /// gone (its reconnects get that route's CORS headers).
    pub(crate) fn route_of(&self, token: Token) -> Option<usize> {
        if let Some(s) = lock(&self.streams).get(&token) {
            return Some(s.route);
        }
        lock(&self.gone).get(&token).map(|(_, route)| route)
    }

    /// The route and dialect of a stream held here, or why it is not.
    pub(crate) fn peek(&self, token: Token) -> Result<(usize, Dialect), ResumeError> {
        if let Some(s) = self.find(token) {
            return Ok((s.route, s.dialect));
        }
        Err(match lock(&self.gone).get(&token) {
            Some((why, _)) => ResumeError::Gone(why),
            None => ResumeError::Unknown,
        })
    }

    /// The stream with this token, if it is held.
    pub(crate) fn find(&self, token: Token) -> Option<Arc<Stream>> {
        lock(&self.streams).get(&token).cloned()
    }

    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub(super) fn draining(&self) -> bool {
        self.drain.is_signaled()
    }

    pub(super) fn drain_signal(&self) -> &Shutdown {
        &self.drain
    }

    pub(super) fn stop_signal(&self) -> &Shutdown {
        &self.stop
    }

    pub(super) fn over_budget(&self) -> bool {
        self.metrics.resume.buffered_bytes.load(Ordering::Relaxed) >= self.memory
    }

    pub(super) fn hold(&self, n: u64) {
        self.metrics
            .resume
            .buffered_bytes
            .fetch_add(n, Ordering::Relaxed);
    }

    pub(super) fn release(&self, n: u64) {
        self.metrics
            .resume
            .buffered_bytes
            .fetch_sub(n, Ordering::Relaxed);
    }

    /// The producer of `stream` has ended: forget the stream, keep its
    /// token as a tombstone, give its memory back.
    pub(super) fn close(&self, stream: &Stream, why: Gone) {
        lock(&self.streams).remove(&stream.token);
        lock(&self.gone).insert(stream.token, why, stream.route);
        let held = {
            let mut st = stream.lock();
            st.closed = Some(why);
            if let Some(w) = st.reader.as_mut().and_then(|r| r.waker.take()) {
                w.wake();
            }
            st.log.held()
        };
        self.release(held);
        let r = &self.metrics.resume;
        r.streams.fetch_sub(1, Ordering::Relaxed);
        if why == Gone::Expired {
            r.expired.fetch_add(1, Ordering::Relaxed);
        }
        self.task_ended();
    }

    /// `stream` has ended: its log may be reclaimed under memory pressure.
    pub(super) fn ended(&self, stream: &Arc<Stream>) {
        lock(&self.ended).push_back(Arc::downgrade(stream));
    }

    /// Gives up the logs of ended streams, oldest first, until the budget
    /// has room; false if it has none even so.
    pub(super) fn reclaim(&self) -> bool {
        while self.over_budget() {
            let Some(old) = lock(&self.ended).pop_front() else {
                return false;
            };
            let Some(stream) = old.upgrade() else {
                continue;
            };
            let freed = {
                let mut st = stream.lock();
                st.reclaimed = true;
                st.log.clear()
            };
            self.release(freed);
            stream.notify.notify_one();
        }
        true
    }

    /// Resolves when no producer is left (after `stop`, promptly).
    pub(crate) async fn wait_idle(&self) {
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.producers.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }
}

/// One resumable stream, shared by its producer and its reader.
pub(crate) struct Stream {
    token: Token,
    pub(super) dialect: Dialect,
    /// The route it was opened on (a reconnect must pass that route's auth).
    pub(super) route: usize,
    key: Option<Arc<str>>,
    pub(super) window: Duration,
    pub(super) max_bytes: u64,
    state: Mutex<State>,
    /// Wakes the producer: a reader attached, detached, caught up or ended.
    pub(super) notify: Notify,
}

pub(super) struct State {
    pub(super) log: Log,
    /// The producer pushed the stream's last part.
    pub(super) finished: bool,
    /// The producer has exited.
    pub(super) closed: Option<Gone>,
    pub(super) reader: Option<Slot>,
    readers: u64,
    /// When the last reader went away.
    pub(super) detached_at: Instant,
    /// The producer waits for the reader to catch up.
    pub(super) producer_blocked: bool,
    /// The ended stream's log was given up for newer streams.
    pub(super) reclaimed: bool,
}

pub(super) struct Slot {
    pub(super) id: u64,
    /// Stream offset the reader has taken up to.
    pub(super) offset: u64,
    pub(super) waker: Option<Waker>,
}

/// A reader's place in a stream.
pub(crate) struct Attached {
    pub(super) id: u64,
    pub(super) offset: u64,
    /// Bytes before this offset count as replayed.
    pub(super) replay_end: u64,
}

impl Stream {
    pub(crate) fn token(&self) -> Token {
        self.token
    }

    pub(crate) fn route(&self) -> usize {
        self.route
    }

    pub(crate) fn dialect(&self) -> Dialect {
        self.dialect
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Makes a new reader the stream's only one; a previous reader learns
    /// at its next poll that it was superseded.
    fn attach(&self, offset: u64, replay_end: u64) -> Attached {
        let id = {
            let mut st = self.lock();
            if let Some(w) = st.reader.take().and_then(|r| r.waker) {
                w.wake();
            }
            st.readers += 1;
            let id = st.readers;
            st.reader = Some(Slot {
                id,
                offset,
                waker: None,
            });
            id
        };
        self.notify.notify_one();
        Attached {
            id,
            offset,
            replay_end,
        }
    }

    /// Appends a batch from the producer, drops what the limits say must
    /// go (never what the reader has not taken yet), wakes the reader.
    pub(super) fn push(&self, hub: &Hub, batch: &mut Vec<(u64, Bytes)>, finished: bool) {
        let mut st = self.lock();
        let mut added = 0;
        for (seq, bytes) in batch.drain(..) {
            added += bytes.len() as u64;
            st.log.push(seq, bytes);
        }
        hub.hold(added);
        st.finished |= finished;
        let floor = st.reader.as_ref().map_or(st.log.pushed(), |r| r.offset);
        while st.log.held() > self.max_bytes || hub.over_budget() {
            match st.log.drop_oldest(floor) {
                Some(n) => hub.release(n),
                None => break,
            }
        }
        if let Some(w) = st.reader.as_mut().and_then(|r| r.waker.take()) {
            w.wake();
        }
        let pressed = hub.over_budget();
        drop(st);
        if pressed {
            hub.reclaim();
        }
    }
}

/// A poisoned lock only means another thread panicked mid-update of plain
/// counters and queues; the data is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Default)]
struct Tombstones {
    /// Why each stream went, and its route.
    map: HashMap<Token, (Gone, usize)>,
    order: VecDeque<Token>,
}

impl Tombstones {
    fn insert(&mut self, token: Token, why: Gone, route: usize) {
        if self.map.insert(token, (why, route)).is_none() {
            self.order.push_back(token);
        }
        while self.order.len() > TOMBSTONES {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }

    fn get(&self, token: &Token) -> Option<(Gone, usize)> {
        self.map.get(token).copied()
    }
}
