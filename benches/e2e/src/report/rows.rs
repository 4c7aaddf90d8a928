//! The report's rows: what each summary row measures, in which unit, and
//! what it must meet.

use crate::memory;
use crate::orchestrate::Sizes;

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Goal {
    /// Lower is better; met when the median per-round ratio is at most this.
    Ratio(f64),
    /// Added latency: met when sse-edge adds no more than nginx (median per-round difference <= 0).
    NotAboveNginx,
    /// Informational, lower is better.
    Info,
    /// Informational, higher is better.
    InfoHigher,
    /// Only sse-edge can do it.
    SseOnly,
    /// Informational, lower is better, compared as a difference (memory
    /// left after load: near zero or below it, a ratio means nothing).
    Difference,
}

pub(super) struct Row {
    pub(super) label: String,
    pub(super) scenario: &'static str,
    pub(super) metric: &'static str,
    pub(super) unit: &'static str,
    /// Subtract the direct-to-upstream baseline of the same round.
    pub(super) added: bool,
    pub(super) goal: Goal,
}

pub(super) fn rows(s: &Sizes) -> Vec<Row> {
    let r = |label: String, scenario, metric, unit, added, goal| Row {
        label,
        scenario,
        metric,
        unit,
        added,
        goal,
    };
    let paced = format!(
        "Token streams, {} events paced {} ms, {} clients",
        s.events,
        s.interval_us as f64 / 1000.0,
        s.clients
    );
    let burst = format!(
        "Token streams, {} events back to back, {} clients",
        s.events, s.clients
    );
    let c32 = format!("Small JSON, c={} (waves every {} ms)", s.clients, s.wave_ms);
    let mut v = vec![
        r(
            format!("{paced}: proxy CPU per relayed event"),
            "stream_paced",
            "cpu_us_per_event",
            "us",
            false,
            Goal::Ratio(0.9),
        ),
        r(
            format!("{paced}: proxy CPU per stream"),
            "stream_paced",
            "cpu_ms_per_stream",
            "ms",
            false,
            Goal::Info,
        ),
        r(
            format!("{paced}: added latency per event, p50"),
            "stream_paced",
            "lat_p50_us",
            "us",
            true,
            Goal::NotAboveNginx,
        ),
        r(
            format!("{paced}: added latency per event, p99"),
            "stream_paced",
            "lat_p99_us",
            "us",
            true,
            Goal::Info,
        ),
        r(
            format!("{burst}: proxy CPU per relayed event"),
            "stream_burst",
            "cpu_us_per_event",
            "us",
            false,
            Goal::Ratio(0.9),
        ),
        r(
            format!("{burst}: client throughput"),
            "stream_burst",
            "events_per_s",
            "events/s",
            false,
            Goal::InfoHigher,
        ),
        r(
            format!(
                "Idle streams ({} open, heartbeat 15 s armed): RSS per open stream",
                s.idle_streams
            ),
            "idle",
            "kib_per_stream",
            "KiB",
            false,
            Goal::Ratio(1.0),
        ),
    ];
    for (label, scenario, metric) in memory::summary_rows(s) {
        v.push(r(label, scenario, metric, "KiB", false, Goal::Difference));
    }
    v.extend([
        r(
            format!(
                "Heartbeats ({} silent streams, `--heartbeat 1s`): CPU per injected keepalive",
                s.hb_streams
            ),
            "heartbeat",
            "cpu_us_per_keepalive",
            "us",
            false,
            Goal::SseOnly,
        ),
        r(
            "Small JSON, c=1: proxy CPU per request".into(),
            "json_c1",
            "cpu_us_per_req",
            "us",
            false,
            Goal::Ratio(0.9),
        ),
        r(
            "Small JSON, c=1: added latency p50".into(),
            "json_c1",
            "p50_us",
            "us",
            true,
            Goal::NotAboveNginx,
        ),
        r(
            "Small JSON, c=1: added latency p99".into(),
            "json_c1",
            "p99_us",
            "us",
            true,
            Goal::Info,
        ),
        r(
            format!("{c32}: proxy CPU per request"),
            "json_c32",
            "cpu_us_per_req",
            "us",
            false,
            Goal::Ratio(0.9),
        ),
        r(
            format!("{c32}: added latency p50"),
            "json_c32",
            "p50_us",
            "us",
            true,
            Goal::NotAboveNginx,
        ),
        r(
            format!("{c32}: added latency p99"),
            "json_c32",
            "p99_us",
            "us",
            true,
            Goal::Info,
        ),
        r(
            format!(
                "TLS, new connection per request ({} loops): handshakes per second",
                s.hs_conns
            ),
            "tls_handshake",
            "hs_per_s",
            "/s",
            false,
            Goal::InfoHigher,
        ),
        r(
            "TLS, new connection per request: proxy CPU per handshake + request".into(),
            "tls_handshake",
            "cpu_us_per_hs",
            "us",
            false,
            Goal::Info,
        ),
        r(
            format!(
                "TLS token streams, {} events paced {} ms: proxy CPU per relayed event",
                s.events,
                s.interval_us as f64 / 1000.0
            ),
            "tls_stream",
            "cpu_us_per_event",
            "us",
            false,
            Goal::Ratio(0.9),
        ),
    ]);
    let prompt = crate::prompt::label(s.prompt_kib);
    let long: [(String, &'static str, bool, Goal); 3] = [
        (
            format!("{prompt}: proxy CPU per request"),
            "cpu_us_per_req",
            false,
            Goal::Ratio(0.9),
        ),
        (
            format!("{prompt}: added time to first event, p50"),
            "ttfe_p50_us",
            true,
            Goal::NotAboveNginx,
        ),
        (
            format!("{prompt}: added time to first event, p99"),
            "ttfe_p99_us",
            true,
            Goal::Info,
        ),
    ];
    for (label, metric, added, goal) in long {
        v.push(r(label, "prompt", metric, "us", added, goal));
    }
    let c1 = format!(
        "Failover, one connection, {} streams each way",
        s.fo_requests
    );
    let c32 = format!(
        "Failover under load ({} streams every {} ms, one failing over)",
        s.clients, s.wave_ms
    );
    let fo: [(String, &'static str, &'static str); 8] = [
        (
            format!("{c1}: time to first event, healthy primary, p50"),
            "failover_c1",
            "healthy_p50_us",
        ),
        (
            format!("{c1}: primary answers 503 at once: added time to first event, p50"),
            "failover_c1",
            "f503_added_p50_us",
        ),
        (
            format!(
                "{c1}: the primary's 503 sent to the fallback's first event at the client, p50"
            ),
            "failover_c1",
            "since503_p50_us",
        ),
        (
            format!(
                "{c1}: the primary's 503 sent to the fallback's first event at the client, p99"
            ),
            "failover_c1",
            "since503_p99_us",
        ),
        (
            format!("{c1}: primary refuses the connect: added time to first event, p50"),
            "failover_c1",
            "refused_added_p50_us",
        ),
        (
            format!("{c32}: primary answers 503 at once: added time to first event, p50"),
            "failover_c32",
            "f503_added_p50_us",
        ),
        (
            format!(
                "{c32}: the primary's 503 sent to the fallback's first event at the client, p50"
            ),
            "failover_c32",
            "since503_p50_us",
        ),
        (
            format!(
                "{c32}: the primary's 503 sent to the fallback's first event at the client, p99"
            ),
            "failover_c32",
            "since503_p99_us",
        ),
    ];
    for (label, scenario, metric) in fo {
        v.push(r(label, scenario, metric, "us", false, Goal::Difference));
    }
    v
}
