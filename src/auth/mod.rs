//! Edge auth: client keys, the relay's upstream credential and per-client
//! rate limits. Each is a route setting and off by default.
//!
//! The contract, per request on a route (`proxy` calls [`Gate::check`] once
//! the route and dialect are known, before anything goes upstream):
//!
//! 1. **Client key** (`auth_keys_file`): the client sends its key as
//!    `Authorization: Bearer <key>` (OpenAI SDKs) or `x-api-key: <key>`
//!    (Anthropic SDKs). The relay hashes it (SHA-256) and looks the digest
//!    up in the file's set; the file holds digests only, so neither the
//!    file nor memory holds a usable key. No key or an unknown one is a 401
//!    in the dialect's error shape with `www-authenticate: Bearer`; the
//!    upstream is not contacted. The accepted key's label (or the first 8
//!    hex digits of its digest) goes into the access log's `key`; the key
//!    itself is never logged.
//! 2. **Rate limit** (`rate_limit`, `rate_limit_burst`): one token bucket
//!    per accepted key digest, or per client address when the route has no
//!    keys file; a request costs one token. An empty bucket is a 429 with
//!    `Retry-After` (whole seconds, rounded up). Refusals by (1) cost no
//!    token. See [`limit`] for the bucket math and its memory bound.
//!    In cluster mode (`[cluster]`) the bucket lives in Redis and is shared
//!    by every replica (`crate::cluster::limit`, the same GCRA); when Redis
//!    cannot decide, the route's `rate_limit_on_cluster_error` applies:
//!    `open` decides with this replica's own bucket (logged, counted in
//!    `sse_edge_cluster_fallbacks_total`), `closed` answers 503
//!    (`rate_limit_unavailable`, `Retry-After: 1`).
//! 3. **Upstream credential** (`upstream_key_env`): applied where the
//!    upstream headers are built; the client's `Authorization` and
//!    `x-api-key` are dropped and the relay's key is set. See [`upstream`].
//!
//! The keys file is re-read by a watcher task ([`Gate::watcher`]) that
//! ends with the relay's stop signal.

pub(crate) mod keys;
pub(crate) mod limit;
pub(crate) mod upstream;

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;

pub(crate) use keys::{KeySet, KeysFileError};
pub use keys::{digest, hex};

use crate::cluster::Cluster;
use crate::cluster::limit::{Gcra, SharedLimit};
use crate::config::{ClusterErrorPolicy, RateLimit, RouteAuth};
use crate::error::{Error, Kind};
use crate::shutdown::Shutdown;
use crate::telemetry::Exchange;
use keys::Keys;
use limit::{BucketKey, Limiter};
pub(crate) use upstream::Credential;

/// One route's auth state, built at start (reading the keys file).
pub(crate) struct Gate {
    route: Arc<str>,
    keys: Option<Arc<Keys>>,
    limiter: Option<Limiter>,
    /// Cluster mode, when the route has a rate limit.
    shared: Option<Shared>,
}

/// A route's rate limit in Redis.
struct Shared {
    limit: SharedLimit,
    on_error: ClusterErrorPolicy,
}

/// The GCRA parameters of `limit` in microseconds (see `cluster::limit`).
fn gcra(limit: &RateLimit) -> Gcra {
    let period = u64::try_from(limit.period.duration().as_micros()).unwrap_or(u64::MAX);
    let interval_us = (period / u64::from(limit.count.max(1))).max(1);
    Gcra {
        interval_us,
        tolerance_us: interval_us.saturating_mul(u64::from(limit.burst.max(1) - 1)),
    }
}

impl Gate {
    /// The route's gate; reads its keys file, if it has one.
    ///
    /// # Errors
    ///
    /// The keys file cannot be read or is not a keys file.
    /// With `cluster`, the rate limit is shared in Redis.
    pub(crate) fn new(
        cfg: &RouteAuth,
        route: Arc<str>,
        cluster: Option<&Arc<Cluster>>,
    ) -> Result<Self, KeysFileError> {
        let keys = match &cfg.keys {
            Some(file) => Some(Arc::new(Keys::load(file, route.clone())?)),
            None => None,
        };
        let shared = match (cluster, &cfg.rate_limit) {
            (Some(cluster), Some(limit)) => Some(Shared {
                limit: SharedLimit::new(cluster.clone(), gcra(limit)),
                on_error: cfg.on_cluster_error,
            }),
            _ => None,
        };
        Ok(Self {
            keys,
            limiter: cfg.rate_limit.as_ref().map(Limiter::new),
            shared,
            route,
        })
    }

    /// Admits the request or says why not (401, 429, or 503 when a
    /// fail-closed route's Redis cannot decide). Records the key's label
    /// and counts refusals on `x`.
    pub(crate) async fn check(
        &self,
        headers: &HeaderMap,
        peer: IpAddr,
        x: &mut Exchange,
    ) -> Result<(), Error> {
        let peer = peer.to_canonical();
        let bucket = match &self.keys {
            None => BucketKey::Ip(peer),
            Some(keys) => match keys.identify(headers) {
                Ok((digest, label)) => {
                    x.set_key(label);
                    BucketKey::Key(digest)
                }
                Err(why) => {
                    x.auth_failure();
                    tracing::info!(route = &*self.route, %peer, "refused: {why}");
                    return Err(Error::with_cause(Kind::Unauthorized, why));
                }
            },
        };
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        let limited = |wait, x: &mut Exchange| {
            x.rate_limited();
            tracing::debug!(route = &*self.route, %peer, ?wait, "rate limited");
            Error::rate_limited(wait)
        };
        if let Some(shared) = &self.shared {
            let name = match bucket {
                BucketKey::Key(d) => format!("{}:k:{}", self.route, hex(&d)),
                BucketKey::Ip(ip) => format!("{}:ip:{ip}", self.route),
            };
            match shared.limit.admit(&name).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(wait)) => return Err(limited(wait, x)),
                Err(e) if shared.on_error == ClusterErrorPolicy::Closed => {
                    shared.limit.cluster().count_fallback(true);
                    tracing::info!(route = &*self.route, %peer, "refused (fail-closed): {e}");
                    return Err(Error::with_cause(Kind::ClusterUnavailable, e));
                }
                Err(e) => {
                    shared.limit.cluster().count_fallback(false);
                    tracing::debug!(route = &*self.route, %peer, "local rate limit (fail-open): {e}");
                }
            }
        }
        limiter
            .check(bucket, tokio::time::Instant::now())
            .map_err(|wait| limited(wait, x))
    }

    /// The keys-file reload task, when the route has a keys file; it ends
    /// when `stop` fires.
    pub(crate) fn watcher(
        &self,
        stop: Shutdown,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        self.keys.clone().map(|k| k.watch(stop))
    }
}
