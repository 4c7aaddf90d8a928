//! Cluster-wide rate limits: GCRA in Redis, one script per decision.
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
//! replicas take tokens one at a time: a limit of N admits N, with no
//! slack. A key expires (`PX`) when its bucket would be full again, so
//! Redis holds only buckets in use. Keys:
//! `<key_prefix>rl:<route>:k:<digest hex>` or `...:ip:<address>`.
//!
//! The script goes by `EVALSHA`; on `NOSCRIPT` (a restarted or flushed
//! Redis) the client loads it and retries once (redis-rs' `Script`).

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::{Cluster, Unavailable};

/// `KEYS[1]`: the bucket; `ARGV[1]`: `T` in µs; `ARGV[2]`: `tau` in µs.
/// Returns 0 (admitted) or the wait in µs (at least 1). Times stay below
/// 2^53 µs, exact in Lua's doubles.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local ahead = tat - now
if ahead > tolerance then
  return ahead - tolerance
end
tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
return 0
";

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(GCRA));

/// One bucket's GCRA parameters, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gcra {
    pub(crate) interval_us: u64,
    pub(crate) tolerance_us: u64,
}

impl Cluster {
    /// Takes a token from the shared bucket `bucket` (the part of the key
    /// after the prefix): `Ok(Ok(()))` admitted, `Ok(Err(wait))` refused.
    pub(crate) async fn admit(
        &self,
        bucket: &str,
        rate: Gcra,
    ) -> Result<Result<(), Duration>, Unavailable> {
        let key = format!("{}rl:{bucket}", self.key_prefix());
        let wait: u64 = self
            .run(|mut conn| async move {
                SCRIPT
                    .key(&key)
                    .arg(rate.interval_us)
                    .arg(rate.tolerance_us)
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        Ok(match wait {
            0 => Ok(()),
            us => Err(Duration::from_micros(us)),
        })
    }
}
