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
pub const SHARDS: usize = 16;
/// A shard is swept once it holds this many buckets or twice as many as
/// after its last sweep.
const SWEEP_MIN: usize = 1024;
/// Buckets a shard may hold after a sweep before it is cleared.
pub const MAX_PER_SHARD: usize = 64 * 1024;

/// Whose bucket a request takes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BucketKey {
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
pub struct Limiter {
    rate: Rate,
    /// Time zero of the buckets' nanosecond clock.
    epoch: Instant,
    hasher: RandomState,
    shards: Box<[Mutex<Shard>]>,
}

impl Limiter {
    pub fn new(limit: &RateLimit) -> Self {
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
    pub fn check(&self, key: BucketKey, now: Instant) -> Result<(), Duration> {
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

    /// Buckets currently held (for tests and diagnostics).
    pub fn buckets(&self) -> usize {
        let len = |s: &Mutex<Shard>| s.lock().map_or(0, |g| g.tats.len());
        self.shards.iter().map(len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RatePeriod;

    const MS: u64 = 1_000_000;

    fn limit(count: u32, period: RatePeriod, burst: u32) -> RateLimit {
        RateLimit {
            count,
            period,
            burst,
        }
    }

    #[test]
    fn burst_then_one_token_per_interval() {
        let r = Rate::new(&limit(5, RatePeriod::Second, 5));
        assert_eq!((r.interval, r.tolerance), (200 * MS, 800 * MS));
        let mut tat = 0;
        for _ in 0..5 {
            tat = r.admit(tat, 0).unwrap();
        }
        assert_eq!(r.admit(tat, 0), Err(200 * MS));
        assert_eq!(r.admit(tat, 150 * MS), Err(50 * MS));
        tat = r.admit(tat, 200 * MS).unwrap();
        assert_eq!(r.admit(tat, 200 * MS), Err(200 * MS));
        // A whole period later the bucket is full again: five more pass.
        let mut t = 0;
        for _ in 0..5 {
            t = r.admit(t.max(tat), 1400 * MS).unwrap();
        }
        assert!(r.admit(t, 1400 * MS).is_err());
    }

    #[test]
    fn burst_and_period_are_independent() {
        let r = Rate::new(&limit(60, RatePeriod::Minute, 2));
        assert_eq!((r.interval, r.tolerance), (1000 * MS, 1000 * MS));
        let tat = r.admit(0, 0).and_then(|t| r.admit(t, 0)).unwrap();
        assert_eq!(r.admit(tat, 0), Err(1000 * MS));
        let r = Rate::new(&limit(1, RatePeriod::Hour, 1));
        let tat = r.admit(0, 0).unwrap();
        assert_eq!(r.admit(tat, 0), Err(3_600_000 * MS));
    }

    #[tokio::test(start_paused = true)]
    async fn limiter_keys_are_separate_and_refill() {
        let l = Limiter::new(&limit(2, RatePeriod::Second, 2));
        let (a, b) = (BucketKey::Key([1; 32]), BucketKey::Ip([10, 0, 0, 1].into()));
        let now = Instant::now();
        assert!(l.check(a, now).is_ok() && l.check(a, now).is_ok());
        assert_eq!(l.check(a, now), Err(Duration::from_millis(500)));
        assert!(l.check(b, now).is_ok());
        assert!(l.check(a, now + Duration::from_millis(500)).is_ok());
        assert!(l.check(a, now + Duration::from_millis(500)).is_err());
    }

    fn shard_with(active: u64, full: u64, now: u64) -> Shard {
        let ip = |i: u64| BucketKey::Ip(IpAddr::from(u32::try_from(i).unwrap().to_be_bytes()));
        let tats = (0..active)
            .map(|i| (ip(i), now + 1))
            .chain((active..active + full).map(|i| (ip(i), now)))
            .collect();
        Shard {
            tats,
            sweep_at: SWEEP_MIN,
        }
    }

    #[test]
    fn sweeps_drop_full_buckets_only_when_grown() {
        let mut s = shard_with(10, 10, 5);
        s.sweep_if_grown(5);
        assert_eq!(s.tats.len(), 20, "below SWEEP_MIN: no sweep");
        let mut s = shard_with(100, SWEEP_MIN as u64, 5);
        s.sweep_if_grown(5);
        assert_eq!(s.tats.len(), 100);
        assert_eq!(s.sweep_at, SWEEP_MIN);
        let mut s = shard_with(SWEEP_MIN as u64, 0, 5);
        s.sweep_if_grown(5);
        assert_eq!((s.tats.len(), s.sweep_at), (SWEEP_MIN, 2 * SWEEP_MIN));
        let mut s = shard_with(MAX_PER_SHARD as u64, 0, 5);
        s.sweep_if_grown(5);
        assert!(s.tats.is_empty(), "a shard full of active buckets is reset");
    }

    #[tokio::test(start_paused = true)]
    async fn idle_buckets_do_not_accumulate() {
        let l = Limiter::new(&limit(10, RatePeriod::Second, 10));
        let start = Instant::now();
        let ip = |i: u32| BucketKey::Ip(IpAddr::from(i.to_be_bytes()));
        // 100k distinct clients, 1000 per refill interval: at most ~1000
        // buckets are ever active, so sweeps keep the maps small.
        for i in 0..100_000u32 {
            let now = start + Duration::from_micros(100 * u64::from(i));
            assert!(l.check(ip(i), now).is_ok());
        }
        assert!(
            l.buckets() <= SHARDS * 2 * SWEEP_MIN,
            "{} buckets",
            l.buckets()
        );
    }
}
