//! The report of a variant run (`e2e-bench run --variants A=PATH,B=PATH`):
//! builds of sse-edge measured side by side in the same interleaved rounds,
//! each compared with the first (the baseline) round by round, as the main
//! report compares sse-edge with its peers.

use std::fmt::Write;
use std::time::Duration;

use crate::orchestrate::{Sizes, Target};
use crate::report::{self, Cell, Meta};
use crate::util::{command_output, median};

/// One row of the comparison.
struct Measure {
    label: String,
    scenario: &'static str,
    metric: &'static str,
    unit: &'static str,
    /// Shown as value ÷ this (KiB to MiB: 1024).
    scale: f64,
    /// Whether a per-round ratio to the baseline means something (not for
    /// memory left after load, which can be near zero or below it).
    ratio: bool,
}

fn measures(s: &Sizes) -> Vec<Measure> {
    let m = |label: String, scenario, metric, unit, scale, ratio| Measure {
        label,
        scenario,
        metric,
        unit,
        scale,
        ratio,
    };
    let idle = format!("Idle streams ({} open)", s.idle_streams);
    let upload = format!("JSON upload of {} MiB (one request)", s.upload_mib);
    let mut v = vec![
        m(
            format!("{idle}: RSS before them (after the warm-up)"),
            "idle",
            "rss_before_kib",
            "MiB",
            1024.0,
            true,
        ),
        m(
            format!("{idle}: RSS with all open (peak)"),
            "idle",
            "rss_after_kib",
            "MiB",
            1024.0,
            true,
        ),
        m(
            format!("{idle}: RSS per open stream"),
            "idle",
            "kib_per_stream",
            "KiB",
            1.0,
            true,
        ),
    ];
    for w in &s.close_waits {
        v.push(m(
            format!("{idle}: RSS {} s after all closed", w.secs),
            "idle",
            w.rss_key,
            "MiB",
            1024.0,
            true,
        ));
        v.push(m(
            format!("{idle}: of which left by the streams (above the RSS before)"),
            "idle",
            w.kept_key,
            "MiB",
            1024.0,
            false,
        ));
    }
    v.push(m(
        format!("{upload}: RSS before it"),
        "upload",
        "rss_before_kib",
        "MiB",
        1024.0,
        true,
    ));
    v.push(m(
        format!("{upload}: peak RSS"),
        "upload",
        "rss_peak_kib",
        "MiB",
        1024.0,
        true,
    ));
    for w in &s.close_waits {
        v.push(m(
            format!("{upload}: RSS {} s after the client closed", w.secs),
            "upload",
            w.rss_key,
            "MiB",
            1024.0,
            true,
        ));
        v.push(m(
            format!("{upload}: of which left by the upload (above the RSS before)"),
            "upload",
            w.kept_key,
            "MiB",
            1024.0,
            false,
        ));
    }
    let cpu = [
        (
            "stream_paced",
            "cpu_us_per_event",
            format!(
                "Token streams, {} events paced {} ms, {} clients: proxy CPU per relayed event",
                s.events,
                s.interval_us as f64 / 1000.0,
                s.clients
            ),
        ),
        (
            "stream_burst",
            "cpu_us_per_event",
            format!(
                "Token streams, {} events back to back, {} clients: proxy CPU per relayed event",
                s.events, s.clients
            ),
        ),
        (
            "json_c1",
            "cpu_us_per_req",
            "Small JSON, c=1: proxy CPU per request".to_string(),
        ),
        (
            "json_c32",
            "cpu_us_per_req",
            format!(
                "Small JSON, c={} (waves every {} ms): proxy CPU per request",
                s.clients, s.wave_ms
            ),
        ),
        (
            "heartbeat",
            "cpu_us_per_keepalive",
            "Heartbeats: CPU per injected keepalive".to_string(),
        ),
        (
            "tls_handshake",
            "cpu_us_per_hs",
            "TLS, new connection per request: proxy CPU per handshake + request".to_string(),
        ),
        (
            "tls_stream",
            "cpu_us_per_event",
            "TLS token streams: proxy CPU per relayed event".to_string(),
        ),
    ];
    let sched = [
        ("stream_paced", "sched_us_per_event", &cpu[0].2),
        ("stream_burst", "sched_us_per_event", &cpu[1].2),
        ("json_c1", "sched_us_per_req", &cpu[2].2),
        ("json_c32", "sched_us_per_req", &cpu[3].2),
    ]
    .map(|(scenario, metric, label)| (scenario, metric, format!("{label} (schedstat)")));
    for (scenario, metric, label) in cpu {
        v.push(m(label, scenario, metric, "us", 1.0, true));
    }
    for (scenario, metric, label) in sched {
        v.push(m(label, scenario, metric, "us", 1.0, true));
    }
    let fo = [
        (
            "failover_c1",
            "f503_added_p50_us",
            "Failover, one connection: added time to first event when the primary answers 503, p50",
            false,
        ),
        (
            "failover_c1",
            "since503_p50_us",
            "Failover, one connection: the primary's 503 to the fallback's first event, p50",
            true,
        ),
        (
            "failover_c32",
            "since503_p50_us",
            "Failover under load: the primary's 503 to the fallback's first event, p50",
            true,
        ),
    ];
    for (scenario, metric, label, ratio) in fo {
        v.push(m(label.to_string(), scenario, metric, "us", 1.0, ratio));
    }
    let prompt = crate::prompt::label(s.prompt_kib);
    for (metric, what) in [
        ("cpu_us_per_req", "proxy CPU per request"),
        ("sys_us_per_req", "proxy CPU per request, kernel part"),
        ("ttfe_p50_us", "time to first event, p50"),
    ] {
        v.push(m(
            format!("{prompt}: {what}"),
            "prompt",
            metric,
            "us",
            1.0,
            true,
        ));
    }
    v
}

fn value(cells: &[Cell], scenario: &str, metric: &str, target: &str, round: usize) -> f64 {
    cells
        .iter()
        .find(|c| c.scenario == scenario && c.target == target && c.round == round)
        .and_then(|c| c.m.get(metric).copied())
        .unwrap_or(f64::NAN)
}

fn shown(v: f64, unit: &str) -> String {
    if !v.is_finite() {
        return "—".into();
    }
    let digits = if v.abs() >= 100.0 { 1 } else { 2 };
    format!("{v:.digits$} {unit}")
}

/// Every measure of the run: each variant's median over rounds, and each
/// later variant against the first, median of the per-round ratios with
/// every round's in parentheses.
pub fn table(sizes: &Sizes, variants: &[Target], cells: &[Cell]) -> String {
    let rounds = cells.iter().map(|c| c.round + 1).max().unwrap_or(0);
    let base = variants.first().map_or("", |t| t.name);
    let rest = variants.get(1..).unwrap_or(&[]);
    let mut out = String::from("| measure |");
    for t in variants {
        let _ = write!(out, " {} |", t.name);
    }
    for t in rest {
        let _ = write!(out, " {} ÷ {base}: median (each round) |", t.name);
    }
    out.push_str("\n|---|");
    out.push_str(&"---:|".repeat(variants.len()));
    out.push_str(&"---|".repeat(rest.len()));
    out.push('\n');
    for m in measures(sizes) {
        if !cells
            .iter()
            .any(|c| c.scenario == m.scenario && c.m.contains_key(m.metric))
        {
            continue;
        }
        let per = |t: &str| -> Vec<f64> {
            (0..rounds)
                .map(|r| value(cells, m.scenario, m.metric, t, r) / m.scale)
                .collect()
        };
        let _ = write!(out, "| {} |", m.label);
        for t in variants {
            let _ = write!(out, " {} |", shown(median(&per(t.name)), m.unit));
        }
        let b = per(base);
        for t in rest {
            if !m.ratio {
                out.push_str(" — |");
                continue;
            }
            let ratios: Vec<f64> = per(t.name).iter().zip(&b).map(|(x, y)| x / y).collect();
            let each: Vec<String> = ratios.iter().map(|x| format!("{x:.2}")).collect();
            let _ = write!(out, " **{:.2}** ({}) |", median(&ratios), each.join(", "));
        }
        out.push('\n');
    }
    out
}

pub fn markdown(
    meta: &Meta,
    sizes: &Sizes,
    variants: &[Target],
    cells: &[Cell],
    elapsed: Duration,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Generated by the command below on **{}**; the next run rewrites everything between the `alloc` markers.\n",
        meta.date
    );
    let _ = writeln!(
        out,
        "- Command: `{}`{}",
        meta.command,
        if meta.quick {
            " (quick mode: small sizes, not for conclusions)"
        } else {
            ""
        }
    );
    let _ = writeln!(out, "- Machine: {}", meta.machine);
    out.push_str("- Builds of sse-edge compared (the same source):");
    for t in variants {
        let path = t.bin.as_ref().map(|p| p.display().to_string());
        let path = path.unwrap_or_default();
        let sha = command_output("sha256sum", &[&path]);
        let _ = write!(
            out,
            " {} (`{path}`, sha256 {});",
            t.name,
            sha.get(..16).unwrap_or("?")
        );
    }
    out.pop();
    out.push('\n');
    let _ = writeln!(
        out,
        "- Pinning: {}; every build runs `--workers 1`",
        meta.pinning
    );
    let _ = writeln!(
        out,
        "- Rounds: {} interleaved rounds (every scenario against every build in one round, build order rotated each round), a fresh process per measurement, warmed up before it; run time {:.0} s",
        sizes.rounds,
        elapsed.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "- Sizes: {} idle streams; one JSON upload of {} MiB; RSS read again {} after the idle streams and the upload have closed; {} paced streams and {} back-to-back streams of {} events over {} keep-alive clients; JSON runs {} s each",
        sizes.idle_streams,
        sizes.upload_mib,
        crate::memory::close_waits_text(sizes),
        sizes.paced_streams,
        sizes.burst_streams,
        sizes.events,
        sizes.clients,
        sizes.json_secs
    );
    out.push_str("\n### Comparison\n\nValues are medians over rounds; RSS in MiB except per stream. The ratio columns are the median of the per-round ratios to the first build, with every round's ratio in parentheses.\n\n");
    out.push_str(&table(sizes, variants, cells));
    let notes: Vec<&Cell> = cells.iter().filter(|c| !c.note.is_empty()).collect();
    if !notes.is_empty() {
        out.push_str("\nProblems during the run:\n\n");
        for c in notes {
            let _ = writeln!(
                out,
                "- round {} `{}` {}: {}",
                c.round + 1,
                c.scenario,
                c.target,
                c.note
            );
        }
    }
    out.push_str("\n### Details\n");
    let names: Vec<&str> = variants.iter().map(|t| t.name).collect();
    out.push_str(&report::details(cells, &names, sizes));
    out.push_str("\n<details><summary>Every measurement</summary>\n\n");
    out.push_str(&report::raw(cells));
    out.push_str("\n</details>\n");
    out
}
