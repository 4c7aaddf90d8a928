//! Passive health and load of one upstream endpoint, and the choice
//! between endpoints.
//!
//! Each endpoint has a circuit breaker fed by the failover loop
//! (`proxy::failover`), which alone knows how an attempt went:
//!
//! ```text
//! Closed ──CONSECUTIVE failures──▶ Open(ejection) ──time passes──▶ probe due
//!   ▲                                ▲                               │ one request
//!   └────────── probe succeeds ──────┼──────── probe fails ◀─────────┘ (half-open)
//!                                    └ ejection doubles, up to MAX_EJECTION
//! ```
//! A `429` with `Retry-After` holds the endpoint back until then, circuit
//! aside. The ejection multiplier falls back to one once the endpoint has
//! stayed closed for [`MAX_EJECTION`].
//!
//! Load is the count of requests outstanding on the endpoint: from the
//! attempt's start until its response body ends (a stream stays counted for
//! its whole life, see [`Outstanding`]). [`choose`] picks among a group's
//! endpoints by the power of two random choices over that count, weighted:
//! two distinct candidates are drawn with probability proportional to their
//! weight and the one with the lower `(outstanding + 1) / weight` wins.
//!
//! Everything here is a few atomics and one short lock per attempt; nothing
//! runs per event.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::error::UpstreamClass;

/// Failures in a row that open a closed circuit.
pub(crate) const CONSECUTIVE: u32 = 3;
/// The first ejection; each ejection after a failed probe doubles it.
pub(crate) const BASE_EJECTION: Duration = Duration::from_secs(5);
/// The longest ejection.
pub(crate) const MAX_EJECTION: Duration = Duration::from_secs(60);

/// Why an attempt counts against its endpoint (metrics `class`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Connect or TLS failure, reset, invalid response: `UpstreamClass`.
    Upstream(UpstreamClass),
    /// `429`.
    RateLimited,
    /// `500`, `502`, `503`, `504`, `529`.
    Status,
    /// No response head within the first-byte timeout.
    FirstByte,
    /// An event stream's head, then no event within the first-event timeout.
    FirstEvent,
    /// Silence past the read timeout before the first event.
    Stall,
}

impl Failure {
    pub(crate) const ALL: [Failure; 12] = [
        Failure::Upstream(UpstreamClass::Connect),
        Failure::Upstream(UpstreamClass::Timeout),
        Failure::Upstream(UpstreamClass::Tls),
        Failure::Upstream(UpstreamClass::Reset),
        Failure::Upstream(UpstreamClass::Protocol),
        Failure::Upstream(UpstreamClass::Status),
        Failure::Upstream(UpstreamClass::Truncated),
        Failure::RateLimited,
        Failure::Status,
        Failure::FirstByte,
        Failure::FirstEvent,
        Failure::Stall,
    ];

    /// Label value in metrics, the access log and `failovers_total`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Failure::Upstream(UpstreamClass::Timeout) => "connect_timeout",
            Failure::Upstream(class) => class.as_str(),
            Failure::RateLimited => "rate_limited",
            Failure::Status => "status_5xx",
            Failure::FirstByte => "first_byte_timeout",
            Failure::FirstEvent => "first_event_timeout",
            Failure::Stall => "read_timeout",
        }
    }

    /// An endpoint that went silent or answered something that is not
    /// HTTP: never tried again within the same request.
    pub(crate) fn rules_out_endpoint(self) -> bool {
        matches!(
            self,
            Failure::FirstByte
                | Failure::FirstEvent
                | Failure::Stall
                | Failure::Upstream(UpstreamClass::Timeout | UpstreamClass::Protocol)
        )
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|f| *f == self).unwrap_or(0)
    }
}

/// Circuit state, as the metrics show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CircuitState {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

#[derive(Debug)]
enum State {
    Closed,
    Open {
        until: Instant,
    },
    /// The ejection is over; `probing` while the one probe is out.
    HalfOpen {
        probing: bool,
    },
}

#[derive(Debug)]
struct Circuit {
    state: State,
    /// Failures since the last success.
    failures: u32,
    /// Ejections in a row (the multiplier's exponent is this minus one).
    ejections: u32,
    /// When the circuit last closed (the multiplier decays after it).
    closed_at: Option<Instant>,
    /// `Retry-After` of a `429`: not picked before this.
    hold_until: Option<Instant>,
    /// Last failure, for the choice when every endpoint is out.
    last_failure: Option<Instant>,
}

/// One endpoint's circuit, load and counters.
pub(crate) struct Health {
    weight: u32,
    outstanding: Arc<AtomicU32>,
    circuit: Mutex<Circuit>,
    requests: AtomicU64,
    ejections: AtomicU64,
    failures: [AtomicU64; Failure::ALL.len()],
}

/// Whether an endpoint may take a request now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Closed, not held back.
    Open,
    /// Ejection over: one probe may go.
    Probe,
    /// Ejected, held back by `Retry-After`, or its probe is out.
    Refused,
}

impl Health {
    pub(crate) fn new(weight: u32) -> Self {
        Self {
            weight: weight.max(1),
            outstanding: Arc::default(),
            circuit: Mutex::new(Circuit {
                state: State::Closed,
                failures: 0,
                ejections: 0,
                closed_at: None,
                hold_until: None,
                last_failure: None,
            }),
            requests: AtomicU64::new(0),
            ejections: AtomicU64::new(0),
            failures: Default::default(),
        }
    }

    fn circuit(&self) -> MutexGuard<'_, Circuit> {
        // A panic while holding this lock leaves plain data behind.
        self.circuit.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn admission(&self, now: Instant) -> Admission {
        let c = self.circuit();
        if c.hold_until.is_some_and(|t| now < t) {
            return Admission::Refused;
        }
        match c.state {
            State::Closed => Admission::Open,
            State::Open { until } if now >= until => Admission::Probe,
            State::HalfOpen { probing: false } => Admission::Probe,
            State::Open { .. } | State::HalfOpen { probing: true } => Admission::Refused,
        }
    }

    /// Starts an attempt: counts it outstanding and, when the ejection is
    /// over, claims the one probe. `None` if the endpoint refuses (another
    /// request took the probe first: choose again), unless `force` (every
    /// endpoint is out and this one failed least recently).
    pub(crate) fn begin(self: &Arc<Self>, now: Instant, force: bool) -> Option<Ticket> {
        let probe = {
            let mut c = self.circuit();
            let held = c.hold_until.is_some_and(|t| now < t);
            match c.state {
                State::Closed if !held || force => false,
                State::Open { until } if now >= until && (!held || force) => {
                    c.state = State::HalfOpen { probing: true };
                    true
                }
                State::HalfOpen { probing: false } if !held || force => {
                    c.state = State::HalfOpen { probing: true };
                    true
                }
                _ if force => false,
                _ => return None,
            }
        };
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        Some(Ticket {
            health: self.clone(),
            probe,
            load: Some(Outstanding(self.outstanding.clone())),
        })
    }

    /// The attempt worked (or failed in a way that says nothing against
    /// the endpoint, like a `400`): the circuit closes.
    fn success(&self, now: Instant) {
        let mut c = self.circuit();
        c.failures = 0;
        if !matches!(c.state, State::Closed) {
            c.state = State::Closed;
            c.closed_at = Some(now);
        }
    }

    /// The attempt failed with a failover class. `hold` is a `429`'s
    /// `Retry-After`.
    fn failure(&self, failure: Failure, hold: Option<Duration>, now: Instant) {
        self.failures[failure.index()].fetch_add(1, Ordering::Relaxed);
        let mut c = self.circuit();
        c.failures += 1;
        c.last_failure = Some(now);
        if let Some(wait) = hold {
            c.hold_until = Some(now + wait);
        }
        let eject = match c.state {
            State::Closed => c.failures >= CONSECUTIVE,
            State::HalfOpen { .. } => true,
            State::Open { .. } => false,
        };
        if !eject {
            return;
        }
        if matches!(c.state, State::Closed)
            && c.closed_at
                .is_some_and(|t| now.duration_since(t) >= MAX_EJECTION)
        {
            c.ejections = 0;
        }
        c.ejections = c.ejections.saturating_add(1);
        let time = ejection_time(c.ejections);
        c.state = State::Open { until: now + time };
        self.ejections.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            "circuit opened for {time:?} after {} failure(s)",
            c.failures
        );
    }

    /// A probe ended without a verdict (its request was cancelled): the
    /// next request may probe.
    fn release_probe(&self) {
        let mut c = self.circuit();
        if let State::HalfOpen { probing: true } = c.state {
            c.state = State::HalfOpen { probing: false };
        }
    }

    /// When the endpoint last failed (`None`: never).
    pub(crate) fn last_failure(&self) -> Option<Instant> {
        self.circuit().last_failure
    }

    pub(crate) fn state(&self, now: Instant) -> CircuitState {
        match self.circuit().state {
            State::Closed => CircuitState::Closed,
            State::Open { until } if now < until => CircuitState::Open,
            State::Open { .. } | State::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }

    pub(crate) fn outstanding(&self) -> u32 {
        self.outstanding.load(Ordering::Relaxed)
    }

    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub(crate) fn ejections(&self) -> u64 {
        self.ejections.load(Ordering::Relaxed)
    }

    pub(crate) fn failures(&self, failure: Failure) -> u64 {
        self.failures[failure.index()].load(Ordering::Relaxed)
    }

    /// Load per unit of weight, compared across endpoints without division:
    /// `(outstanding + 1) / weight` as a pair for cross-multiplication.
    fn load(&self) -> (u64, u64) {
        (u64::from(self.outstanding()) + 1, u64::from(self.weight))
    }
}

/// `BASE_EJECTION * 2^(n-1)`, at most `MAX_EJECTION`.
fn ejection_time(n: u32) -> Duration {
    BASE_EJECTION
        .saturating_mul(1 << n.saturating_sub(1).min(16))
        .min(MAX_EJECTION)
}

/// One attempt on an endpoint, until its verdict.
pub(crate) struct Ticket {
    health: Arc<Health>,
    /// This attempt is the half-open probe.
    probe: bool,
    load: Option<Outstanding>,
}

impl Ticket {
    /// The endpoint answered: its circuit closes. The returned guard keeps
    /// the request counted until the response body ends.
    pub(crate) fn success(mut self, now: Instant) -> Outstanding {
        self.health.success(now);
        self.probe = false;
        self.take_load()
    }

    /// The attempt failed with a failover class; `hold` is a `429`'s
    /// `Retry-After`.
    pub(crate) fn failure(mut self, failure: Failure, hold: Option<Duration>, now: Instant) {
        self.health.failure(failure, hold, now);
        self.probe = false;
    }

    fn take_load(&mut self) -> Outstanding {
        match self.load.take() {
            Some(load) => load,
            // Unreachable: the load is taken once, by the consuming verdict.
            None => {
                self.health.outstanding.fetch_add(1, Ordering::Relaxed);
                Outstanding(self.health.outstanding.clone())
            }
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.probe {
            self.health.release_probe();
        }
    }
}

/// A request outstanding on an endpoint until this drops.
#[derive(Debug)]
pub(crate) struct Outstanding(Arc<AtomicU32>);

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Picks among `endpoints` (each with its [`Health`]) those `allowed`
/// lets through and whose circuit admits a request now: power of two
/// weighted random choices on load. `None` when none is admitted.
pub(crate) fn choose<E>(
    endpoints: &[E],
    health: impl Fn(&E) -> &Health,
    allowed: impl Fn(usize) -> bool,
    now: Instant,
) -> Option<usize> {
    // Groups are small (a handful of endpoints): a stack array of
    // candidates, no allocation.
    let mut candidates = [0usize; 16];
    let mut weights = [0u64; 16];
    let mut n = 0;
    let mut total = 0u64;
    for (i, e) in endpoints.iter().enumerate() {
        if n == candidates.len() {
            break;
        }
        let h = health(e);
        if allowed(i) && h.admission(now) != Admission::Refused {
            candidates[n] = i;
            weights[n] = u64::from(h.weight);
            total += weights[n];
            n += 1;
        }
    }
    match n {
        0 => None,
        1 => Some(candidates[0]),
        _ => {
            let a = weighted(&weights[..n], total, random());
            // The second draw among the others.
            let rest = total - weights[a];
            let b = weighted_except(&weights[..n], rest, a, random());
            let load = |k: usize| health(&endpoints[candidates[k]]).load();
            let (la, lb) = (load(a), load(b));
            // la.0 / la.1 <= lb.0 / lb.1, ties to the first draw.
            let pick = if la.0 * lb.1 <= lb.0 * la.1 { a } else { b };
            Some(candidates[pick])
        }
    }
}

/// Index drawn with probability proportional to its weight.
fn weighted(weights: &[u64], total: u64, r: u64) -> usize {
    let mut x = r % total.max(1);
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.len() - 1
}

/// [`weighted`] over every index but `skip`, whose weights sum to `total`.
fn weighted_except(weights: &[u64], total: u64, skip: usize, r: u64) -> usize {
    let mut x = r % total.max(1);
    for (i, w) in weights.iter().enumerate() {
        if i == skip {
            continue;
        }
        if x < *w {
            return i;
        }
        x -= w;
    }
    skip
}

/// The index of the endpoint `allowed` lets through that failed least
/// recently (never failed first): where a request goes when every
/// endpoint is out.
pub(crate) fn least_recently_failed<E>(
    endpoints: &[E],
    health: impl Fn(&E) -> &Health,
    allowed: impl Fn(usize) -> bool,
) -> Option<usize> {
    endpoints
        .iter()
        .enumerate()
        .filter(|(i, _)| allowed(*i))
        .min_by_key(|(_, e)| health(e).last_failure())
        .map(|(i, _)| i)
}

/// A per-thread xorshift64* generator, seeded from std's per-process
/// random hasher keys. Spreads choices; nothing relies on it being
/// unpredictable.
fn random() -> u64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(seed());
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x5eed);
    h.finish() | 1
}

#[cfg(test)]
mod tests;
