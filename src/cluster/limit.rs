//! Cluster-wide rate limits: GCRA in Redis, one script per round trip,
//! and a replica-local cache that spares most round trips ([`SharedLimit`]).
//!
//! The same bucket as `auth::limit` (rate `count` per period, `burst`
//! requests at once), kept as one number per bucket, its *theoretical
//! arrival time* `tat`, in one Redis string per bucket. With `T = period /
//! count` and `tau = (burst - 1) * T`, all in microseconds:
//!
//! - a request at `now` is allowed iff `max(tat, now) - now <= tau`, and
//!   then `tat = max(tat, now) + T`;
//! - otherwise it waits `max(tat, now) - now - tau`.
//!
//! `now` is Redis' own clock (`TIME`), so the replicas' clocks never
//! matter, and the script runs atomically, so concurrent requests on any
//! replicas take tokens one at a time. A replica may take several at once
//! (`cluster.rate_limit_lease` worth at the limit's rate, at most the
//! burst) and spend them locally for that long; tokens it does not spend in
//! time are lost, never given twice. So a limit of N admits at most N
//! across replicas, and exactly N when each replica's traffic spends its
//! leases; a slow limit (less than one token per lease) takes one token per
//! round trip. A refusal is remembered until the wait Redis gave ends:
//! other replicas only take tokens, so none can appear sooner. A key
//! expires (`PX`) when its bucket would be full again, so Redis holds only
//! buckets in use. Keys:
//! `<key_prefix>rl:<route>:k:<digest hex>` or `...:ip:<address>`.
//!
//! The script goes by `EVALSHA`; on `NOSCRIPT` (a restarted or flushed
//! Redis) the client loads it and retries once (redis-rs' `Script`).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use redis::Script;

use super::{Cluster, Unavailable};

/// `KEYS[1]`: the bucket; `ARGV[1]`: `T` in µs; `ARGV[2]`: `tau` in µs;
/// `ARGV[3]`: the most tokens to take. Returns `{taken, wait}`: at least
/// one token taken (as many as the bucket holds, up to `ARGV[3]`), or none
/// and the wait in µs (at least 1) until one is there. Times stay below
/// 2^53 µs, exact in Lua's doubles.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local ahead = tat - now
if ahead > tolerance then
  return {0, ahead - tolerance}
end
local room = math.floor((tolerance - ahead) / interval) + 1
local taken = math.min(want, room)
tat = tat + taken * interval
redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
return {taken, 0}
";

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(GCRA));

/// One bucket's GCRA parameters, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gcra {
    pub(crate) interval_us: u64,
    pub(crate) tolerance_us: u64,
}

impl Gcra {
    /// The tokens a replica takes at once so that they last about `lease`
    /// at this rate: at least 1, at most the burst.
    pub(crate) fn batch(self, lease: Duration) -> u32 {
        let burst = self.tolerance_us / self.interval_us.max(1) + 1;
        let span = u64::try_from(lease.as_micros()).unwrap_or(u64::MAX) / self.interval_us.max(1);
        u32::try_from(span.clamp(1, burst)).unwrap_or(u32::MAX)
    }
}

/// One route's rate limit in Redis, with what this replica holds of it:
/// tokens taken in advance ([`Gcra::batch`] at a time, spent here without
/// a round trip until `lease` passes) and refusals (Redis said when the
/// next token comes; until then nothing can be there, since other replicas
/// only take tokens).
pub(crate) struct SharedLimit {
    cluster: Arc<Cluster>,
    rate: Gcra,
    batch: u32,
    lease: Duration,
    held: Mutex<HashMap<String, Held>>,
}

enum Held {
    Tokens { left: u32, until: Instant },
    Refused { until: Instant },
}

impl Held {
    fn until(&self) -> Instant {
        match self {
            Held::Tokens { until, .. } | Held::Refused { until } => *until,
        }
    }
}

/// Buckets held at most; past it, expired ones go, then all.
const MAX_HELD: usize = 65_536;

impl SharedLimit {
    pub(crate) fn new(cluster: Arc<Cluster>, rate: Gcra) -> Self {
        let lease = cluster.rate_limit_lease;
        Self {
            cluster,
            rate,
            batch: rate.batch(lease),
            lease,
            held: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Takes a token from the shared bucket `bucket` (the part of the key
    /// after the prefix): `Ok(Ok(()))` admitted, `Ok(Err(wait))` refused.
    pub(crate) async fn admit(&self, bucket: &str) -> Result<Result<(), Duration>, Unavailable> {
        let now = Instant::now();
        if let Some(held) = lock(&self.held).get_mut(bucket) {
            match held {
                Held::Tokens { left, until } if *until > now && *left > 0 => {
                    *left -= 1;
                    return Ok(Ok(()));
                }
                Held::Refused { until } if *until > now => return Ok(Err(*until - now)),
                _ => {}
            }
        }
        let (taken, wait) = self.cluster.take(bucket, self.rate, self.batch).await?;
        let now = Instant::now();
        let mut held = lock(&self.held);
        if held.len() >= MAX_HELD {
            held.retain(|_, h| h.until() > now);
            if held.len() >= MAX_HELD {
                held.clear();
            }
        }
        if taken == 0 {
            let wait = Duration::from_micros(wait.max(1));
            held.insert(bucket.to_owned(), Held::Refused { until: now + wait });
            return Ok(Err(wait));
        }
        if taken > 1 {
            let left = u32::try_from(taken - 1).unwrap_or(u32::MAX);
            let until = now + self.lease;
            held.insert(bucket.to_owned(), Held::Tokens { left, until });
        } else {
            held.remove(bucket);
        }
        Ok(Ok(()))
    }
}

impl Cluster {
    /// One script run: up to `want` tokens from `bucket`; `(taken, wait µs)`.
    async fn take(&self, bucket: &str, rate: Gcra, want: u32) -> Result<(u64, u64), Unavailable> {
        let key = format!("{}rl:{bucket}", self.key_prefix());
        self.run(|mut conn| async move {
            SCRIPT
                .key(&key)
                .arg(rate.interval_us)
                .arg(rate.tolerance_us)
                .arg(want)
                .invoke_async(&mut conn)
                .await
        })
        .await
    }
}

/// See `resume::hub::lock`.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_lasts_the_lease_at_the_rate_within_one_and_the_burst() {
        let per_10ms = Gcra {
            interval_us: 10_000,
            tolerance_us: 10_000 * 29,
        };
        assert_eq!(per_10ms.batch(Duration::from_millis(100)), 10);
        assert_eq!(
            per_10ms.batch(Duration::from_secs(10)),
            30,
            "capped at the burst"
        );
        assert_eq!(per_10ms.batch(Duration::ZERO), 1);
        let per_second = Gcra {
            interval_us: 1_000_000,
            tolerance_us: 0,
        };
        assert_eq!(per_second.batch(Duration::from_millis(100)), 1);
    }
}
