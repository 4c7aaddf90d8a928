//! The report: ratios of sse-edge to the best peer per round (each round's
//! numbers were measured side by side), their medians, the targets, and
//! every raw measurement; plus `splice`, which puts a generated block into
//! BENCHMARKS.md between its markers and leaves the rest of the file alone.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;
use std::time::Duration;

use crate::memory;
use crate::orchestrate::{ALL, Sizes};
use crate::procs::Env;
use crate::util::{Args, command_output, median};

mod floor;
mod rows;

use rows::{Goal, Row, rows};

/// One measurement: one scenario, one target, one round.
pub struct Cell {
    pub scenario: &'static str,
    pub round: usize,
    pub target: &'static str,
    pub m: BTreeMap<&'static str, f64>,
    pub note: String,
}

/// Where and with what the run happened.
pub struct Meta {
    pub date: String,
    pub machine: String,
    versions: Vec<String>,
    pub command: String,
    pub quick: bool,
    pub pinning: String,
}

impl Meta {
    pub fn collect(env: &Env, command: &str, quick: bool, sizes: &Sizes, load_cpu: usize) -> Meta {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let mem = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .map(|kib| format!("{:.0} GiB", kib / 1024.0 / 1024.0))
            .unwrap_or_default();
        let nofile = std::fs::read_to_string("/proc/self/limits")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .map(|l| l.split_whitespace().nth(3).unwrap_or("?").to_string())
            .unwrap_or_default();
        let machine = format!(
            "nproc {}, {model}, Linux {}, {mem} RAM, open-file limit {nofile}",
            command_output("nproc", &["--all"]),
            command_output("uname", &["-r"]),
        );
        let sse = env.sse_edge.display().to_string();
        let sha = command_output("sha256sum", &[&sse]);
        let haproxy = command_output("haproxy", &["-v"]);
        let versions = vec![
            format!(
                "{} (release build `{}`, sha256 {})",
                command_output(&sse, &["--version"]),
                sse,
                sha.split_whitespace()
                    .next()
                    .unwrap_or("?")
                    .get(..16)
                    .unwrap_or("?")
            ),
            command_output("nginx", &["-v"]).replace("nginx version: ", ""),
            haproxy
                .lines()
                .next()
                .unwrap_or("")
                .split(" - ")
                .next()
                .unwrap_or("")
                .to_string(),
            command_output("rustc", &["-V"]),
            command_output("openssl", &["version"]),
        ];
        let _ = sizes;
        Meta {
            date: command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            machine,
            versions,
            command: command.to_string(),
            quick,
            pinning: format!(
                "each proxy pinned to CPU {} with `taskset` (sse-edge `--workers 1`, nginx `worker_processes 1`, HAProxy `nbthread 1`); load generator and mock upstream pinned to CPU {load_cpu}",
                env.proxy_cpu
            ),
        }
    }
}

fn cell<'a>(cells: &'a [Cell], scenario: &str, target: &str, round: usize) -> Option<&'a Cell> {
    cells
        .iter()
        .find(|c| c.scenario == scenario && c.target == target && c.round == round)
}

fn value(cells: &[Cell], row: &Row, target: &str, round: usize) -> f64 {
    let Some(v) = cell(cells, row.scenario, target, round).and_then(|c| c.m.get(row.metric)) else {
        return f64::NAN;
    };
    if row.added {
        match cell(cells, row.scenario, "direct", round).and_then(|c| c.m.get(row.metric)) {
            Some(base) => v - base,
            None => f64::NAN,
        }
    } else {
        *v
    }
}

fn fmt(v: f64, unit: &str) -> String {
    if !v.is_finite() {
        return "—".into();
    }
    let digits = if v.abs() >= 1000.0 {
        0
    } else if v.abs() >= 100.0 {
        1
    } else {
        2
    };
    let unit = if unit.starts_with('/') || unit.is_empty() {
        unit.to_string()
    } else {
        format!(" {unit}")
    };
    format!("{v:.digits$}{unit}")
}

fn rounds_of(cells: &[Cell]) -> usize {
    cells.iter().map(|c| c.round + 1).max().unwrap_or(0)
}

/// The summary table, one row per measure, with per-round ratios.
pub fn summary_table(cells: &[Cell], sizes: &Sizes) -> String {
    let rounds = rounds_of(cells);
    let mut out = String::new();
    out.push_str("| measure | sse-edge | nginx | HAProxy | sse-edge against the best peer: median (each round) | target | met |\n");
    out.push_str("|---|---:|---:|---:|---|---|---|\n");
    for row in rows(sizes) {
        if !cells.iter().any(|c| c.scenario == row.scenario) {
            continue;
        }
        let per = |t: &str| -> Vec<f64> { (0..rounds).map(|r| value(cells, &row, t, r)).collect() };
        let (s, n, h) = (per("sse-edge"), per("nginx"), per("haproxy"));
        let higher = row.goal == Goal::InfoHigher;
        let mut ratios = Vec::new();
        let mut diffs = Vec::new();
        for r in 0..rounds {
            let best = if higher {
                n[r].max(h[r])
            } else {
                n[r].min(h[r])
            };
            ratios.push(s[r] / best);
            diffs.push(s[r] - n[r]);
        }
        let ratio = median(&ratios);
        let per_round = |v: &[f64], f: &dyn Fn(f64) -> String| -> String {
            v.iter().map(|x| f(*x)).collect::<Vec<_>>().join(", ")
        };
        let ratio_txt = |x: f64| {
            if x.is_finite() {
                format!("{x:.2}")
            } else {
                "—".into()
            }
        };
        let diff_txt = |x: f64| {
            if x.is_finite() {
                format!("{x:+.1}")
            } else {
                "—".into()
            }
        };
        let mut best_diffs = Vec::new();
        for r in 0..rounds {
            let best = if higher {
                n[r].max(h[r])
            } else {
                n[r].min(h[r])
            };
            best_diffs.push(s[r] - best);
        }
        let (compare, target, met) = match row.goal {
            Goal::Ratio(t) => (
                format!(
                    "**{}** ({})",
                    ratio_txt(ratio),
                    per_round(&ratios, &ratio_txt)
                ),
                format!("≤ {t:.2}× best peer"),
                if !ratio.is_finite() {
                    "not measured".into()
                } else if ratio <= t {
                    "yes".to_string()
                } else {
                    "**NO**".to_string()
                },
            ),
            Goal::NotAboveNginx => {
                let d = median(&diffs);
                (
                    format!(
                        "sse-edge − nginx: **{} us** ({})",
                        diff_txt(d),
                        per_round(&diffs, &diff_txt)
                    ),
                    "≤ nginx's added p50".into(),
                    if !d.is_finite() {
                        "not measured".into()
                    } else if d <= 0.0 {
                        "yes".into()
                    } else {
                        "**NO**".into()
                    },
                )
            }
            Goal::Info | Goal::InfoHigher if row.added => (
                format!(
                    "sse-edge − best peer: {} us ({})",
                    diff_txt(median(&best_diffs)),
                    per_round(&best_diffs, &diff_txt)
                ),
                "info (lower is better)".into(),
                "—".into(),
            ),
            Goal::Info | Goal::InfoHigher => (
                format!("{} ({})", ratio_txt(ratio), per_round(&ratios, &ratio_txt)),
                if higher {
                    format!(
                        "info (higher is better){}",
                        saturation_note(cells, row.scenario)
                    )
                } else {
                    "info (lower is better)".into()
                },
                "—".into(),
            ),
            Goal::SseOnly => (
                "n/a: nginx and HAProxy cannot inject keepalives".into(),
                "absolute cost".into(),
                "—".into(),
            ),
            Goal::Difference => (
                format!(
                    "sse-edge − best peer: {} {} ({})",
                    diff_txt(median(&best_diffs)),
                    row.unit,
                    per_round(&best_diffs, &diff_txt)
                ),
                "info (lower is better)".into(),
                "—".into(),
            ),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            row.label,
            fmt(median(&s), row.unit),
            fmt(median(&n), row.unit),
            fmt(median(&h), row.unit),
            compare,
            target,
            met
        );
    }
    out
}

/// The kernel's part of a CPU metric (utime/stime split of the same
/// measurement), where the harness records one.
fn sys_metric(metric: &str) -> Option<&'static str> {
    match metric {
        "cpu_us_per_event" => Some("sys_us_per_event"),
        "cpu_us_per_req" => Some("sys_us_per_req"),
        _ => None,
    }
}

/// Each CPU row split into kernel and user time, with the floor the
/// kernel part alone sets on the ratio.
pub fn split_table(cells: &[Cell], sizes: &Sizes) -> String {
    let rounds = rounds_of(cells);
    let mut out = String::new();
    out.push_str("| measure | sse-edge kernel + user | nginx kernel + user | HAProxy kernel + user | sse-edge kernel ÷ best peer's kernel + user: median (each round) | sse-edge user ÷ best peer's user: median (each round) |\n");
    out.push_str("|---|---:|---:|---:|---|---|\n");
    for row in rows(sizes) {
        let Some(sys) = sys_metric(row.metric) else {
            continue;
        };
        if !matches!(row.goal, Goal::Ratio(_)) || !cells.iter().any(|c| c.scenario == row.scenario)
        {
            continue;
        }
        let get = |t: &str, r: usize, k: &str| {
            cell(cells, row.scenario, t, r)
                .and_then(|c| c.m.get(k).copied())
                .unwrap_or(f64::NAN)
        };
        let split = |t: &str| {
            let total: Vec<f64> = (0..rounds).map(|r| get(t, r, row.metric)).collect();
            let kernel: Vec<f64> = (0..rounds).map(|r| get(t, r, sys)).collect();
            let user: Vec<f64> = total.iter().zip(&kernel).map(|(t, k)| t - k).collect();
            (total, kernel, user)
        };
        let (_, s_sys, s_user) = split("sse-edge");
        let (n_tot, n_sys, n_user) = split("nginx");
        let (h_tot, h_sys, h_user) = split("haproxy");
        let mut floor = Vec::new();
        let mut user = Vec::new();
        for r in 0..rounds {
            // The best peer of the round by total CPU, as in the summary.
            let (best_tot, best_user) = if n_tot[r] <= h_tot[r] {
                (n_tot[r], n_user[r])
            } else {
                (h_tot[r], h_user[r])
            };
            floor.push(s_sys[r] / best_tot);
            user.push(s_user[r] / best_user);
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | **{}** | {} |",
            row.label,
            split_pair(&s_sys, &s_user, row.unit),
            split_pair(&n_sys, &n_user, row.unit),
            split_pair(&h_sys, &h_user, row.unit),
            each_round(&floor),
            each_round(&user)
        );
    }
    out
}

/// "kernel + user" of a CPU row's per-round values, as medians.
fn split_pair(kernel: &[f64], user: &[f64], unit: &str) -> String {
    if median(kernel).is_finite() {
        format!(
            "{} + {}",
            fmt(median(kernel), unit),
            fmt(median(user), unit)
        )
    } else {
        "—".into()
    }
}

/// Per-round ratios as "median (round 1, round 2, ...)".
fn each_round(ratios: &[f64]) -> String {
    let each: Vec<String> = ratios.iter().map(|x| format!("{x:.2}")).collect();
    format!("{:.2} ({})", median(ratios), each.join(", "))
}

/// For throughput rows: which targets ran with the load generator's core
/// saturated (their figure is then a floor set by the load generator, not
/// the proxy's ceiling) and which saturated their own core.
fn saturation_note(cells: &[Cell], scenario: &str) -> String {
    let med = |target: &str, k: &str| {
        let v: Vec<f64> = cells
            .iter()
            .filter(|c| c.scenario == scenario && c.target == target)
            .filter_map(|c| c.m.get(k).copied())
            .collect();
        median(&v)
    };
    let mut load = Vec::new();
    let mut proxy = Vec::new();
    for t in ["sse-edge", "nginx", "haproxy"] {
        if med(t, "load_core_util") >= 0.95 {
            load.push(t);
        }
        if med(t, "proxy_core_util") >= 0.95 {
            proxy.push(t);
        }
    }
    let mut note = String::new();
    if !load.is_empty() {
        note.push_str(&format!(
            "; load generator's core saturated for {} (a floor, not the proxy's limit)",
            load.join(", ")
        ));
    }
    if !proxy.is_empty() {
        note.push_str(&format!("; proxy core saturated for {}", proxy.join(", ")));
    }
    note
}

/// Columns of the detail table of each scenario.
pub fn detail_columns(scenario: &str, sizes: &Sizes) -> Vec<(&'static str, String)> {
    let fixed: &[(&str, &str)] = match scenario {
        "stream_paced" | "stream_burst" | "tls_stream" => &[
            ("streams", "streams"),
            ("events", "events"),
            ("failed", "failed"),
            ("events_per_s", "events/s"),
            ("cpu_ms_per_stream", "CPU ms/stream"),
            ("cpu_us_per_event", "CPU us/event"),
            ("sys_us_per_event", "of which kernel"),
            ("lat_p50_us", "latency p50 us"),
            ("lat_p99_us", "latency p99 us"),
            ("proxy_core_util", "proxy core busy"),
            ("load_core_util", "load core busy"),
        ],
        "json_c1" | "json_c32" => &[
            ("requests", "requests"),
            ("failed", "failed"),
            ("req_per_s", "req/s"),
            ("cpu_us_per_req", "CPU us/req"),
            ("sys_us_per_req", "of which kernel"),
            ("p50_us", "p50 us"),
            ("p99_us", "p99 us"),
            ("proxy_core_util", "proxy core busy"),
            ("load_core_util", "load core busy"),
        ],
        "prompt" => crate::prompt::DETAIL,
        "idle" => &[
            ("streams", "streams open"),
            ("failed", "failed"),
            ("open_s", "open time s"),
            ("rss_before_kib", "RSS before KiB"),
            ("rss_after_kib", "RSS after KiB"),
            ("kib_per_stream", "KiB/stream"),
            ("fds_per_stream", "fds/stream"),
        ],
        "upload" => &[
            ("upload_mib", "MiB sent"),
            ("failed", "failed"),
            ("upload_s", "upload s"),
            ("rss_before_kib", "RSS before KiB"),
            ("rss_peak_kib", "RSS peak KiB"),
        ],
        "heartbeat" => &[
            ("streams", "streams open"),
            ("keepalives", "keepalives (client)"),
            ("keepalives_metric", "keepalives (/metrics)"),
            ("keepalives_per_stream_s", "keepalives/stream/s"),
            ("proxy_cpu_s", "CPU s"),
            ("cpu_us_per_keepalive", "CPU us/keepalive"),
            ("proxy_core_util", "proxy core busy"),
        ],
        "tls_handshake" => &[
            ("handshakes", "handshakes"),
            ("failed", "failed"),
            ("hs_per_s", "handshakes/s"),
            ("cpu_us_per_hs", "CPU us/handshake"),
            ("hs_per_core_s", "one core's capacity /s"),
            ("p50_us", "connect+request p50 us"),
            ("proxy_core_util", "proxy core busy"),
            ("load_core_util", "load core busy"),
        ],
        "failover_c1" => &[
            ("healthy_p50_us", "healthy p50 us"),
            ("healthy_p99_us", "healthy p99 us"),
            ("f503_p50_us", "503 p50 us"),
            ("f503_p99_us", "503 p99 us"),
            ("f503_added_p50_us", "503 added p50 us"),
            ("healthy_to_primary_p50_us", "healthy: to primary p50 us"),
            ("f503_to_primary_p50_us", "503: to primary p50 us"),
            ("since503_p50_us", "since the 503 p50 us"),
            ("since503_p99_us", "since the 503 p99 us"),
            ("refused_p50_us", "refused p50 us"),
            ("refused_p99_us", "refused p99 us"),
            ("refused_added_p50_us", "refused added p50 us"),
            ("primary_conns_per_503", "primary connects per 503"),
            ("failovers_metric", "failovers (/metrics)"),
            ("not_failed_over", "503 requests not failed over"),
            ("failed", "failed"),
        ],
        "failover_c32" => &[
            ("healthy_requests", "healthy streams"),
            ("f503_requests", "503 streams"),
            ("healthy_p50_us", "healthy p50 us"),
            ("healthy_p99_us", "healthy p99 us"),
            ("f503_p50_us", "503 p50 us"),
            ("f503_p99_us", "503 p99 us"),
            ("f503_added_p50_us", "503 added p50 us"),
            ("healthy_to_primary_p50_us", "healthy: to primary p50 us"),
            ("f503_to_primary_p50_us", "503: to primary p50 us"),
            ("since503_p50_us", "since the 503 p50 us"),
            ("since503_p99_us", "since the 503 p99 us"),
            ("primary_conns_per_503", "primary connects per 503"),
            ("ejections_metric", "ejections (/metrics)"),
            ("not_failed_over", "503 requests not failed over"),
            ("failed", "failed"),
        ],
        _ => &[],
    };
    let mut cols: Vec<(&'static str, String)> =
        fixed.iter().map(|&(k, l)| (k, l.to_string())).collect();
    if matches!(scenario, "idle" | "upload") {
        for w in &sizes.close_waits {
            cols.push((w.rss_key, format!("RSS {} s after close KiB", w.secs)));
            cols.push((w.kept_key, "of which left by the load KiB".into()));
        }
    }
    cols
}

pub fn num(v: f64) -> String {
    if !v.is_finite() {
        "—".into()
    } else if v.abs() >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// One table per scenario, a row per target (in `targets` order).
pub fn details(cells: &[Cell], targets: &[&str], sizes: &Sizes) -> String {
    let mut out = String::new();
    for scn in ALL {
        let id = scn.id();
        let mine: Vec<&Cell> = cells.iter().filter(|c| c.scenario == id).collect();
        if mine.is_empty() {
            continue;
        }
        let cols = detail_columns(id, sizes);
        let _ = writeln!(out, "\n`{id}` (median over rounds)\n");
        let _ = writeln!(
            out,
            "| target | {} |",
            cols.iter()
                .map(|c| c.1.as_str())
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let _ = writeln!(out, "|---|{}", "---:|".repeat(cols.len()));
        for &target in targets {
            let tc: Vec<&&Cell> = mine.iter().filter(|c| c.target == target).collect();
            if tc.is_empty() {
                continue;
            }
            let vals: Vec<String> = cols
                .iter()
                .map(|(k, _)| {
                    let v: Vec<f64> = tc.iter().filter_map(|c| c.m.get(k).copied()).collect();
                    num(median(&v))
                })
                .collect();
            let _ = writeln!(out, "| {target} | {} |", vals.join(" | "));
        }
    }
    out
}

pub fn raw(cells: &[Cell]) -> String {
    let mut out = String::from(
        "| round | scenario | target | measurements | note |\n|---|---|---|---|---|\n",
    );
    for c in cells {
        let m: Vec<String> =
            c.m.iter()
                .map(|(k, v)| format!("{k}={}", num(*v)))
                .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            c.round + 1,
            c.scenario,
            c.target,
            m.join(" "),
            c.note.replace('|', "/")
        );
    }
    out
}

pub fn tsv(cells: &[Cell]) -> String {
    let mut out = String::from("round\tscenario\ttarget\tmetric\tvalue\n");
    for c in cells {
        for (k, v) in &c.m {
            let _ = writeln!(
                out,
                "{}\t{}\t{}\t{k}\t{v}",
                c.round + 1,
                c.scenario,
                c.target
            );
        }
    }
    out
}

pub fn markdown(meta: &Meta, sizes: &Sizes, cells: &[Cell], elapsed: Duration) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Generated by the command below on **{}**; the next run rewrites everything between the `e2e` markers.\n",
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
    let _ = writeln!(out, "- Versions: {}", meta.versions.join("; "));
    let _ = writeln!(out, "- Pinning: {}", meta.pinning);
    let _ = writeln!(
        out,
        "- Rounds: {} interleaved rounds (every scenario against every target in one round, target order rotated each round), a fresh proxy process per measurement, warmed up before it; run time {:.0} s",
        sizes.rounds,
        elapsed.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "- Sizes: {} paced streams and {} back-to-back streams of {} events over {} keep-alive clients; JSON runs {} s each; {} idle streams; one JSON upload of {} MiB; streaming requests of a {} KB prompt for {} s; RSS read again {} after the idle streams and the upload have closed; {} silent streams for {} s of `--heartbeat 1s`; TLS handshakes for {} s over {} loops; {} TLS streams; failover: {} streams each way on one connection, then {} s over {} connections",
        sizes.paced_streams,
        sizes.burst_streams,
        sizes.events,
        sizes.clients,
        sizes.json_secs,
        sizes.idle_streams,
        sizes.upload_mib,
        sizes.prompt_kib,
        sizes.json_secs,
        memory::close_waits_text(sizes),
        sizes.hb_streams,
        sizes.hb_window_secs,
        sizes.hs_secs,
        sizes.hs_conns,
        sizes.tls_streams,
        sizes.fo_requests,
        sizes.fo_secs,
        sizes.clients
    );
    let stat = |k: &str| -> (f64, f64) {
        let v: Vec<f64> = cells.iter().filter_map(|c| c.m.get(k).copied()).collect();
        (median(&v), v.iter().copied().fold(f64::NAN, f64::max))
    };
    let (po_med, po_max) = stat("other_load_proxy_core");
    let (lo_med, lo_max) = stat("other_load_load_core");
    let (ps_med, ps_max) = stat("steal_proxy_core");
    let waited: f64 = cells.iter().filter_map(|c| c.m.get("quiet_wait_s")).sum();
    let _ = writeln!(
        out,
        "- Other load during the measurements (the machine is shared): proxy core median {po_med:.2} / max {po_max:.2} of a core, load core median {lo_med:.2} / max {lo_max:.2}; hypervisor steal on the proxy core median {ps_med:.2} / max {ps_max:.2}; {waited:.0} s spent waiting for the machine to go quiet before measurements"
    );
    out.push_str("\n### Summary: sse-edge against the best peer\n\n");
    out.push_str("Values are medians over rounds; the ratio column is the median of the per-round ratios (each round's numbers were measured side by side), with every round's ratio in parentheses. \"Added\" latency is the proxied value minus the direct-to-upstream value of the same round.\n\n");
    out.push_str(&summary_table(cells, sizes));
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
    out.push_str("\n### Kernel and user time in the CPU rows\n\n");
    out.push_str("Each CPU row above split into time in the kernel and in user space (`stime` and `utime` of the proxy process over the same measurement, from `/proc/PID/stat`). The kernel ratio is a floor: with no user-space work at all, sse-edge's CPU against the best peer could not be lower at its present kernel work. Where it is above a row's target, only less kernel work (fewer or cheaper system calls) can meet that target, not faster code in user space.\n\n");
    out.push_str(&split_table(cells, sizes));
    let floor = floor::table(cells, sizes);
    if !floor.is_empty() {
        out.push_str("\n### The hyper floor\n\n");
        out.push_str("The same CPU rows for `hyper-floor` (benches/e2e/src/floor.rs), measured in the same rounds: the thinnest relay built from hyper's own HTTP/1.1 server and client, with sse-edge's pinning and one current-thread runtime. It forwards each request unchanged over a pooled upstream connection and streams the answer back; no header rewriting, no body reading, no event scanning, usage, timeouts or metrics. What it costs is what hyper and tokio cost. Where its ratio to the best peer is above a row's target, no relay on hyper's server meets that target by cutting its own work, and the last column is what sse-edge's own work adds in user space.\n\n");
        out.push_str(&floor);
    }
    out.push_str("\n### Details\n");
    out.push_str(&details(
        cells,
        &["direct", "sse-edge", "nginx", "haproxy"],
        sizes,
    ));
    out.push_str("\n<details><summary>Every measurement</summary>\n\n");
    out.push_str(&raw(cells));
    out.push_str("\n</details>\n");
    out
}

const SKELETON: &str = "# Benchmarks\n\n<!-- e2e:begin -->\n<!-- e2e:end -->\n";

/// Replaces the text between `<!-- NAME:begin -->` and `<!-- NAME:end -->`
/// (the markers stay), appending the block when the markers are missing.
pub fn splice_text(doc: &str, name: &str, block: &str) -> String {
    let begin = format!("<!-- {name}:begin -->");
    let end = format!("<!-- {name}:end -->");
    let body = format!("{begin}\n{}\n{end}", block.trim_end());
    match (doc.find(&begin), doc.find(&end)) {
        (Some(b), Some(e)) if e > b => format!("{}{}{}", &doc[..b], body, &doc[e + end.len()..]),
        _ => format!("{}\n{body}\n", doc.trim_end()),
    }
}

/// `e2e-bench splice --file BENCHMARKS.md --block NAME --from FILE`
pub fn splice_main(args: &[String]) -> Result<(), String> {
    let a = Args::parse(args, &[])?;
    let file = Path::new(a.req("file")?);
    let block = std::fs::read_to_string(a.req("from")?).map_err(|e| e.to_string())?;
    let doc = std::fs::read_to_string(file).unwrap_or_else(|_| SKELETON.to_string());
    let new = splice_text(&doc, a.req("block")?, &block);
    std::fs::write(file, new).map_err(|e| e.to_string())
}
