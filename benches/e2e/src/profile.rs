//! `e2e-bench profile`: where sse-edge's CPU and memory go, next to the
//! peers where that helps, for the rows the end-to-end run misses.
//!
//! 1. System calls and context switches per relayed event / per request
//!    for every proxy (`perf stat` syscall tracepoints, or `strace -c` when
//!    those are missing), for the measured window only.
//! 2. `perf record -e cpu-clock` of every proxy: user space against kernel
//!    (by DSO), and sse-edge's hottest symbols.
//! 3. `valgrind --tool=callgrind` of sse-edge, instrumentation switched on
//!    after the warm-up: instructions per event / request and the hottest
//!    functions (exclusive).
//! 4. `valgrind --tool=massif` of sse-edge holding idle streams: heap per
//!    stream and the allocation sites at the peak. massif sees only the
//!    system allocator's heap, so it runs the build without jemalloc
//!    (`--sse-edge-system`, built with `--no-default-features`).
//!
//! Each tool is skipped (and said so) when it is missing or does not work.

use std::fmt::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::client::{self, Endpoint};
use crate::procs::{self, Env, Kind, Options};
use crate::util::{Args, command_output, pin_to_cpu};

#[derive(Clone, Copy, PartialEq)]
enum Work {
    Paced,
    Burst,
    Json,
    /// sse-edge only, `--heartbeat 1s`: silent streams, counted per keepalive.
    Heartbeat,
}

const HB_STREAMS: u64 = 2000;

impl Work {
    fn name(self) -> &'static str {
        match self {
            Work::Paced => "token streams, paced 1 ms",
            Work::Burst => "token streams, back to back",
            Work::Json => "small JSON, c=1",
            Work::Heartbeat => "heartbeats, 2000 silent streams, `--heartbeat 1s`, 5 s",
        }
    }
    fn unit(self) -> &'static str {
        match self {
            Work::Json => "request",
            Work::Heartbeat => "keepalive",
            _ => "event",
        }
    }
}

const STREAMS: u64 = 64;
const EVENTS: u32 = 300;

/// Runs one workload; returns how many units (events, requests or
/// keepalives) it did. `idle` is the silent streams of a heartbeat run.
async fn workload(ep: &Endpoint, w: Work, idle: Option<&client::IdleSet>) -> u64 {
    match w {
        Work::Heartbeat => {
            let Some(set) = idle else { return 0 };
            let k0 = set.keepalives.load(Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(5)).await;
            set.keepalives.load(Ordering::Relaxed) - k0
        }
        Work::Paced => {
            client::streams(ep, 32, STREAMS, EVENTS, 1000, false)
                .await
                .events
        }
        Work::Burst => {
            client::streams(ep, 32, STREAMS, EVENTS, 0, false)
                .await
                .events
        }
        Work::Json => client::json_closed(ep, 1, Duration::from_secs(2)).await.ok,
    }
}

async fn warm(ep: &Endpoint) {
    let _ = client::streams(ep, 32, 32, 30, 0, false).await;
    let _ = client::json_closed(ep, 2, Duration::from_millis(200)).await;
}

/// Heartbeat runs: opens the silent streams and waits until every one is
/// past its first keepalive. Nothing for the other workloads.
async fn prepare(ep: &Endpoint, w: Work) -> Option<client::IdleSet> {
    if w != Work::Heartbeat {
        return None;
    }
    let set = client::open_idle(ep, HB_STREAMS, 200);
    for _ in 0..600 {
        if set.opened.load(Ordering::Relaxed) + set.failed.load(Ordering::Relaxed) >= HB_STREAMS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    Some(set)
}

/// Ends the silent streams of a heartbeat run.
async fn release(env: &Env, idle: Option<client::IdleSet>) {
    if let Some(set) = idle {
        let _ = client::simple(env.upstream, "POST", "/_release").await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        set.abort();
    }
}

fn opts(wrapper: Vec<String>) -> Options {
    Options {
        tls: false,
        heartbeat: "15s",
        wrapper,
        bin: None,
        failover: false,
    }
}

/// Sends SIGINT (strace and perf then write their results) and waits.
fn interrupt(mut child: Child) {
    // SAFETY: kill(2) on a process this run started.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let _ = child.wait();
}

/// `e2e-bench massif-summary --file MASSIF_OUT --streams N`: the summary
/// `profile` writes, for a massif file made by hand.
pub fn massif_summary(args: &[String]) -> Result<(), String> {
    let a = Args::parse(args, &[])?;
    let text = command_output("ms_print", &[a.req("file")?]);
    println!("{}", peak_tree(&text, a.num("streams", 1)?).join("\n"));
    Ok(())
}

pub fn main(args: &[String]) -> Result<(), String> {
    let a = Args::parse(args, &[])?;
    let abs = |p: &str| std::path::absolute(p).map_err(|e| format!("{p}: {e}"));
    let work = abs(a.req("work")?)?;
    let out = abs(a.req("out")?)?;
    let proxy_cpu: usize = a.num("proxy-cpu", 0)?;
    let load_cpu: usize = a.num("load-cpu", 1)?;
    let port_base: u16 = a.num("port-base", 18100)?;
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    pin_to_cpu(load_cpu).map_err(|e| e.to_string())?;
    let env = Env {
        work: work.clone(),
        sse_edge: abs(a.req("sse-edge")?)?,
        cert: PathBuf::new(),
        key: PathBuf::new(),
        proxy_cpu,
        upstream: ([127, 0, 0, 1], port_base).into(),
        port_base,
    };
    // massif sees the heap only through the system allocator's malloc: it
    // profiles a build without jemalloc (`--no-default-features`).
    let massif_bin = a.opt("sse-edge-system").map(abs).transpose()?;
    let command = a
        .opt("command")
        .unwrap_or("bash benches/e2e/profile.sh")
        .to_string();
    let mut up = crate::orchestrate::spawn_upstream(&env, load_cpu)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let md = rt.block_on(async {
        while tokio::net::TcpStream::connect(env.upstream).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut md = String::new();
        let _ = writeln!(
            md,
            "Generated by `{command}` on {} for sse-edge sha256 {}; the next run rewrites everything between the `profile` markers. Same pinning as the end-to-end run; {STREAMS} streams of {EVENTS} events over 32 clients, or 2 s of small JSON requests at c=1, per measurement.\n",
            command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            command_output("sha256sum", &[&env.sse_edge.display().to_string()])
                .get(..16)
                .unwrap_or("?")
        );
        syscalls(&env, &mut md).await;
        perf(&env, &mut md).await;
        callgrind(&env, &mut md).await;
        massif(&env, massif_bin, &mut md).await;
        md
    });
    let _ = up.kill();
    let _ = up.wait();
    std::fs::write(&out, md).map_err(|e| format!("{}: {e}", out.display()))?;
    println!("profile written to {}", out.display());
    Ok(())
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// `strace -c` table: (syscall, calls), the total first.
fn parse_strace(text: &str) -> Vec<(String, u64)> {
    let mut rows = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 || f[0].parse::<f64>().is_err() {
            continue;
        }
        if let (Ok(calls), Some(name)) = (f[3].parse::<u64>(), f.last()) {
            rows.push((name.to_string(), calls));
        }
    }
    rows.sort_by(|a, b| (b.0 == "total").cmp(&(a.0 == "total")).then(b.1.cmp(&a.1)));
    rows
}

/// Groups of syscall tracepoints counted by `perf stat`: (label, events).
const SYSCALL_GROUPS: [(&str, &[&str]); 4] = [
    ("writes", &["write", "writev", "sendto", "sendmsg"]),
    ("reads", &["read", "readv", "recvfrom", "recvmsg"]),
    (
        "epoll waits",
        &["epoll_wait", "epoll_pwait", "epoll_pwait2"],
    ),
    ("futex", &["futex"]),
];

fn perf_tracepoints_work() -> bool {
    matches!(
        Command::new("perf")
            .args(["stat", "-e", "raw_syscalls:sys_enter", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status(),
        Ok(s) if s.success()
    )
}

async fn syscalls(env: &Env, md: &mut String) {
    md.push_str("#### System calls and context switches per relayed event / request\n\n");
    let use_perf = perf_tracepoints_work();
    if !use_perf && !have("strace") {
        md.push_str("Neither perf tracepoints nor strace are available: skipped.\n\n");
        return;
    }
    if use_perf {
        md.push_str("`perf stat -e raw_syscalls:sys_enter,syscalls:sys_enter_<name>,...,context-switches -p PID` (tracepoint counters, which do not slow the proxy down the way strace does) for the measured window only; nginx: its worker.\n\n");
        md.push_str("| proxy | workload | syscalls | writes | reads | epoll waits | futex | context switches |\n|---|---|---:|---:|---:|---:|---:|---:|\n");
    } else {
        md.push_str("`strace -c -f -p PID` attached for the measured window only (perf tracepoints are not available; strace slows the proxy down, so reads batch more than they would).\n\n");
        md.push_str("| proxy | workload | syscalls per unit | the largest (per unit) |\n|---|---|---:|---|\n");
    }
    let streams = [Work::Paced, Work::Burst, Work::Json];
    let jobs: [(Kind, &'static str, &[Work]); 4] = [
        (Kind::SseEdge, "15s", &streams),
        (Kind::SseEdge, "1s", &[Work::Heartbeat]),
        (Kind::Nginx, "15s", &streams),
        (Kind::Haproxy, "15s", &streams),
    ];
    for (kind, heartbeat, works) in jobs {
        let o = Options {
            heartbeat,
            ..opts(Vec::new())
        };
        let Ok(p) = procs::start(env, kind, &o).await else {
            let _ = writeln!(md, "| {} | could not start | | |", kind.name());
            continue;
        };
        let ep = Endpoint::plain(p.addr);
        warm(&ep).await;
        for &w in works {
            let idle = prepare(&ep, w).await;
            let file = env
                .work
                .join(format!("syscalls-{}-{}.txt", kind.name(), w.unit()));
            let _ = std::fs::remove_file(&file);
            let child = if use_perf {
                let mut events = vec![
                    "raw_syscalls:sys_enter".to_string(),
                    "context-switches".to_string(),
                ];
                for (_, names) in SYSCALL_GROUPS {
                    events.extend(names.iter().map(|n| format!("syscalls:sys_enter_{n}")));
                }
                Command::new("perf")
                    .args([
                        "stat",
                        "-x",
                        ",",
                        "-e",
                        &events.join(","),
                        "-p",
                        &p.pid.to_string(),
                        "-o",
                    ])
                    .arg(&file)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
            } else {
                Command::new("strace")
                    .args(["-c", "-f", "-p", &p.pid.to_string(), "-o"])
                    .arg(&file)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
            };
            let Ok(child) = child else { continue };
            tokio::time::sleep(Duration::from_millis(500)).await;
            let units = workload(&ep, w, idle.as_ref()).await;
            interrupt(child);
            release(env, idle).await;
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let per = |c: u64| c as f64 / units.max(1) as f64;
            let label = format!("{} ({units} {}s)", w.name(), w.unit());
            if use_perf {
                let count = |ev: &str| -> u64 {
                    text.lines()
                        .filter_map(|l| {
                            let f: Vec<&str> = l.split(',').collect();
                            (f.len() > 2 && f[2] == ev).then(|| f[0].parse::<u64>().unwrap_or(0))
                        })
                        .sum()
                };
                let groups: Vec<String> = SYSCALL_GROUPS
                    .iter()
                    .map(|(_, names)| {
                        let c: u64 = names
                            .iter()
                            .map(|n| count(&format!("syscalls:sys_enter_{n}")))
                            .sum();
                        format!("{:.2}", per(c))
                    })
                    .collect();
                let _ = writeln!(
                    md,
                    "| {} | {label} | {:.2} | {} | {:.2} |",
                    kind.name(),
                    per(count("raw_syscalls:sys_enter")),
                    groups.join(" | "),
                    per(count("context-switches"))
                );
            } else {
                let rows = parse_strace(&text);
                let total = rows.iter().find(|r| r.0 == "total").map_or(0, |r| r.1);
                let top: Vec<String> = rows
                    .iter()
                    .filter(|r| r.0 != "total")
                    .take(4)
                    .map(|(n, c)| format!("{n} {:.2}", per(*c)))
                    .collect();
                let _ = writeln!(
                    md,
                    "| {} | {label} | {:.2} | {} |",
                    kind.name(),
                    per(total),
                    top.join(", ")
                );
            }
        }
        p.stop().await;
    }
    md.push_str("\nColumns after the workload are per relayed event (token streams), per request (JSON) or per injected keepalive (heartbeats).\n\n");
}

async fn perf(env: &Env, md: &mut String) {
    md.push_str("#### perf: user space against kernel, and sse-edge's hottest symbols\n\n");
    let probe = Command::new("perf")
        .args(["stat", "-e", "cpu-clock", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !matches!(probe, Ok(s) if s.success()) {
        md.push_str("perf is not available or not permitted here: skipped.\n\n");
        return;
    }
    md.push_str("`perf record -e cpu-clock -F 4999 -g -p PID` for the measured window; `perf report --no-children --sort dso` (share of the proxy's samples per binary/library).\n\n");
    md.push_str("| proxy | workload | samples | share by DSO |\n|---|---|---:|---|\n");
    let mut sse_reports = Vec::new();
    for kind in [Kind::SseEdge, Kind::Nginx, Kind::Haproxy] {
        let Ok(p) = procs::start(env, kind, &opts(Vec::new())).await else {
            continue;
        };
        let ep = Endpoint::plain(p.addr);
        warm(&ep).await;
        for w in [Work::Burst, Work::Json] {
            let data = env
                .work
                .join(format!("perf-{}-{}.data", kind.name(), w.unit()));
            let Ok(rec) = Command::new("perf")
                .args([
                    "record",
                    "-q",
                    "-e",
                    "cpu-clock",
                    "-F",
                    "4999",
                    "-g",
                    "-p",
                    &p.pid.to_string(),
                    "-o",
                ])
                .arg(&data)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
            else {
                continue;
            };
            tokio::time::sleep(Duration::from_millis(500)).await;
            workload(&ep, w, None).await;
            interrupt(rec);
            let report = |sort: &str| {
                command_output(
                    "perf",
                    &[
                        "report",
                        "-i",
                        &data.display().to_string(),
                        "--no-children",
                        "--sort",
                        sort,
                        "-g",
                        "none",
                        "--stdio",
                        "--percent-limit",
                        "2",
                    ],
                )
            };
            let dso = report("dso");
            let samples = dso
                .lines()
                .find(|l| l.starts_with("# Samples:"))
                .and_then(|l| l.split_whitespace().nth(2))
                .unwrap_or("?")
                .to_string();
            let shares: Vec<String> = dso
                .lines()
                .filter(|l| !l.starts_with('#') && l.contains('%'))
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .take(5)
                .collect();
            let _ = writeln!(
                md,
                "| {} | {} | {samples} | {} |",
                kind.name(),
                w.name(),
                shares.join("; ")
            );
            if kind == Kind::SseEdge {
                let sym = command_output(
                    "perf",
                    &[
                        "report",
                        "-i",
                        &data.display().to_string(),
                        "--no-children",
                        "--sort",
                        "dso,sym",
                        "-g",
                        "none",
                        "--stdio",
                        "--percent-limit",
                        "0.7",
                    ],
                );
                let lines: Vec<String> = sym
                    .lines()
                    .filter(|l| !l.starts_with('#') && l.contains('%'))
                    .map(|l| trim_symbol(l.trim_end(), 150))
                    .take(30)
                    .collect();
                sse_reports.push((w, lines));
            }
        }
        p.stop().await;
    }
    for (w, lines) in sse_reports {
        let _ = writeln!(
            md,
            "\nsse-edge, {}: `perf report --no-children --sort dso,sym` (self time, ≥ 0.7 %)\n\n```text\n{}\n```",
            w.name(),
            lines.join("\n")
        );
    }
    md.push('\n');
}

fn trim_symbol(line: &str, max: usize) -> String {
    if line.chars().count() <= max {
        line.to_string()
    } else {
        let cut: String = line.chars().take(max).collect();
        format!("{cut}…")
    }
}

fn valgrind_ok() -> bool {
    have("valgrind") && have("callgrind_annotate")
}

async fn callgrind(env: &Env, md: &mut String) {
    md.push_str("#### callgrind: sse-edge's instructions by function\n\n");
    if !valgrind_ok() {
        md.push_str("valgrind is not installed: skipped.\n\n");
        return;
    }
    for w in [Work::Paced, Work::Json, Work::Heartbeat] {
        let file = env.work.join(format!("callgrind-{}.out", w.unit()));
        let _ = std::fs::remove_file(&file);
        let wrapper = vec![
            "valgrind".to_string(),
            "--tool=callgrind".into(),
            "--instr-atstart=no".into(),
            format!("--callgrind-out-file={}", file.display()),
        ];
        let o = Options {
            heartbeat: if w == Work::Heartbeat { "1s" } else { "15s" },
            ..opts(wrapper)
        };
        let Ok(p) = procs::start(env, Kind::SseEdge, &o).await else {
            md.push_str("sse-edge did not start under callgrind: skipped.\n\n");
            return;
        };
        let ep = Endpoint::plain(p.addr);
        warm(&ep).await;
        let idle = prepare(&ep, w).await;
        let pid = p.pid.to_string();
        command_output("callgrind_control", &["-i", "on", &pid]);
        let units = workload(&ep, w, idle.as_ref()).await;
        command_output("callgrind_control", &["-i", "off", &pid]);
        release(env, idle).await;
        p.stop_within(Duration::from_secs(60)).await;
        let text = command_output(
            "callgrind_annotate",
            &[
                "--inclusive=no",
                "--threshold=95",
                &file.display().to_string(),
            ],
        );
        let total = text
            .lines()
            .find(|l| l.contains("PROGRAM TOTALS"))
            .and_then(|l| l.split_whitespace().next())
            .map(|v| v.replace(',', ""))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN);
        let funcs: Vec<String> = text
            .lines()
            .skip_while(|l| !l.contains("file:function"))
            .skip(2)
            .filter(|l| !l.trim().is_empty())
            .take(25)
            .map(|l| trim_symbol(&short_paths(l.trim_end()), 170))
            .collect();
        let incl = command_output(
            "callgrind_annotate",
            &[
                "--inclusive=yes",
                "--threshold=99",
                &file.display().to_string(),
            ],
        );
        let own: Vec<String> = incl
            .lines()
            .skip_while(|l| !l.contains("file:function"))
            .skip(2)
            .filter_map(|l| {
                // "<cost> (<pct>)  <file>:<function> [<object>]": keep cost and function.
                let (cost, rest) = l.trim().split_once("  ")?;
                let func = rest.trim().split_once(':')?.1;
                let func = func.split(" [").next().unwrap_or(func).trim();
                // Call-count lines repeat the function with " (<n>x)".
                let func = match func.rsplit_once(" (") {
                    Some((f, n)) if n.ends_with("x)") => f,
                    _ => func,
                };
                Some((cost.to_string(), func.to_string()))
            })
            .filter(|(_, f)| {
                f.starts_with("sse_edge::")
                    && f != "sse_edge::main"
                    && !f.contains("Server::serve")
                    && !f.contains("ResponseBody as http_body")
            })
            .fold(Vec::<(String, String)>::new(), |mut acc, (c, f)| {
                if !acc.iter().any(|(_, g)| *g == f) {
                    acc.push((c, f));
                }
                acc
            })
            .into_iter()
            .take(15)
            .map(|(c, f)| trim_symbol(&format!("{c:>22}  {f}"), 170))
            .collect();
        let _ = writeln!(
            md,
            "{}: {units} {}s, {:.0} instructions per {} (user space, whole process). `callgrind_annotate --inclusive=no` top 25:\n\n```text\n{}\n```\n",
            w.name(),
            w.unit(),
            total / units.max(1) as f64,
            w.unit(),
            funcs.join("\n")
        );
        let _ = writeln!(
            md,
            "{}, inclusive cost of sse-edge's own functions (`callgrind_annotate --inclusive=yes`, top 15):\n\n```text\n{}\n```\n",
            w.name(),
            own.join("\n")
        );
    }
}

/// Shortens cargo registry and toolchain paths in annotate output.
fn short_paths(line: &str) -> String {
    let mut s = line.to_string();
    for (from, to) in [
        (
            "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/",
            "crates/",
        ),
        ("/rustc/", "rustc/"),
    ] {
        s = s.replace(from, to);
    }
    s
}

async fn massif(env: &Env, bin: Option<PathBuf>, md: &mut String) {
    md.push_str("#### massif: sse-edge's heap while holding idle streams\n\n");
    if !have("valgrind") || !have("ms_print") {
        md.push_str("valgrind is not installed: skipped.\n\n");
        return;
    }
    let Some(bin) = bin else {
        md.push_str("no system-allocator build of sse-edge (`--sse-edge-system`; massif does not see jemalloc's heap): skipped.\n\n");
        return;
    };
    const IDLE: u64 = 2000;
    let file = env.work.join("massif-idle.out");
    let _ = std::fs::remove_file(&file);
    let wrapper = vec![
        "valgrind".to_string(),
        "--tool=massif".into(),
        "--threshold=2".into(),
        "--detailed-freq=1".into(),
        "--max-snapshots=40".into(),
        format!("--massif-out-file={}", file.display()),
    ];
    let o = Options {
        bin: Some(bin),
        ..opts(wrapper)
    };
    let Ok(p) = procs::start(env, Kind::SseEdge, &o).await else {
        md.push_str("sse-edge did not start under massif: skipped.\n\n");
        return;
    };
    let ep = Endpoint::plain(p.addr);
    warm(&ep).await;
    let set = client::open_idle(&ep, IDLE, 100);
    for _ in 0..600 {
        if set.opened.load(Ordering::Relaxed) + set.failed.load(Ordering::Relaxed) >= IDLE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let opened = set.opened.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The peak is with every stream open: end them by stopping the relay.
    p.stop_within(Duration::from_secs(60)).await;
    set.abort();
    let text = command_output("ms_print", &[&file.display().to_string()]);
    let peak = peak_tree(&text, opened);
    let _ = writeln!(
        md,
        "{opened} idle streams open (heartbeat 15 s), in the build with the system allocator (`--no-default-features`: massif sees only malloc's heap; the bytes asked for are the same under jemalloc). Peak snapshot of `valgrind --tool=massif --threshold=2`: each allocation site of at least 2 % of the heap, its bytes per open stream, and its first callers outside the standard library:\n\n```text\n{}\n```\n",
        peak.join("\n")
    );
}

/// The detailed snapshot with the most heap, each top-level allocation
/// site summarised as its share, bytes per stream and its first three
/// callers outside the standard library.
fn peak_tree(text: &str, streams: u64) -> Vec<String> {
    // A detailed snapshot's tree starts with
    // "<pct>% (<bytes>B) (heap allocation functions)" and lists callers
    // depth first, the largest first, two columns of indentation per level.
    let bytes_of = |l: &str| -> u64 {
        l.split('(')
            .nth(1)
            .and_then(|b| b.split('B').next())
            .map(|b| b.replace(',', ""))
            .and_then(|b| b.parse().ok())
            .unwrap_or(0)
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut best: (u64, usize, usize) = (0, 0, 0);
    let mut i = 0;
    while i < lines.len() {
        if lines[i].contains("(heap allocation functions)") {
            let mut j = i + 1;
            while j < lines.len() && !lines[j].trim().is_empty() && !lines[j].starts_with("---") {
                j += 1;
            }
            let b = bytes_of(lines[i]);
            if b >= best.0 {
                best = (b, i, j);
            }
            i = j;
        } else {
            i += 1;
        }
    }
    let (total, start, end) = best;
    if total == 0 {
        return vec!["(no detailed snapshot found)".into()];
    }
    let tree: Vec<(usize, &str)> = lines[start + 1..end]
        .iter()
        .filter_map(|l| l.find("->").map(|d| (d / 2, &l[d + 2..])))
        .collect();
    let per = streams.max(1);
    let mut out = vec![format!(
        "heap at the peak: {} bytes, {} bytes per open stream",
        total,
        total / per
    )];
    for (k, &(depth, node)) in tree.iter().enumerate() {
        if depth != 0 {
            continue;
        }
        let head: String = node
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        if node.contains("below massif's threshold") {
            out.push(format!("{head} in sites below the threshold"));
            continue;
        }
        // Follow the first-child chain down from this site.
        let mut frames = Vec::new();
        let mut d = 0;
        for &(dd, f) in &tree[k + 1..] {
            if dd != d + 1 {
                break;
            }
            d = dd;
            let f = f.split_once(": ").map_or(f, |(_, r)| r).trim();
            if f.contains("library/") || f.starts_with("UnknownInlinedFun") || f.starts_with('{') {
                continue;
            }
            frames.push(trim_symbol(&short_paths(f), 110));
            if frames.len() == 3 {
                break;
            }
        }
        out.push(format!(
            "{head} = {} B/stream: {}",
            bytes_of(node) / per,
            frames.join("  <-  ")
        ));
    }
    out
}
