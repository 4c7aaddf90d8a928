//! The cluster's metric families (names follow `telemetry::metrics`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::telemetry::{Histogram, metric_header};

/// Round-trip latency buckets, seconds: Redis answers in well under a
/// millisecond on the same network; the top buckets are timeouts.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

#[derive(Debug, Clone, Copy)]
pub(super) enum ErrorKind {
    /// No answer within `command_timeout` (or `connect_timeout`).
    Timeout,
    /// Connection refused or lost, or an error reply.
    Error,
}

impl ErrorKind {
    pub(super) fn with(self, why: String) -> (Self, String) {
        (self, why)
    }
}

pub(super) struct Stats {
    round_trips: AtomicU64,
    timeouts: AtomicU64,
    errors: AtomicU64,
    fallback_local: AtomicU64,
    fallback_refused: AtomicU64,
    latency: Histogram,
}

impl Stats {
    pub(super) fn new() -> Self {
        Self {
            round_trips: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            fallback_local: AtomicU64::new(0),
            fallback_refused: AtomicU64::new(0),
            latency: Histogram::new(LATENCY_BUCKETS),
        }
    }

    pub(super) fn round_trip(&self, d: Duration) {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        self.latency.observe(d);
    }

    pub(super) fn error(&self, kind: ErrorKind) {
        let c = match kind {
            ErrorKind::Timeout => &self.timeouts,
            ErrorKind::Error => &self.errors,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn fallback(&self, refused: bool) {
        let c = if refused {
            &self.fallback_refused
        } else {
            &self.fallback_local
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn render(&self, out: &mut String, up: bool) {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let name = "sse_edge_cluster_up";
        metric_header(
            out,
            name,
            "gauge",
            "1 when the last Redis round trip succeeded",
        );
        let _ = writeln!(out, "{name} {}", u8::from(up));
        let name = "sse_edge_cluster_round_trips_total";
        metric_header(out, name, "counter", "Redis round trips attempted");
        let _ = writeln!(out, "{name} {}", load(&self.round_trips));
        let name = "sse_edge_cluster_errors_total";
        metric_header(
            out,
            name,
            "counter",
            "Redis round trips that failed, by kind",
        );
        let _ = writeln!(out, "{name}{{kind=\"timeout\"}} {}", load(&self.timeouts));
        let _ = writeln!(out, "{name}{{kind=\"error\"}} {}", load(&self.errors));
        let name = "sse_edge_cluster_latency_seconds";
        metric_header(out, name, "histogram", "Redis round-trip time");
        self.latency.render(out, name, "");
        let name = "sse_edge_cluster_fallbacks_total";
        let help = "Rate-limit decisions taken without Redis: local buckets (fail-open) or 503 (fail-closed)";
        metric_header(out, name, "counter", help);
        let _ = writeln!(
            out,
            "{name}{{decision=\"local\"}} {}",
            load(&self.fallback_local)
        );
        let _ = writeln!(
            out,
            "{name}{{decision=\"refused\"}} {}",
            load(&self.fallback_refused)
        );
    }
}
