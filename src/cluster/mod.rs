//! Cluster mode: state the replicas share in Redis or Valkey (`[cluster]`).
//!
//! - the rate limits ([`limit`]): each decision is one atomic script in
//!   Redis, so a limit of N holds across every replica instead of N per
//!   replica;
//! - the replicas' message bus ([`bus`]), one pub/sub channel per replica,
//!   over which a reconnect that lands on another replica than its
//!   stream's reaches it (`crate::resume::remote`).
//!
//! Without `[cluster]` none of this exists: auth keeps its in-process
//! buckets and a reconnect must reach the replica holding its stream.
//!
//! # Contract
//!
//! - **One round trip per decision**, bounded by `command_timeout`
//!   (connecting by `connect_timeout`). Nothing waits longer: a slow or
//!   gone Redis is an error, never a hang.
//! - **Errors are the caller's to degrade.** [`Cluster::run`] returns
//!   [`Unavailable`]; the route decides between its local buckets
//!   (fail-open) and a 503 (fail-closed).
//! - **After an error Redis is left alone for [`BACKOFF`]**: decisions in
//!   that window fail at once without a round trip (no request pays a
//!   timeout while Redis is known to be down); the first decision after it
//!   probes again, and a success marks the cluster up.
//! - **Reconnects are the client's** (redis-rs' `ConnectionManager`, made
//!   lazily: the relay starts, degraded, while Redis is down).
//!
//! Metrics (`/metrics`): round trips, errors by kind, the round-trip
//! latency histogram, decisions taken without Redis, and whether Redis
//! answered last time (`sse_edge_cluster_up`; [`Health`] on `/readyz`).

pub(crate) mod bus;
pub(crate) mod limit;
mod stats;

use std::future::Future;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::time::Instant;

use crate::config::ClusterConfig;
use stats::Stats;

/// How long Redis is not asked again after an error.
pub(crate) const BACKOFF: Duration = Duration::from_secs(1);

/// Redis could not decide: connect or command failed or timed out, or
/// the cluster is in its [`BACKOFF`] after such a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unavailable;

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cluster store (Redis) unavailable")
    }
}

impl std::error::Error for Unavailable {}

/// The connection to the shared Redis, with its health and metrics.
pub(crate) struct Cluster {
    /// For the bus' subscription, which needs a connection of its own.
    client: redis::Client,
    conn: ConnectionManager,
    connect_timeout: Duration,
    /// `cluster.rate_limit_lease` (`limit`).
    rate_limit_lease: Duration,
    command_timeout: Duration,
    key_prefix: String,
    /// Time zero of `retry_at`.
    epoch: Instant,
    /// Nanoseconds after `epoch` before which Redis is not asked (0: ask).
    retry_at: AtomicU64,
    /// [`Health`] as a `u8`.
    health: AtomicU8,
    stats: Stats,
}

/// What the last round trip said about Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Health {
    /// No round trip yet.
    Unknown = 0,
    Up = 1,
    Down = 2,
}

impl Health {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Up => "up",
            Self::Down => "down",
        }
    }
}

impl Cluster {
    /// The cluster client; connects lazily, on the first decision.
    ///
    /// # Errors
    ///
    /// The URL cannot be turned into a client (config checked it already).
    pub(crate) fn new(cfg: &ClusterConfig) -> Result<Self, redis::RedisError> {
        let client = match &cfg.ca_file {
            // Config checked the file; it may have gone since.
            Some(path) => {
                let root_cert = std::fs::read(path).map_err(|e| {
                    redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "cannot read cluster.ca_file",
                        e.to_string(),
                    ))
                })?;
                let certs = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                };
                redis::Client::build_with_tls(cfg.url.0.as_str(), certs)?
            }
            None => redis::Client::open(cfg.url.0.as_str())?,
        };
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(cfg.connect_timeout))
            .set_response_timeout(Some(cfg.command_timeout))
            .set_number_of_retries(1)
            .set_max_delay(BACKOFF);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        tracing::info!(url = %cfg.url, "cluster mode: rate limits and resumption shared in Redis");
        Ok(Self {
            client,
            conn,
            connect_timeout: cfg.connect_timeout,
            rate_limit_lease: cfg.rate_limit_lease,
            command_timeout: cfg.command_timeout,
            key_prefix: cfg.key_prefix.clone(),
            epoch: Instant::now(),
            retry_at: AtomicU64::new(0),
            health: AtomicU8::new(Health::Unknown as u8),
            stats: Stats::new(),
        })
    }

    /// What the last round trip said about Redis.
    pub(crate) fn health(&self) -> Health {
        match self.health.load(Ordering::Relaxed) {
            1 => Health::Up,
            2 => Health::Down,
            _ => Health::Unknown,
        }
    }

    /// Records `now`; the state it replaces.
    fn set_health(&self, now: Health) -> Health {
        match self.health.swap(now as u8, Ordering::Relaxed) {
            1 => Health::Up,
            2 => Health::Down,
            _ => Health::Unknown,
        }
    }

    /// The prefix of every key.
    pub(crate) fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// Counts a decision taken without Redis (`refused`: fail-closed).
    pub(crate) fn count_fallback(&self, refused: bool) {
        self.stats.fallback(refused);
    }

    /// Appends the cluster's metric families.
    pub(crate) fn render_metrics(&self, out: &mut String) {
        self.stats.render(out, self.health() == Health::Up);
    }

    /// One round trip: `op` on a connection, within `command_timeout`.
    /// Fails at once while in [`BACKOFF`].
    pub(crate) async fn run<T, F, Fut>(&self, op: F) -> Result<T, Unavailable>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let start = Instant::now();
        let at = self.nanos(start);
        if at < self.retry_at.load(Ordering::Relaxed) {
            return Err(Unavailable);
        }
        let result = tokio::time::timeout(self.command_timeout, op(self.conn.clone())).await;
        let elapsed = start.elapsed();
        self.stats.round_trip(elapsed);
        let why = match result {
            Ok(Ok(v)) => {
                if self.set_health(Health::Up) != Health::Up {
                    tracing::info!("cluster: Redis answers");
                }
                self.retry_at.store(0, Ordering::Relaxed);
                return Ok(v);
            }
            Ok(Err(e)) if e.is_timeout() => stats::ErrorKind::Timeout.with(e.to_string()),
            Ok(Err(e)) => stats::ErrorKind::Error.with(e.to_string()),
            Err(_) => stats::ErrorKind::Timeout.with("command_timeout passed".to_owned()),
        };
        self.stats.error(why.0);
        let retry = self.nanos(Instant::now()).saturating_add(nanos(BACKOFF));
        self.retry_at.store(retry, Ordering::Relaxed);
        if self.set_health(Health::Down) != Health::Down {
            tracing::warn!(
                error = %why.1,
                "cluster: Redis unavailable; rate limits follow each route's rate_limit_on_cluster_error"
            );
        } else {
            tracing::debug!(error = %why.1, "cluster: Redis still unavailable");
        }
        Err(Unavailable)
    }

    fn nanos(&self, t: Instant) -> u64 {
        // At least 1, so that 0 in `retry_at` always means "ask".
        nanos(t.saturating_duration_since(self.epoch)).max(1)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
