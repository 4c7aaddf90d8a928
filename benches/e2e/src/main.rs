//! `e2e-bench`: the end-to-end benchmark of sse-edge against nginx and
//! HAProxy. `benches/e2e/run.sh` drives it; see BENCHMARKS.md.
//!
//! - `e2e-bench run ...`: the whole benchmark (starts the upstream and the
//!   proxies itself) and the report; with `--variants NAME=PATH,...`, builds
//!   of sse-edge against each other instead (`benches/e2e/alloc.sh`).
//! - `e2e-bench upstream --listen ADDR`: the mock model upstream alone.
//! - `e2e-bench load --addr ADDR --workload W ...`: one workload against an
//!   address that is already serving (used by `profile.sh`).
//! - `e2e-bench profile ...`: strace, perf, callgrind and massif of the
//!   proxies (used by `profile.sh`).
//! - `e2e-bench splice --file F --block NAME --from G`: put a generated
//!   block into BENCHMARKS.md between its markers.

mod client;
mod failover;
mod memory;
mod orchestrate;
mod plan;
mod procs;
mod profile;
mod prompt;
mod report;
mod resumes;
mod upstream;
mod util;
mod variants;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use util::{Args, percentile};

const USAGE: &str =
    "usage: e2e-bench run|upstream|load|profile|splice [--options]  (see benches/e2e/run.sh)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or(&[]);
    let r = match args.first().map(String::as_str) {
        Some("run") => orchestrate::main(rest),
        Some("upstream") => upstream::main(rest),
        Some("load") => load(rest),
        Some("splice") => report::splice_main(rest),
        Some("profile") => profile::main(rest),
        Some("massif-summary") => profile::massif_summary(rest),
        _ => Err(USAGE.to_string()),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("e2e-bench: {e}");
            ExitCode::from(2)
        }
    }
}

/// `e2e-bench load --addr ADDR --workload stream|json|json-waves|prompt|idle|handshake|upload [--streams N]
/// [--events N] [--interval-us N] [--clients N] [--secs S] [--wave-ms N] [--kb N] [--content-type T] [--mib N] [--uploads N]
/// [--tls] [--cpu N]`
fn load(args: &[String]) -> Result<(), String> {
    let a = Args::parse(args, &["tls"])?;
    if let Some(cpu) = a.opt("cpu") {
        util::pin_to_cpu(cpu.parse().map_err(|_| "--cpu")?).map_err(|e| e.to_string())?;
    }
    let addr: SocketAddr = a.req("addr")?.parse().map_err(|e| format!("--addr: {e}"))?;
    let ep = client::Endpoint {
        addr,
        tls: a.flag("tls").then(|| client::tls_client(true)),
    };
    let clients: usize = a.num("clients", 32)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    rt.block_on(async {
        match a.req("workload")? {
            "stream" => {
                let mut st = client::streams(
                    &ep,
                    clients,
                    a.num("streams", 320)?,
                    a.num("events", 300)?,
                    a.num("interval-us", 1000)?,
                    true,
                )
                .await;
                st.lat_ns.sort_unstable();
                println!(
                    "streams {} failed {} events {} in {:.2} s; latency p50 {:.1} us p99 {:.1} us",
                    st.streams,
                    st.failed,
                    st.events,
                    st.wall.as_secs_f64(),
                    percentile(&st.lat_ns, 50.0) / 1e3,
                    percentile(&st.lat_ns, 99.0) / 1e3
                );
            }
            w @ ("json" | "json-waves") => {
                let d = Duration::from_secs_f64(a.num("secs", 3.0)?);
                let mut st = if w == "json" {
                    client::json_closed(&ep, clients, d).await
                } else {
                    let period = Duration::from_millis(a.num("wave-ms", 5)?);
                    client::json_waves(&ep, clients, period, d).await
                };
                st.lat_ns.sort_unstable();
                println!(
                    "requests {} failed {} in {:.2} s; p50 {:.1} us p99 {:.1} us",
                    st.ok,
                    st.failed,
                    st.wall.as_secs_f64(),
                    percentile(&st.lat_ns, 50.0) / 1e3,
                    percentile(&st.lat_ns, 99.0) / 1e3
                );
            }
            "prompt" => {
                let d = Duration::from_secs_f64(a.num("secs", 3.0)?);
                let body = prompt::body(a.num::<usize>("kb", 200)? * 1000);
                let kind = a.opt("content-type").unwrap_or("application/json");
                // Kept for the process's life, like the rest of the arguments.
                let kind: prompt::ContentType = Box::leak(kind.to_string().into_boxed_str());
                let mut st = prompt::closed(&ep, clients, d, body, kind).await;
                st.lat_ns.sort_unstable();
                println!(
                    "requests {} failed {} in {:.2} s; to first event p50 {:.1} us p99 {:.1} us",
                    st.ok,
                    st.failed,
                    st.wall.as_secs_f64(),
                    percentile(&st.lat_ns, 50.0) / 1e3,
                    percentile(&st.lat_ns, 99.0) / 1e3
                );
            }
            "handshake" => {
                let d = Duration::from_secs_f64(a.num("secs", 3.0)?);
                let ep = client::Endpoint {
                    addr,
                    tls: Some(client::tls_client(false)),
                };
                let mut st = client::handshakes(&ep, clients, d).await;
                st.lat_ns.sort_unstable();
                let mean = st.lat_ns.iter().map(|&x| x as f64).sum::<f64>() / st.lat_ns.len().max(1) as f64;
                println!(
                    "handshakes {} failed {} in {:.2} s; p50 {:.1} us p99 {:.1} us mean {:.1} us max {:.1} us",
                    st.ok,
                    st.failed,
                    st.wall.as_secs_f64(),
                    percentile(&st.lat_ns, 50.0) / 1e3,
                    percentile(&st.lat_ns, 99.0) / 1e3,
                    mean / 1e3,
                    percentile(&st.lat_ns, 100.0) / 1e3
                );
            }
            "resume" => {
                let then = match a.opt("resume-addr") {
                    Some(v) => client::Endpoint::plain(v.parse().map_err(|e| format!("--resume-addr: {e}"))?),
                    None => ep.clone(),
                };
                let mut st = resumes::resumes(
                    &ep,
                    &then,
                    clients,
                    a.num("streams", 320)?,
                    a.num("events", 300)?,
                    a.num("interval-us", 1000)?,
                    a.num("cut-after", 10)?,
                )
                .await;
                st.reconnect_ns.sort_unstable();
                println!(
                    "streams {} failed {} events {} in {:.2} s; reconnect p50 {:.1} us p99 {:.1} us",
                    st.streams,
                    st.failed,
                    st.events,
                    st.wall.as_secs_f64(),
                    percentile(&st.reconnect_ns, 50.0) / 1e3,
                    percentile(&st.reconnect_ns, 99.0) / 1e3
                );
                if let Some(e) = st.first_error {
                    eprintln!("first failure: {e}");
                }
            }
            "idle" => {
                let n: u64 = a.num("streams", 1000)?;
                let set = client::open_idle(&ep, n, 200);
                let secs: f64 = a.num("secs", 5.0)?;
                tokio::time::sleep(Duration::from_secs_f64(secs)).await;
                println!(
                    "opened {} failed {} keepalives {}",
                    set.opened.load(std::sync::atomic::Ordering::Relaxed),
                    set.failed.load(std::sync::atomic::Ordering::Relaxed),
                    set.keepalives.load(std::sync::atomic::Ordering::Relaxed)
                );
                set.abort();
            }
            "upload" => {
                let body = memory::upload_body(a.num::<usize>("mib", 30)? << 20);
                let n: u32 = a.num("uploads", 1)?;
                for i in 0..n {
                    let t = Instant::now();
                    let r = memory::upload(&ep, body.clone()).await;
                    println!(
                        "upload {} of {n}: {} bytes in {:.2} s: {}",
                        i + 1,
                        body.len(),
                        t.elapsed().as_secs_f64(),
                        r.as_ref().map_or_else(String::as_str, |()| "ok")
                    );
                }
            }
            w => return Err(format!("unknown workload {w:?}")),
        }
        Ok::<(), String>(())
    })?;
    eprintln!("load done in {:.1} s", t0.elapsed().as_secs_f64());
    Ok(())
}
