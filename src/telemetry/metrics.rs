//! Prometheus counters and gauges, kept as plain atomics.
//!
//! Labels are bounded by construction: routes come from the configuration
//! (plus `-` for requests that matched none), status codes are 100..=599,
//! error classes are a fixed enum, origins are the configured upstreams.
//! Nothing on the request path allocates or locks to count.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use super::histogram::{Histogram, STREAM_BUCKETS, TTFB_BUCKETS};
use super::tokens::Tokens;
use crate::error::UpstreamClass;
use crate::usage::Usage;

const STATUS_SLOTS: usize = 500; // 100..=599

struct RouteCounters {
    name: String,
    status: Box<[AtomicU64]>,
    upstream_errors: [AtomicU64; UpstreamClass::ALL.len()],
    heartbeats: AtomicU64,
    auth_failures: AtomicU64,
    rate_limited: AtomicU64,
    ttfb: Histogram,
    stream_duration: Histogram,
}

impl RouteCounters {
    fn new(name: String) -> Self {
        Self {
            name,
            status: (0..STATUS_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            upstream_errors: Default::default(),
            heartbeats: AtomicU64::new(0),
            auth_failures: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            ttfb: Histogram::new(TTFB_BUCKETS),
            stream_duration: Histogram::new(STREAM_BUCKETS),
        }
    }
}

/// Stream resumption (`crate::resume`).
#[derive(Default)]
pub(crate) struct ResumeCounters {
    /// Reconnects by result, in [`ResumeResult::ALL`] order.
    reconnects: [AtomicU64; ResumeResult::ALL.len()],
    pub replayed_bytes: AtomicU64,
    /// Streams whose window ended without a reconnect (upstream cancelled).
    pub expired: AtomicU64,
    /// Streams relayed without resumption because `resume_memory` was used up.
    pub unavailable: AtomicU64,
    /// Resumable streams held now.
    pub streams: AtomicI64,
    /// Bytes all resume buffers hold now.
    pub buffered_bytes: AtomicU64,
    /// Cluster mode: readers this replica served for other replicas.
    pub forwarded_streams: AtomicU64,
    /// Cluster mode: stream bytes published to other replicas' readers.
    pub forwarded_bytes: AtomicU64,
}

/// How a reconnect ended (`sse_edge_resume_reconnects_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResumeResult {
    Resumed,
    Unknown,
    Expired,
    Overflow,
    BadPosition,
    /// Cluster mode: the producing replica did not answer.
    Unreachable,
}

impl ResumeResult {
    const ALL: [ResumeResult; 6] = [
        ResumeResult::Resumed,
        ResumeResult::Unknown,
        ResumeResult::Expired,
        ResumeResult::Overflow,
        ResumeResult::BadPosition,
        ResumeResult::Unreachable,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ResumeResult::Resumed => "resumed",
            ResumeResult::Unknown => "unknown",
            ResumeResult::Expired => "expired",
            ResumeResult::Overflow => "overflow",
            ResumeResult::BadPosition => "bad_position",
            ResumeResult::Unreachable => "unreachable",
        }
    }
}

impl ResumeCounters {
    pub(crate) fn count(&self, result: ResumeResult) {
        let i = ResumeResult::ALL
            .iter()
            .position(|r| *r == result)
            .unwrap_or(0);
        self.reconnects[i].fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String) {
        let name = "sse_edge_resume_reconnects_total";
        header(
            out,
            name,
            "counter",
            "Reconnects to resumable streams, by result.",
        );
        for (r, n) in ResumeResult::ALL.iter().zip(&self.reconnects) {
            let _ = writeln!(out, "{name}{{result=\"{}\"}} {}", r.as_str(), load(n));
        }
        counter(
            out,
            "sse_edge_resume_replayed_bytes_total",
            "Bytes replayed from resume buffers to reconnected clients.",
            load(&self.replayed_bytes),
        );
        counter(
            out,
            "sse_edge_resume_expired_total",
            "Resumable streams whose window ended without a reconnect (upstream cancelled).",
            load(&self.expired),
        );
        counter(
            out,
            "sse_edge_resume_unavailable_total",
            "Streams relayed without resumption because resume_memory was used up.",
            load(&self.unavailable),
        );
        gauge(
            out,
            "sse_edge_resume_streams",
            "Resumable streams held (live or within their window).",
            load_i(&self.streams),
        );
        gauge(
            out,
            "sse_edge_resume_buffered_bytes",
            "Bytes held by all resume buffers.",
            i64::try_from(load(&self.buffered_bytes)).unwrap_or(i64::MAX),
        );
        counter(
            out,
            "sse_edge_resume_forwarded_streams_total",
            "Cluster mode: reconnects on other replicas this replica served its streams to.",
            load(&self.forwarded_streams),
        );
        counter(
            out,
            "sse_edge_resume_forwarded_bytes_total",
            "Cluster mode: stream bytes this replica published to other replicas' readers.",
            load(&self.forwarded_bytes),
        );
    }
}

/// All relay metrics.
pub(crate) struct Metrics {
    /// One per configured route, then one for unmatched requests.
    routes: Vec<RouteCounters>,
    tokens: Tokens,
    pub active_streams: AtomicI64,
    pub client_disconnects: AtomicU64,
    pub connections_open: AtomicI64,
    pub connections_total: AtomicU64,
    pub connections_refused: AtomicU64,
    /// Requests between arrival and the end of their answer.
    pub requests_in_flight: AtomicI64,
    pub tls_handshake_errors: AtomicU64,
    pub cert_reloads_ok: AtomicU64,
    pub cert_reloads_failed: AtomicU64,
    pub access_log_dropped: AtomicU64,
    pub resume: ResumeCounters,
}

impl Metrics {
    pub(crate) fn new(route_names: impl IntoIterator<Item = String>, max_models: usize) -> Self {
        let mut routes: Vec<_> = route_names.into_iter().map(RouteCounters::new).collect();
        routes.push(RouteCounters::new("-".to_owned()));
        Self {
            tokens: Tokens::new(routes.len(), max_models),
            routes,
            active_streams: AtomicI64::new(0),
            client_disconnects: AtomicU64::new(0),
            connections_open: AtomicI64::new(0),
            connections_total: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            requests_in_flight: AtomicI64::new(0),
            tls_handshake_errors: AtomicU64::new(0),
            cert_reloads_ok: AtomicU64::new(0),
            cert_reloads_failed: AtomicU64::new(0),
            access_log_dropped: AtomicU64::new(0),
            resume: ResumeCounters::default(),
        }
    }

    /// Counter slot for a route index, or the unmatched slot for `None`.
    fn route(&self, route: Option<usize>) -> &RouteCounters {
        let last = self.routes.len() - 1;
        &self.routes[route.map_or(last, |r| r.min(last))]
    }

    pub(crate) fn count_request(&self, route: Option<usize>, status: u16) {
        let slot = usize::from(status.clamp(100, 599)) - 100;
        self.route(route).status[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// Tokens one request used.
    pub(crate) fn count_tokens(&self, route: Option<usize>, model: Option<&str>, usage: &Usage) {
        let last = self.routes.len() - 1;
        self.tokens
            .add(route.map_or(last, |r| r.min(last)), model, usage);
    }

    /// Time until the response head was ready.
    pub(crate) fn observe_ttfb(&self, route: Option<usize>, d: Duration) {
        self.route(route).ttfb.observe(d);
    }

    /// Length of a streamed (relayed-body) response.
    pub(crate) fn observe_stream(&self, route: Option<usize>, d: Duration) {
        self.route(route).stream_duration.observe(d);
    }

    pub(crate) fn count_heartbeat(&self, route: Option<usize>) {
        self.route(route).heartbeats.fetch_add(1, Ordering::Relaxed);
    }

    /// A request refused for a missing or unknown client key.
    pub(crate) fn count_auth_failure(&self, route: Option<usize>) {
        self.route(route)
            .auth_failures
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A request refused by the route's rate limit.
    pub(crate) fn count_rate_limited(&self, route: Option<usize>) {
        self.route(route)
            .rate_limited
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_upstream_error(&self, route: Option<usize>, class: UpstreamClass) {
        let i = UpstreamClass::ALL
            .iter()
            .position(|c| *c == class)
            .unwrap_or(0);
        self.route(route).upstream_errors[i].fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub(crate) fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        self.render_requests(&mut out);
        self.render_edge_auth(&mut out);
        self.render_latency_and_tokens(&mut out);
        self.resume.render(&mut out);
        gauge(
            &mut out,
            "sse_edge_active_streams",
            "Responses currently streaming to clients.",
            load_i(&self.active_streams),
        );
        counter(
            &mut out,
            "sse_edge_client_disconnects_total",
            "Responses the client abandoned before their end.",
            load(&self.client_disconnects),
        );
        gauge(
            &mut out,
            "sse_edge_connections",
            "Open client connections.",
            load_i(&self.connections_open),
        );
        counter(
            &mut out,
            "sse_edge_connections_total",
            "Client connections accepted.",
            load(&self.connections_total),
        );
        counter(
            &mut out,
            "sse_edge_connections_refused_total",
            "Client connections refused at server.max_connections.",
            load(&self.connections_refused),
        );
        gauge(
            &mut out,
            "sse_edge_requests_in_flight",
            "Requests between arrival and the end of their answer.",
            load_i(&self.requests_in_flight),
        );
        counter(
            &mut out,
            "sse_edge_tls_handshake_errors_total",
            "Client TLS handshakes that failed or timed out.",
            load(&self.tls_handshake_errors),
        );
        header(
            &mut out,
            "sse_edge_cert_reloads_total",
            "counter",
            "Certificate reload attempts by result.",
        );
        let _ = writeln!(
            out,
            "sse_edge_cert_reloads_total{{result=\"ok\"}} {}",
            load(&self.cert_reloads_ok)
        );
        let _ = writeln!(
            out,
            "sse_edge_cert_reloads_total{{result=\"error\"}} {}",
            load(&self.cert_reloads_failed)
        );
        counter(
            &mut out,
            "sse_edge_access_log_dropped_total",
            "Access-log lines dropped because the writer fell behind.",
            load(&self.access_log_dropped),
        );
        out
    }

    fn render_latency_and_tokens(&self, out: &mut String) {
        header(
            out,
            "sse_edge_ttfb_seconds",
            "histogram",
            "Time until the response head was ready, by route.",
        );
        for r in &self.routes {
            r.ttfb.render(
                out,
                "sse_edge_ttfb_seconds",
                &format!("route=\"{}\"", label(&r.name)),
            );
        }
        header(
            out,
            "sse_edge_stream_duration_seconds",
            "histogram",
            "Length of relayed response bodies, by route.",
        );
        for r in &self.routes {
            let labels = format!("route=\"{}\"", label(&r.name));
            r.stream_duration
                .render(out, "sse_edge_stream_duration_seconds", &labels);
        }
        header(
            out,
            "sse_edge_tokens_total",
            "counter",
            "Tokens the upstream reported, by route, model and kind.",
        );
        self.tokens.render(out, |i| label(&self.routes[i].name));
    }

    fn render_edge_auth(&self, out: &mut String) {
        type Field = fn(&RouteCounters) -> &AtomicU64;
        let rows: [(&str, &str, Field); 2] = [
            (
                "sse_edge_auth_failures_total",
                "Requests refused for a missing or unknown client key, by route.",
                |r| &r.auth_failures,
            ),
            (
                "sse_edge_rate_limited_total",
                "Requests refused by the route's rate limit, by route.",
                |r| &r.rate_limited,
            ),
        ];
        for (name, help, field) in rows {
            header(out, name, "counter", help);
            for r in &self.routes {
                let _ = writeln!(
                    out,
                    "{name}{{route=\"{}\"}} {}",
                    label(&r.name),
                    load(field(r))
                );
            }
        }
    }

    fn render_requests(&self, out: &mut String) {
        header(
            out,
            "sse_edge_requests_total",
            "counter",
            "Requests answered, by route and status.",
        );
        for r in &self.routes {
            for (i, n) in r.status.iter().enumerate() {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "sse_edge_requests_total{{route=\"{}\",status=\"{}\"}} {n}",
                        label(&r.name),
                        i + 100
                    );
                }
            }
        }
        header(
            out,
            "sse_edge_heartbeats_total",
            "counter",
            "Keepalive frames injected, by route.",
        );
        for r in &self.routes {
            let _ = writeln!(
                out,
                "sse_edge_heartbeats_total{{route=\"{}\"}} {}",
                label(&r.name),
                load(&r.heartbeats)
            );
        }
        header(
            out,
            "sse_edge_upstream_errors_total",
            "counter",
            "Upstream failures, by route and class.",
        );
        for r in &self.routes {
            for (class, n) in UpstreamClass::ALL.iter().zip(&r.upstream_errors) {
                let _ = writeln!(
                    out,
                    "sse_edge_upstream_errors_total{{route=\"{}\",class=\"{}\"}} {}",
                    label(&r.name),
                    class.as_str(),
                    load(n)
                );
            }
        }
    }
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

fn load_i(a: &AtomicI64) -> i64 {
    a.load(Ordering::Relaxed)
}

/// `# HELP` and `# TYPE` lines of a metric family.
pub(crate) fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    header(out, name, "counter", help);
    let _ = writeln!(out, "{name} {v}");
}

fn gauge(out: &mut String, name: &str, help: &str, v: i64) {
    header(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {v}");
}

/// Escapes a label value (backslash, double quote, newline).
pub(crate) fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
