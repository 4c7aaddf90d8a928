//! Per-client token buckets (`rate_limit`, `rate_limit_burst`).
//!
//! Each bucket holds `burst` tokens, refills at `count` per period, and a
//! request takes one. It is kept as GCRA (the generic cell rate algorithm),
//! which is the same bucket written as one number: the *theoretical arrival
//! time* `tat`, the instant at which the bucket would be full again. With
//! `T = period / count` (time per token) and `tau = (burst - 1) * T`:
//!
//! - a request at `now` is allowed iff `max(tat, now) - now <= tau`, and
//!   then `tat = max(tat, now) + T`;
//! - otherwise it must wait `max(tat, now) - now - tau` (at least one
//!   token's worth), which becomes `Retry-After`, rounded up to seconds.
//!
//! Memory stays bounded: a bucket with `tat <= now` is full, the same as no
//! bucket, so it can be dropped at any time. Each shard sweeps full buckets
//! when it has grown to twice its size after the last sweep (amortised
//! O(1) per request); should a shard still hold [`MAX_PER_SHARD`] buckets
//! after a sweep (a flood of distinct addresses all active within one
//! refill time), it is cleared: those clients get full buckets again, the
//! relay does not grow without end.
//!
//! Contention: buckets are spread over [`SHARDS`] `Mutex<HashMap>`s by key
//! hash and a lock is held for one map operation (~50 ns), so lock waits
//! stay far below the cost of the request itself.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use std::collections::hash_map::RandomState;
use tokio::time::Instant;

use super::keys::Digest;
use crate::config::RateLimit;

/// Number of independently locked bucket maps.
pub(crate) const SHARDS: usize = 16;
/// A shard is swept once it holds this many buckets or twice as many as
/// after its last sweep.
const SWEEP_MIN: usize = 1024;
/// Buckets a shard may hold after a sweep before it is cleared.
pub(crate) const MAX_PER_SHARD: usize = 64 * 1024;

/// Whose bucket a request takes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum BucketKey {
    /// The digest of the client key the route accepted.
    Key(Digest),
    /// The client's address, when the route has no keys file.
    Ip(IpAddr),
}

/// GCRA parameters in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rate {
    /// Time per token (`T`).
    interval: u64,
    /// How far `tat` may run ahead of now (`tau`).
    tolerance: u64,
}

impl Rate {
    fn new(limit: &RateLimit) -> Self {
        let period = u64::try_from(limit.period.duration().as_nanos()).unwrap_or(u64::MAX);
        let interval = (period / u64::from(limit.count.max(1))).max(1);
        let tolerance = interval.saturating_mul(u64::from(limit.burst.max(1) - 1));
        Self {
            interval,
            tolerance,
        }
    }

    /// One request at `now` against a bucket at `tat`: the new `tat`, or
    /// how long to wait.
    fn admit(self, tat: u64, now: u64) -> Result<u64, u64> {
        let tat = tat.max(now);
        let ahead = tat - now;
        if ahead > self.tolerance {
            Err(ahead - self.tolerance)
        } else {
            Ok(tat.saturating_add(self.interval))
        }
    }
}

struct Shard {
    tats: HashMap<BucketKey, u64>,
    sweep_at: usize,
}

impl Shard {
    /// Drops full buckets when the shard has grown enough.
    fn sweep_if_grown(&mut self, now: u64) {
        if self.tats.len() < self.sweep_at {
            return;
        }
        self.tats.retain(|_, tat| *tat > now);
        if self.tats.len() >= MAX_PER_SHARD {
            tracing::warn!(
                buckets = self.tats.len(),
                "rate-limit shard full of active buckets: resetting it"
            );
            self.tats.clear();
        }
        self.sweep_at = (self.tats.len() * 2).max(SWEEP_MIN);
    }
}

/// The buckets of one route.
pub(crate) struct Limiter {
    rate: Rate,
    /// Time zero of the buckets' nanosecond clock.
    epoch: Instant,
    hasher: RandomState,
    shards: Box<[Mutex<Shard>]>,
}

impl Limiter {
    pub(crate) fn new(limit: &RateLimit) -> Self {
        let shard = || {
            Mutex::new(Shard {
                tats: HashMap::new(),
                sweep_at: SWEEP_MIN,
            })
        };
        Self {
            rate: Rate::new(limit),
            epoch: Instant::now(),
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| shard()).collect(),
        }
    }

    /// Takes a token from `key`'s bucket, or says how long until one is there.
    pub(crate) fn check(&self, key: BucketKey, now: Instant) -> Result<(), Duration> {
        let now =
            u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        let i = usize::try_from(self.hasher.hash_one(key) % SHARDS as u64).unwrap_or(0);
        let mut shard = self.shards[i].lock().unwrap_or_else(|p| p.into_inner());
        let tat = match shard.tats.get(&key) {
            Some(tat) => *tat,
            None => {
                shard.sweep_if_grown(now);
                now
            }
        };
        match self.rate.admit(tat, now) {
            Ok(tat) => {
                shard.tats.insert(key, tat);
                Ok(())
            }
            Err(wait) => Err(Duration::from_nanos(wait)),
        }
    }

    #[cfg(test)]
    /// Buckets currently held (for tests and diagnostics).
    pub(crate) fn buckets(&self) -> usize {
        let len = |s: &Mutex<Shard>| s.lock().map_or(0, |g| g.tats.len());
        self.shards.iter().map(len).sum()
    }
}

#[cfg(test)]
mod tests;
