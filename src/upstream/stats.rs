//! The pool's own figures in Prometheus text: per origin, open and idle
//! connections, HTTP/2 streams, connects, reuses and retries. The admin
//! listener asks the pool for them; telemetry never reaches into the pool.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use super::Pool;
use crate::telemetry::{metric_header as header, metric_label as label};

impl Pool {
    /// Appends the per-origin gauges and counters in Prometheus text.
    pub fn render_metrics(&self, out: &mut String) {
        let origins = self.origins();
        let rows: [(&str, &str, &str); 6] = [
            (
                "sse_edge_upstream_connections",
                "gauge",
                "Open upstream connections.",
            ),
            (
                "sse_edge_upstream_idle_connections",
                "gauge",
                "Idle pooled HTTP/1.1 upstream connections.",
            ),
            (
                "sse_edge_upstream_h2_streams",
                "gauge",
                "HTTP/2 streams in flight to the upstream.",
            ),
            (
                "sse_edge_upstream_connects_total",
                "counter",
                "Upstream connections opened.",
            ),
            (
                "sse_edge_upstream_reuses_total",
                "counter",
                "Requests sent on a reused upstream connection.",
            ),
            (
                "sse_edge_upstream_retries_total",
                "counter",
                "Requests sent again on a new connection after a reused one failed before any answer.",
            ),
        ];
        for (i, (name, kind, help)) in rows.iter().enumerate() {
            header(out, name, kind, help);
            for o in &origins {
                let s = o.stats();
                let v = match i {
                    0 => s.open.load(Ordering::Relaxed) as u64,
                    1 => s.idle.load(Ordering::Relaxed) as u64,
                    2 => s.h2_streams.load(Ordering::Relaxed) as u64,
                    3 => s.connects.load(Ordering::Relaxed),
                    4 => s.reuses.load(Ordering::Relaxed),
                    _ => s.retries.load(Ordering::Relaxed),
                };
                let k = o.key();
                let scheme = if k.tls { "https" } else { "http" };
                let _ = writeln!(
                    out,
                    "{name}{{origin=\"{scheme}://{}:{}\"}} {v}",
                    label(&k.host),
                    k.port
                );
            }
        }
    }
}
