//! A hashed timer wheel for one connection.
//!
//! Deadlines are rounded *up* to ticks of `tick` (coarse on purpose: a
//! keepalive may go out up to one tick late, never early). Ticks hash into
//! [`SLOTS`] slots; each slot is an intrusive doubly linked list through the
//! entry slab (O(1) insert and unlink), so an empty wheel is a few hundred
//! bytes. Entries due more
//! than one rotation ahead stay in their slot and are skipped until their
//! rotation comes round.
//!
//! Locking: one mutex per connection, taken once per firing, insert, reset
//! or removal, never per forwarded chunk. HTTP/1 connections have one
//! stream and HTTP/2 connections a bounded few, so it is never contended in
//! practice.

use std::future::poll_fn;
use std::pin::pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Slots per rotation (a power of two).
pub const SLOTS: usize = 64;
const NIL: u32 = u32::MAX;

/// Handle to one entry; removed from the wheel with [`Wheel::remove`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerKey(u32);

struct Entry {
    due: u64,
    prev: u32,
    next: u32,
    fired: bool,
    waker: Option<Waker>,
    live: bool,
}

struct Inner {
    origin: Instant,
    tick: Duration,
    /// Last tick the driver processed: everything due at or before it fired.
    now: u64,
    heads: [u32; SLOTS],
    entries: Vec<Entry>,
    free: Vec<u32>,
    driver: Option<Waker>,
    /// Tick the driver is sleeping until (`u64::MAX`: not armed).
    armed: u64,
    /// An entry was added or moved since the driver last scanned: the next
    /// due tick may have changed.
    dirty: bool,
}

/// The per-connection wheel.
pub struct Wheel {
    inner: Mutex<Inner>,
}

impl Wheel {
    /// A wheel with resolution `tick` (clamped to at least 1 ms).
    pub fn new(tick: Duration) -> Self {
        Self {
            inner: Mutex::new(Inner {
                origin: Instant::now(),
                tick: tick.max(Duration::from_millis(1)),
                now: 0,
                heads: [NIL; SLOTS],
                entries: Vec::new(),
                free: Vec::new(),
                driver: None,
                armed: u64::MAX,
                dirty: false,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing here can panic while the lock is held; recover anyway.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds an entry due at `deadline`.
    pub fn insert(&self, deadline: Instant) -> TimerKey {
        let mut w = self.lock();
        let due = w.tick_at(deadline);
        let entry = Entry {
            due,
            prev: NIL,
            next: NIL,
            fired: false,
            waker: None,
            live: true,
        };
        let id = match w.free.pop() {
            Some(id) => {
                w.entries[id as usize] = entry;
                id
            }
            None => {
                w.entries.push(entry);
                (w.entries.len() - 1) as u32
            }
        };
        w.link(id);
        w.dirty = true;
        w.wake_driver_for(due);
        TimerKey(id)
    }

    /// Moves an entry to `deadline` and clears its fired flag.
    pub fn reset(&self, key: TimerKey, deadline: Instant) {
        let mut w = self.lock();
        if !w.is_live(key) {
            return;
        }
        w.unlink(key.0);
        let due = w.tick_at(deadline);
        let e = &mut w.entries[key.0 as usize];
        e.due = due;
        e.fired = false;
        w.link(key.0);
        w.dirty = true;
        w.wake_driver_for(due);
    }

    /// Ready once the entry has fired; registers `cx`'s waker otherwise.
    pub fn poll_fired(&self, key: TimerKey, cx: &mut Context<'_>) -> Poll<()> {
        let mut w = self.lock();
        if !w.is_live(key) {
            return Poll::Pending;
        }
        let e = &mut w.entries[key.0 as usize];
        if e.fired {
            return Poll::Ready(());
        }
        match &e.waker {
            Some(old) if old.will_wake(cx.waker()) => {}
            _ => e.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    pub fn remove(&self, key: TimerKey) {
        let mut w = self.lock();
        if !w.is_live(key) {
            return;
        }
        w.unlink(key.0);
        let e = &mut w.entries[key.0 as usize];
        e.live = false;
        e.waker = None;
        w.free.push(key.0);
    }

    /// Number of live entries.
    pub fn len(&self) -> usize {
        let w = self.lock();
        w.entries.len() - w.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fires due entries forever; run it beside the connection it serves.
    pub async fn drive(&self) {
        let mut sleep = pin!(tokio::time::sleep(Duration::from_secs(86_400)));
        poll_fn(|cx| self.poll_drive(cx, sleep.as_mut())).await
    }

    /// The driver runs in its connection's task, so it is polled on every
    /// wake-up of that task (each relayed chunk, each request). Unless an
    /// entry was added or moved, or its sleep fired, there is nothing to
    /// scan: that case costs a lock and a sleep poll.
    fn poll_drive(&self, cx: &mut Context<'_>, mut sleep: std::pin::Pin<&mut Sleep>) -> Poll<()> {
        loop {
            let deadline = {
                let mut w = self.lock();
                match &w.driver {
                    Some(d) if d.will_wake(cx.waker()) => {}
                    _ => w.driver = Some(cx.waker().clone()),
                }
                if !std::mem::take(&mut w.dirty) {
                    if w.armed == u64::MAX {
                        return Poll::Pending; // nothing to fire until an insert
                    }
                    drop(w);
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    w = self.lock();
                }
                let now = w.tick_floor(Instant::now());
                w.advance(now);
                w.armed = w.next_due().unwrap_or(u64::MAX);
                (w.armed != u64::MAX).then(|| w.instant_of(w.armed))
            };
            let Some(deadline) = deadline else {
                return Poll::Pending; // woken by the next insert
            };
            if sleep.deadline() != deadline {
                sleep.as_mut().reset(deadline);
            }
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

impl Inner {
    /// First tick at or after `t` (deadlines round up).
    fn tick_at(&self, t: Instant) -> u64 {
        let nanos = t.saturating_duration_since(self.origin).as_nanos();
        let tick = self.tick.as_nanos();
        let due = nanos.div_ceil(tick) as u64;
        due.max(self.now + 1)
    }

    /// Last tick at or before `t`.
    fn tick_floor(&self, t: Instant) -> u64 {
        (t.saturating_duration_since(self.origin).as_nanos() / self.tick.as_nanos()) as u64
    }

    fn instant_of(&self, tick: u64) -> Instant {
        let nanos = u128::from(tick) * self.tick.as_nanos();
        self.origin + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    fn is_live(&self, key: TimerKey) -> bool {
        self.entries.get(key.0 as usize).is_some_and(|e| e.live)
    }

    fn link(&mut self, id: u32) {
        let slot = (self.entries[id as usize].due as usize) & (SLOTS - 1);
        let head = self.heads[slot];
        if head != NIL {
            self.entries[head as usize].prev = id;
        }
        let e = &mut self.entries[id as usize];
        e.prev = NIL;
        e.next = head;
        self.heads[slot] = id;
    }

    fn unlink(&mut self, id: u32) {
        let (due, prev, next) = {
            let e = &self.entries[id as usize];
            (e.due, e.prev, e.next)
        };
        if prev == NIL {
            self.heads[(due as usize) & (SLOTS - 1)] = next;
        } else {
            self.entries[prev as usize].next = next;
        }
        if next != NIL {
            self.entries[next as usize].prev = prev;
        }
    }

    fn wake_driver_for(&mut self, due: u64) {
        if due < self.armed {
            self.armed = due;
            if let Some(d) = &self.driver {
                d.wake_by_ref();
            }
        }
    }

    /// Fires every unfired entry due at or before tick `to`.
    fn advance(&mut self, to: u64) {
        if to <= self.now {
            return;
        }
        let span = (to - self.now).min(SLOTS as u64);
        for t in self.now + 1..=self.now + span {
            let mut cur = self.heads[(t as usize) & (SLOTS - 1)];
            while cur != NIL {
                let e = &mut self.entries[cur as usize];
                if e.due <= to && !e.fired {
                    e.fired = true;
                    if let Some(w) = e.waker.take() {
                        w.wake();
                    }
                }
                cur = e.next;
            }
        }
        self.now = to;
    }

    /// Earliest tick at which an unfired entry is due.
    fn next_due(&self) -> Option<u64> {
        for t in self.now + 1..=self.now + SLOTS as u64 {
            let mut cur = self.heads[(t as usize) & (SLOTS - 1)];
            while cur != NIL {
                let e = &self.entries[cur as usize];
                if e.due == t && !e.fired {
                    return Some(t);
                }
                cur = e.next;
            }
        }
        // Nothing within one rotation: the earliest later entry, if any.
        self.entries
            .iter()
            .filter(|e| e.live && !e.fired && e.due > self.now)
            .map(|e| e.due)
            .min()
    }
}
