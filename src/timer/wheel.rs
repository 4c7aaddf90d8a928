//! A hashed timer wheel for one connection.
//!
//! Deadlines are rounded *up* to ticks of `tick` (coarse on purpose: a
//! keepalive may go out up to one tick late, never early). Ticks hash into
//! [`SLOTS`] slots; each slot is an intrusive doubly linked list through the
//! entry slab (O(1) insert and unlink), so an empty wheel is a few hundred
//! bytes. Entries due more than one rotation ahead stay in their slot and
//! are skipped until their rotation comes round.
//!
//! # Invariants (checked with `debug_assert!`)
//! - An entry is linked into exactly one slot, the slot of its `due` tick,
//!   while it is live and unfired; firing or removing it unlinks it.
//! - Bit `i` of `occupied` is set exactly when slot `i`'s list is not empty,
//!   so the next due tick is found by visiting occupied slots in tick order
//!   (bit scans), not by walking every entry.
//! - Every entry linked has `due > now`: the driver fires everything due at
//!   or before `now`, and new deadlines are never placed at or before it.
//!
//! Locking: one mutex per connection, taken once per firing, insert, reset
//! or removal, never per forwarded chunk. HTTP/1 connections have one
//! stream and HTTP/2 connections a bounded few, so it is never contended in
//! practice. Wakers are woken after the lock is released.

use std::future::poll_fn;
use std::pin::pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Slots per rotation (a power of two).
pub(super) const SLOTS: usize = 64;
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
    /// Bit `i` set: `heads[i]` is not empty.
    occupied: u64,
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
                occupied: 0,
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
        let driver = w.rearm_for(due);
        drop(w);
        if let Some(d) = driver {
            d.wake();
        }
        TimerKey(id)
    }

    /// Moves an entry to `deadline` and clears its fired flag.
    pub fn reset(&self, key: TimerKey, deadline: Instant) {
        let mut w = self.lock();
        if !w.is_live(key) {
            return;
        }
        if !w.entries[key.0 as usize].fired {
            w.unlink(key.0);
        }
        let due = w.tick_at(deadline);
        let e = &mut w.entries[key.0 as usize];
        e.due = due;
        e.fired = false;
        w.link(key.0);
        w.dirty = true;
        let driver = w.rearm_for(due);
        drop(w);
        if let Some(d) = driver {
            d.wake();
        }
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
        if !w.entries[key.0 as usize].fired {
            w.unlink(key.0);
        }
        let e = &mut w.entries[key.0 as usize];
        e.live = false;
        let waker = e.waker.take();
        w.free.push(key.0);
        drop(w);
        drop(waker); // a waker's drop may run foreign code: not under the lock
    }

    /// Live entries (tests check the slab is reused).
    #[cfg(test)]
    pub(super) fn live(&self) -> usize {
        let w = self.lock();
        w.entries.len() - w.free.len()
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
        let mut due = Vec::new();
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
                w.advance(now, &mut due);
                w.armed = w.next_due().unwrap_or(u64::MAX);
                w.check();
                (w.armed != u64::MAX).then(|| w.instant_of(w.armed))
            };
            due.drain(..).for_each(Waker::wake);
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
        debug_assert!(
            self.entries[id as usize].due > self.now,
            "linked at or before now"
        );
        let slot = (self.entries[id as usize].due as usize) & (SLOTS - 1);
        self.occupied |= 1 << slot;
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
        let slot = (due as usize) & (SLOTS - 1);
        if prev == NIL {
            debug_assert_eq!(self.heads[slot], id, "an unlinked entry");
            self.heads[slot] = next;
            if next == NIL {
                self.occupied &= !(1 << slot);
            }
        } else {
            self.entries[prev as usize].next = next;
        }
        if next != NIL {
            self.entries[next as usize].prev = prev;
        }
    }

    /// Arms the driver for `due` if that is earlier than what it sleeps
    /// for; the driver's waker, to wake once the lock is released.
    fn rearm_for(&mut self, due: u64) -> Option<Waker> {
        if due >= self.armed {
            return None;
        }
        self.armed = due;
        self.driver.clone()
    }

    /// Fires (and unlinks) every entry due at or before tick `to`, pushing
    /// the wakers to wake onto `wake`.
    fn advance(&mut self, to: u64, wake: &mut Vec<Waker>) {
        if to <= self.now {
            return;
        }
        let span = (to - self.now).min(SLOTS as u64);
        for t in self.now + 1..=self.now + span {
            let slot = (t as usize) & (SLOTS - 1);
            if self.occupied & (1 << slot) == 0 {
                continue;
            }
            let mut cur = self.heads[slot];
            while cur != NIL {
                let next = self.entries[cur as usize].next;
                if self.entries[cur as usize].due <= to {
                    self.unlink(cur);
                    let e = &mut self.entries[cur as usize];
                    e.fired = true;
                    wake.extend(e.waker.take());
                }
                cur = next;
            }
        }
        self.now = to;
    }

    /// Earliest tick at which a linked (unfired) entry is due: occupied
    /// slots are visited in tick order from `now + 1`, so the first entry
    /// due within this rotation is the answer. Only when every entry lies
    /// beyond one rotation is the earliest of them taken.
    fn next_due(&self) -> Option<u64> {
        let start = ((self.now + 1) as usize) & (SLOTS - 1);
        // Bit k of `ahead`: the slot of tick now + 1 + k is occupied.
        let ahead = self.occupied.rotate_right(start as u32);
        let mut rest = ahead;
        let mut later: Option<u64> = None;
        while rest != 0 {
            let k = u64::from(rest.trailing_zeros());
            rest &= rest - 1;
            let t = self.now + 1 + k;
            let mut cur = self.heads[(t as usize) & (SLOTS - 1)];
            while cur != NIL {
                let e = &self.entries[cur as usize];
                if e.due == t {
                    return Some(t);
                }
                later = Some(later.map_or(e.due, |l| l.min(e.due)));
                cur = e.next;
            }
        }
        later
    }

    /// The invariants in the module doc (debug builds only).
    fn check(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        let mut linked = 0;
        for (slot, &head) in self.heads.iter().enumerate() {
            debug_assert_eq!(
                head != NIL,
                self.occupied & (1 << slot) != 0,
                "occupied bit of slot {slot}"
            );
            let mut cur = head;
            let mut prev = NIL;
            while cur != NIL {
                let e = &self.entries[cur as usize];
                debug_assert!(e.live && !e.fired, "a dead or fired entry is linked");
                debug_assert_eq!(
                    (e.due as usize) & (SLOTS - 1),
                    slot,
                    "entry in the wrong slot"
                );
                debug_assert!(e.due > self.now, "a linked entry is overdue");
                debug_assert_eq!(e.prev, prev, "broken back link");
                linked += 1;
                prev = cur;
                cur = e.next;
            }
        }
        let unfired = self.entries.iter().filter(|e| e.live && !e.fired).count();
        debug_assert_eq!(linked, unfired, "every live, unfired entry is linked once");
        debug_assert_eq!(
            self.entries.iter().filter(|e| !e.live).count(),
            self.free.len(),
            "free list and dead entries"
        );
    }
}
