//! `e2e-bench run`: starts the mock upstream, then runs every scenario
//! against every target in interleaved rounds (round-major; the order of
//! the targets rotates each round), one fresh proxy process per
//! measurement, and writes the report.
//!
//! The targets are sse-edge, nginx and HAProxy (and the upstream directly,
//! as a baseline), or, with `--variants NAME=PATH,...`, builds of sse-edge
//! side by side (an allocator comparison, say), reported against the first.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::client::{self, Endpoint};
use crate::memory::{self, CloseWait};
pub use crate::plan::{ALL, Scn, Sizes, Target};
use crate::procs::{self, Env, Options, Proxy};
use crate::report::{self, Cell, Meta};
use crate::util::{
    Args, clk_tck, cpu_split, cpu_ticks, cpu_times, fd_count, percentile, pin_to_cpu, rss_kib,
    sched_ns,
};

pub struct Ctx {
    pub env: Env,
    pub sizes: Sizes,
    upstream_pid: u32,
    tck: f64,
    load_cpu: usize,
    /// Seconds left to wait, over the whole run, for other load to pass.
    quiet_budget: std::cell::Cell<f64>,
}

/// Before a measurement, waits (up to 30 s, within the run's budget) until
/// the rest of the machine uses less than 0.15 of a core: other people's
/// builds on a shared 2-core machine would otherwise land in the numbers.
/// Returns the seconds waited.
async fn wait_quiet(ctx: &Ctx) -> f64 {
    let start = Instant::now();
    loop {
        let a = snap(ctx, None);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let b = snap(ctx, None);
        let wall = (b.t - a.t).as_secs_f64();
        let busy: u64 = (0..b.cpus.len()).map(|c| cpu_delta(&a, &b, c).0).sum();
        let ours = (b.me - a.me) + (b.up - a.up);
        let other = busy.saturating_sub(ours) as f64 / ctx.tck / wall;
        let waited = start.elapsed().as_secs_f64();
        if other < 0.15 || waited >= 30.0 || waited >= ctx.quiet_budget.get() {
            ctx.quiet_budget
                .set((ctx.quiet_budget.get() - waited).max(0.0));
            return waited;
        }
    }
}

/// CPU ticks of the proxy, of this process and of the upstream, at one instant.
pub struct Snap {
    t: Instant,
    proxy: u64,
    /// The kernel's part of `proxy`.
    proxy_sys: u64,
    /// The proxy's CPU time as the scheduler accounts it, in ns.
    proxy_ns: u64,
    me: u64,
    up: u64,
    cpus: Vec<(u64, u64)>,
}

pub fn snap(ctx: &Ctx, proxy: Option<u32>) -> Snap {
    let (user, sys) = proxy.and_then(|p| cpu_split(p).ok()).unwrap_or_default();
    Snap {
        t: Instant::now(),
        proxy: user + sys,
        proxy_sys: sys,
        proxy_ns: proxy.map_or(0, sched_ns),
        me: cpu_ticks(std::process::id()).unwrap_or(0),
        up: cpu_ticks(ctx.upstream_pid).unwrap_or(0),
        cpus: cpu_times(),
    }
}

fn cpu_delta(a: &Snap, b: &Snap, cpu: usize) -> (u64, u64) {
    let (x, y) = (
        a.cpus.get(cpu).copied().unwrap_or_default(),
        b.cpus.get(cpu).copied().unwrap_or_default(),
    );
    (y.0.saturating_sub(x.0), y.1.saturating_sub(x.1))
}

/// Wall time, proxy CPU seconds and both cores' utilisation between two snapshots.
pub fn common(ctx: &Ctx, a: &Snap, b: &Snap, m: &mut BTreeMap<&'static str, f64>) -> (f64, f64) {
    let wall = (b.t - a.t).as_secs_f64();
    let cpu = (b.proxy - a.proxy) as f64 / ctx.tck;
    let load = ((b.me - a.me) + (b.up - a.up)) as f64 / ctx.tck;
    m.insert("wall_s", wall);
    m.insert("proxy_cpu_s", cpu);
    m.insert("proxy_sys_s", (b.proxy_sys - a.proxy_sys) as f64 / ctx.tck);
    m.insert(
        "proxy_sched_s",
        b.proxy_ns.saturating_sub(a.proxy_ns) as f64 / 1e9,
    );
    m.insert("proxy_core_util", cpu / wall);
    m.insert("load_core_util", load / wall);
    // Whatever else ran on each core meanwhile (other users of the machine),
    // and what the hypervisor stole from it.
    let (p_busy, p_steal) = cpu_delta(a, b, ctx.env.proxy_cpu);
    let (l_busy, l_steal) = cpu_delta(a, b, ctx.load_cpu);
    let p_other = p_busy.saturating_sub(b.proxy - a.proxy) as f64 / ctx.tck;
    let l_other = l_busy.saturating_sub((b.me - a.me) + (b.up - a.up)) as f64 / ctx.tck;
    m.insert("other_load_proxy_core", p_other / wall);
    m.insert("other_load_load_core", l_other / wall);
    m.insert("steal_proxy_core", p_steal as f64 / ctx.tck / wall);
    m.insert("steal_load_core", l_steal as f64 / ctx.tck / wall);
    (wall, cpu)
}

fn lat_metrics(lat: &mut [u32], m: &mut BTreeMap<&'static str, f64>) {
    lat.sort_unstable();
    m.insert("lat_p50_us", percentile(lat, 50.0) / 1000.0);
    m.insert("lat_p99_us", percentile(lat, 99.0) / 1000.0);
}

pub fn main(args: &[String]) -> Result<(), String> {
    let a = Args::parse(args, &["quick"])?;
    let quick = a.flag("quick");
    let mut sizes = if quick { Sizes::quick() } else { Sizes::full() };
    sizes.rounds = a.num("rounds", sizes.rounds)?;
    sizes.upload_mib = a.num("upload-mib", sizes.upload_mib)?;
    sizes.prompt_kib = a.num("prompt-kb", sizes.prompt_kib)?;
    if let Some(w) = a.opt("close-waits") {
        sizes.close_waits = CloseWait::list(w)?;
    }
    let variants = Target::variants(a.opt("variants").unwrap_or(""))?;
    let floor = a.opt("hyper-floor").map(Target::floor).transpose()?;
    let proxy_cpu: usize = a.num("proxy-cpu", 0)?;
    let load_cpu: usize = a.num("load-cpu", 1)?;
    let port_base: u16 = a.num("port-base", 18000)?;
    let abs = |p: &str| -> Result<PathBuf, String> {
        std::path::absolute(p).map_err(|e| format!("{p}: {e}"))
    };
    let work = abs(a.req("work")?)?;
    let out = PathBuf::from(a.req("out")?);
    let only: Option<Vec<String>> = a
        .opt("only")
        .map(|s| s.split(',').map(str::to_string).collect());
    let scenarios: Vec<Scn> = ALL
        .into_iter()
        .filter(|s| only.as_ref().is_none_or(|o| o.iter().any(|x| x == s.id())))
        .collect();
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let upstream: SocketAddr = ([127, 0, 0, 1], port_base).into();
    let env = Env {
        work: work.clone(),
        sse_edge: abs(a.req("sse-edge")?)?,
        cert: abs(a.req("cert")?)?,
        key: abs(a.req("key")?)?,
        proxy_cpu,
        upstream,
        port_base,
    };
    let meta = Meta::collect(
        &env,
        a.opt("command").unwrap_or("bash benches/e2e/run.sh"),
        quick,
        &sizes,
        load_cpu,
    );
    // Pinned only now: `nproc` in the metadata above respects the affinity mask.
    pin_to_cpu(load_cpu).map_err(|e| format!("pinning to CPU {load_cpu}: {e}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let mut up = spawn_upstream(&env, load_cpu)?;
    let ctx = Ctx {
        env,
        sizes,
        upstream_pid: up.id(),
        tck: clk_tck(),
        load_cpu,
        quiet_budget: std::cell::Cell::new(
            a.num("quiet-budget", if quick { 30.0 } else { 150.0 })?,
        ),
    };
    let started = Instant::now();
    let cells = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(upstream).await.is_err() {
            if Instant::now() > deadline {
                return Err("the mock upstream did not start".to_string());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut cells = Vec::new();
        for round in 0..ctx.sizes.rounds {
            for &scn in &scenarios {
                let mut targets = scn.targets(&variants, floor.as_ref());
                let n = targets.len();
                targets.rotate_left(round % n);
                for t in targets {
                    let cell = run_cell(&ctx, scn, t, round).await;
                    print_cell(&cell);
                    cells.push(cell);
                }
            }
        }
        Ok(cells)
    });
    let _ = up.kill();
    let _ = up.wait();
    let cells = cells?;
    let elapsed = started.elapsed();
    std::fs::write(work.join("cells.tsv"), report::tsv(&cells)).map_err(|e| e.to_string())?;
    let md = if variants.is_empty() {
        report::markdown(&meta, &ctx.sizes, &cells, elapsed)
    } else {
        crate::variants::markdown(&meta, &ctx.sizes, &variants, &cells, elapsed)
    };
    std::fs::write(&out, &md).map_err(|e| format!("{}: {e}", out.display()))?;
    if variants.is_empty() {
        println!("\n{}", report::summary_table(&cells, &ctx.sizes));
    } else {
        println!(
            "\n{}",
            crate::variants::table(&ctx.sizes, &variants, &cells)
        );
    }
    println!(
        "report written to {} ({:.0} s)",
        out.display(),
        elapsed.as_secs_f64()
    );
    Ok(())
}

pub fn spawn_upstream(env: &Env, cpu: usize) -> Result<Child, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    std::fs::create_dir_all(env.work.join("logs")).map_err(|e| e.to_string())?;
    let err =
        std::fs::File::create(env.work.join("logs/upstream.err")).map_err(|e| e.to_string())?;
    Command::new("taskset")
        .arg("-c")
        .arg(cpu.to_string())
        .arg(exe)
        .arg("upstream")
        .arg("--listen")
        .arg(env.upstream.to_string())
        .arg("--flaky")
        .arg(env.flaky().to_string())
        .arg("--switchable")
        .arg(env.switchable().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .map_err(|e| format!("starting the upstream: {e}"))
}

fn print_cell(c: &Cell) {
    let keys = [
        "cpu_us_per_event",
        "cpu_ms_per_stream",
        "events_per_s",
        "lat_p50_us",
        "cpu_us_per_req",
        "req_per_s",
        "p50_us",
        "p99_us",
        "ttfe_p50_us",
        "kib_per_stream",
        "peak_above_kib",
        "cpu_us_per_keepalive",
        "hs_per_s",
        "cpu_us_per_hs",
        "healthy_p50_us",
        "f503_added_p50_us",
        "since503_p50_us",
        "refused_added_p50_us",
        "not_failed_over",
        "proxy_core_util",
        "load_core_util",
        "failed",
    ];
    let mut s = format!("[round {}] {:<14} {:<9}", c.round + 1, c.scenario, c.target);
    for k in keys {
        if let Some(v) = c.m.get(k) {
            s.push_str(&format!(" {k}={v:.3}"));
        }
    }
    for (k, v) in c.m.iter().filter(|(k, _)| k.starts_with("kept_")) {
        s.push_str(&format!(" {k}={v:.0}"));
    }
    if !c.note.is_empty() {
        s.push_str(&format!("  NOTE: {}", c.note));
    }
    println!("{s}");
}

/// One measurement, tried up to three times (5 s apart, fresh proxy each
/// time) when it fails: the machine is shared, and a transient failure
/// (another user's test exhausting ports, say) should not cost a round.
/// Earlier attempts' failures stay in the note.
async fn run_cell(ctx: &Ctx, scn: Scn, target: Option<Target>, round: usize) -> Cell {
    let mut earlier = Vec::new();
    let mut attempt = 1;
    loop {
        let mut cell = attempt_cell(ctx, scn, target.as_ref(), round).await;
        if cell.note.is_empty() || attempt == 3 {
            if attempt > 1 {
                cell.m.insert("attempts", attempt as f64);
                let ok = cell.note.is_empty();
                if !ok {
                    earlier.push(format!("attempt {attempt}: {}", cell.note));
                }
                cell.note = if ok {
                    format!(
                        "succeeded on attempt {attempt} after: {}",
                        earlier.join("; ")
                    )
                } else {
                    earlier.join("; ")
                };
            }
            return cell;
        }
        earlier.push(format!("attempt {attempt}: {}", cell.note));
        attempt += 1;
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

async fn attempt_cell(ctx: &Ctx, scn: Scn, target: Option<&Target>, round: usize) -> Cell {
    let mut cell = Cell {
        scenario: scn.id(),
        round,
        target: target.map_or("direct", |t| t.name),
        m: BTreeMap::new(),
        note: String::new(),
    };
    let waited = wait_quiet(ctx).await;
    cell.m.insert("quiet_wait_s", waited);
    let heartbeat = if scn == Scn::Heartbeat { "1s" } else { "15s" };
    let proxy = match target {
        None => None,
        Some(t) => match procs::start(
            &ctx.env,
            t.kind,
            &Options {
                tls: scn.tls(),
                heartbeat,
                wrapper: Vec::new(),
                bin: t.bin.clone(),
                failover: scn.failover(),
            },
        )
        .await
        {
            Ok(p) => Some(p),
            Err(e) => {
                cell.note = e.to_string();
                return cell;
            }
        },
    };
    let ep = Endpoint {
        addr: proxy.as_ref().map_or(ctx.env.upstream, |p| p.addr),
        tls: scn
            .tls()
            .then(|| client::tls_client(scn != Scn::TlsHandshake)),
    };
    let r = match scn {
        Scn::Paced | Scn::Burst | Scn::TlsStream => {
            stream_cell(ctx, scn, &ep, proxy.as_ref(), &mut cell).await
        }
        Scn::JsonC1 | Scn::JsonC32 => json_cell(ctx, scn, &ep, proxy.as_ref(), &mut cell).await,
        Scn::Prompt => crate::prompt::cell(ctx, &ep, proxy.as_ref(), &mut cell).await,
        Scn::Idle | Scn::Heartbeat => idle_cell(ctx, scn, &ep, proxy.as_ref(), &mut cell).await,
        Scn::Upload => memory::upload_cell(&ctx.sizes, &ep, proxy.as_ref(), &mut cell).await,
        Scn::TlsHandshake => hs_cell(ctx, &ep, proxy.as_ref(), &mut cell).await,
        Scn::FailoverC1 => crate::failover::c1(ctx, &ep, proxy.as_ref(), &mut cell).await,
        Scn::FailoverC32 => crate::failover::c32(ctx, &ep, proxy.as_ref(), &mut cell).await,
    };
    if let Err(e) = r {
        cell.note = e;
    }
    if let Some(p) = proxy {
        p.stop().await;
    }
    cell
}

async fn stream_cell(
    ctx: &Ctx,
    scn: Scn,
    ep: &Endpoint,
    proxy: Option<&Proxy>,
    cell: &mut Cell,
) -> Result<(), String> {
    let s = &ctx.sizes;
    let (total, interval) = match scn {
        Scn::Burst => (s.burst_streams, 0),
        Scn::TlsStream => (s.tls_streams, s.interval_us),
        _ => (s.paced_streams, s.interval_us),
    };
    let warm = client::streams(ep, s.clients, s.clients as u64, 30, 0, false).await;
    if warm.failed > 0 {
        return Err(format!(
            "warm-up: {} failed streams, first: {}",
            warm.failed,
            warm.first_error.unwrap_or_default()
        ));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let a = snap(ctx, proxy.map(|p| p.pid));
    let mut st = client::streams(ep, s.clients, total, s.events, interval, true).await;
    let b = snap(ctx, proxy.map(|p| p.pid));
    let m = &mut cell.m;
    let (wall, cpu) = common(ctx, &a, &b, m);
    m.insert("streams", st.streams as f64);
    m.insert("events", st.events as f64);
    m.insert("failed", st.failed as f64);
    m.insert("events_per_s", st.events as f64 / wall);
    if proxy.is_some() && st.streams > 0 {
        m.insert("cpu_ms_per_stream", cpu * 1e3 / st.streams as f64);
        m.insert("cpu_us_per_event", cpu * 1e6 / st.events as f64);
        m.insert(
            "sys_us_per_event",
            m["proxy_sys_s"] * 1e6 / st.events as f64,
        );
        m.insert(
            "sched_us_per_event",
            m["proxy_sched_s"] * 1e6 / st.events as f64,
        );
    }
    lat_metrics(&mut st.lat_ns, m);
    failures(st.failed, "streams", st.first_error)
}

async fn json_cell(
    ctx: &Ctx,
    scn: Scn,
    ep: &Endpoint,
    proxy: Option<&Proxy>,
    cell: &mut Cell,
) -> Result<(), String> {
    let s = &ctx.sizes;
    let warm = client::json_closed(ep, 4, Duration::from_millis(300)).await;
    if warm.failed > 0 {
        return Err(format!(
            "warm-up: {} failed requests, first: {}",
            warm.failed,
            warm.first_error.unwrap_or_default()
        ));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let d = Duration::from_secs_f64(s.json_secs);
    let a = snap(ctx, proxy.map(|p| p.pid));
    let mut st = if scn == Scn::JsonC1 {
        client::json_closed(ep, 1, d).await
    } else {
        client::json_waves(ep, s.clients, Duration::from_millis(s.wave_ms), d).await
    };
    let b = snap(ctx, proxy.map(|p| p.pid));
    let m = &mut cell.m;
    let (wall, cpu) = common(ctx, &a, &b, m);
    m.insert("requests", st.ok as f64);
    m.insert("failed", st.failed as f64);
    m.insert("req_per_s", st.ok as f64 / wall);
    if proxy.is_some() && st.ok > 0 {
        m.insert("cpu_us_per_req", cpu * 1e6 / st.ok as f64);
        m.insert("sys_us_per_req", m["proxy_sys_s"] * 1e6 / st.ok as f64);
        m.insert("sched_us_per_req", m["proxy_sched_s"] * 1e6 / st.ok as f64);
    }
    st.lat_ns.sort_unstable();
    m.insert("p50_us", percentile(&st.lat_ns, 50.0) / 1000.0);
    m.insert("p99_us", percentile(&st.lat_ns, 99.0) / 1000.0);
    failures(st.failed, "requests", st.first_error)
}

async fn hs_cell(
    ctx: &Ctx,
    ep: &Endpoint,
    proxy: Option<&Proxy>,
    cell: &mut Cell,
) -> Result<(), String> {
    let s = &ctx.sizes;
    let warm = client::handshakes(ep, 2, Duration::from_millis(300)).await;
    if warm.failed > 0 {
        return Err(format!(
            "warm-up: {} failed handshakes, first: {}",
            warm.failed,
            warm.first_error.unwrap_or_default()
        ));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let a = snap(ctx, proxy.map(|p| p.pid));
    let mut st = client::handshakes(ep, s.hs_conns, Duration::from_secs_f64(s.hs_secs)).await;
    let b = snap(ctx, proxy.map(|p| p.pid));
    let m = &mut cell.m;
    let (wall, cpu) = common(ctx, &a, &b, m);
    m.insert("handshakes", st.ok as f64);
    m.insert("failed", st.failed as f64);
    m.insert("hs_per_s", st.ok as f64 / wall);
    if st.ok > 0 {
        let per = cpu * 1e6 / st.ok as f64;
        m.insert("cpu_us_per_hs", per);
        m.insert("hs_per_core_s", 1e6 / per);
    }
    st.lat_ns.sort_unstable();
    m.insert("p50_us", percentile(&st.lat_ns, 50.0) / 1000.0);
    failures(st.failed, "handshakes", st.first_error)
}

async fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while !done() {
        if Instant::now() > end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

async fn heartbeats_metric(proxy: &Proxy) -> f64 {
    let Some(admin) = proxy.admin else {
        return f64::NAN;
    };
    match client::simple(admin, "GET", "/metrics").await {
        Ok(text) => text
            .lines()
            .filter(|l| l.starts_with("sse_edge_heartbeats_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum(),
        Err(_) => f64::NAN,
    }
}

async fn idle_cell(
    ctx: &Ctx,
    scn: Scn,
    ep: &Endpoint,
    proxy: Option<&Proxy>,
    cell: &mut Cell,
) -> Result<(), String> {
    let proxy = proxy.ok_or("idle streams need a proxy")?;
    let n = if scn == Scn::Heartbeat {
        ctx.sizes.hb_streams
    } else {
        ctx.sizes.idle_streams
    };
    let warm = client::streams(ep, 8, 8, 5, 0, false).await;
    if warm.failed > 0 {
        return Err(format!(
            "warm-up: {} failed streams, first: {}",
            warm.failed,
            warm.first_error.unwrap_or_default()
        ));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss0 = rss_kib(proxy.pid).map_err(|e| e.to_string())?;
    let fds0 = fd_count(proxy.pid);
    let t_open = Instant::now();
    let set = client::open_idle(ep, n, 200);
    let all_in = wait_for(Duration::from_secs(90), || {
        set.opened.load(Ordering::Relaxed) + set.failed.load(Ordering::Relaxed) >= n
    })
    .await;
    let opened = set.opened.load(Ordering::Relaxed);
    let m = &mut cell.m;
    m.insert("open_s", t_open.elapsed().as_secs_f64());
    m.insert("streams", opened as f64);
    m.insert("failed", set.failed.load(Ordering::Relaxed) as f64);
    let first_error = set.first_error.lock().ok().and_then(|f| f.clone());
    let failed = set.failed.load(Ordering::Relaxed);
    if !all_in {
        cell.note = format!("only {opened} of {n} streams opened in 90 s");
    }
    let result = if scn == Scn::Idle {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss1 = rss_kib(proxy.pid).map_err(|e| e.to_string())?;
        let fds1 = fd_count(proxy.pid);
        m.insert("rss_before_kib", rss0 as f64);
        m.insert("rss_after_kib", rss1 as f64);
        if opened > 0 {
            m.insert(
                "kib_per_stream",
                (rss1 as f64 - rss0 as f64) / opened as f64,
            );
            m.insert(
                "fds_per_stream",
                (fds1 as f64 - fds0 as f64) / opened as f64,
            );
        }
        Ok(())
    } else {
        // Let every stream reach its first keepalive, then measure a window.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let k0 = set.keepalives.load(Ordering::Relaxed);
        let h0 = heartbeats_metric(proxy).await;
        let a = snap(ctx, Some(proxy.pid));
        tokio::time::sleep(Duration::from_secs_f64(ctx.sizes.hb_window_secs)).await;
        let b = snap(ctx, Some(proxy.pid));
        let k1 = set.keepalives.load(Ordering::Relaxed);
        let h1 = heartbeats_metric(proxy).await;
        let (wall, cpu) = common(ctx, &a, &b, m);
        let k = (k1 - k0) as f64;
        m.insert("keepalives", k);
        m.insert("keepalives_metric", h1 - h0);
        m.insert("keepalives_per_s", k / wall);
        if opened > 0 {
            m.insert("keepalives_per_stream_s", k / wall / opened as f64);
        }
        if k > 0.0 {
            m.insert("cpu_us_per_keepalive", cpu * 1e6 / k);
        }
        Ok(())
    };
    // Teardown: the upstream closes every held stream, the proxy then closes
    // the client side; connections left over are reset.
    let _ = client::simple(ctx.env.upstream, "POST", "/_release").await;
    wait_for(Duration::from_secs(15), || {
        set.ended.load(Ordering::Relaxed) + set.failed.load(Ordering::Relaxed) >= n
    })
    .await;
    set.abort();
    let closed = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let result = if scn == Scn::Idle {
        let waits = &ctx.sizes.close_waits;
        result.and(memory::after_close(proxy.pid, rss0, closed, waits, &mut cell.m).await)
    } else {
        result
    };
    result.and(failures(failed, "streams", first_error))
}

/// A measurement with failures is an error (the cell is tried again).
fn failures(failed: u64, what: &str, first: Option<String>) -> Result<(), String> {
    if failed == 0 {
        Ok(())
    } else {
        Err(format!(
            "{failed} failed {what}, first: {}",
            first.unwrap_or_default()
        ))
    }
}
