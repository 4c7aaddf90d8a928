//! Small helpers: command-line flags, clocks, CPU pinning, /proc readings,
//! percentiles.

use std::collections::HashMap;
use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

/// `--key value` pairs and bare `--flag`s, in any order.
pub struct Args {
    values: HashMap<String, String>,
    flags: Vec<String>,
}

impl Args {
    /// Parses `args`; `flags` names the options that take no value.
    pub fn parse(args: &[String], flags: &[&str]) -> Result<Args, String> {
        let mut values = HashMap::new();
        let mut seen = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let Some(name) = a.strip_prefix("--") else {
                return Err(format!("unexpected argument {a:?}"));
            };
            if flags.contains(&name) {
                seen.push(name.to_string());
            } else if let Some(v) = it.next() {
                values.insert(name.to_string(), v.clone());
            } else {
                return Err(format!("--{name} needs a value"));
            }
        }
        Ok(Args {
            values,
            flags: seen,
        })
    }

    pub fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }

    pub fn opt(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    pub fn req(&self, name: &str) -> Result<&str, String> {
        self.opt(name)
            .ok_or_else(|| format!("--{name} is required"))
    }

    pub fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.opt(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{name}: cannot parse {v:?}")),
        }
    }
}

/// Wall-clock time in nanoseconds since the Unix epoch. The upstream stamps
/// events with it and the client subtracts it on receipt: both run on the
/// same machine, so they read the same clock.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Pins the calling process (all its future threads) to one CPU.
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET only write into it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Clock ticks per second, the unit of utime/stime in /proc/PID/stat.
pub fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// utime + stime of a process (all its threads, live and exited), in ticks.
pub fn cpu_ticks(pid: u32) -> io::Result<u64> {
    cpu_split(pid).map(|(user, sys)| user + sys)
}

/// utime and stime of a process (all its threads, live and exited), in
/// ticks: time in user space and time in the kernel on its behalf (system
/// calls, and the network stack's work done in its context).
pub fn cpu_split(pid: u32) -> io::Result<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name is in parentheses and may hold spaces: split after it.
    let rest = s
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::other("malformed /proc/PID/stat"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ")": state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
    let stime: u64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    Ok((utime, stime))
}

/// CPU time of a process in nanoseconds, as the scheduler accounts it
/// (`/proc/PID/task/*/schedstat`, first field, summed over its live
/// threads). Unlike `utime + stime`, which the kernel samples at each tick,
/// it is exact: a process that runs in short bursts between ticks while
/// another one holds the core (a build on the shared machine) is not
/// undercounted.
pub fn sched_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// VmRSS of a process, in KiB.
pub fn rss_kib(pid: u32) -> io::Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    for line in s.lines() {
        if let Some(v) = line.strip_prefix("VmRSS:") {
            return v
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .map_err(io::Error::other);
        }
    }
    Err(io::Error::other("no VmRSS line"))
}

/// Open file descriptors of a process.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The `p`-th percentile (0..=100) of sorted values, nearest rank.
pub fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64
}

/// Median of a few values (NaN ignored); NaN when none.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Output of a command (stdout, else stderr), trimmed; empty on failure.
pub fn command_output(cmd: &str, args: &[&str]) -> String {
    match std::process::Command::new(cmd).args(args).output() {
        Ok(o) => {
            let out = String::from_utf8_lossy(&o.stdout).trim().to_string();
            if out.is_empty() {
                String::from_utf8_lossy(&o.stderr).trim().to_string()
            } else {
                out
            }
        }
        Err(_) => String::new(),
    }
}

/// Ticks each CPU spent running tasks (user + nice + system) and stolen by
/// the host (steal), from /proc/stat, indexed by CPU number.
pub fn cpu_times() -> Vec<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let mut out = Vec::new();
    for line in s.lines() {
        let Some(rest) = line.strip_prefix("cpu") else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let Some(idx) = f.next().and_then(|i| i.parse::<usize>().ok()) else {
            continue;
        };
        let v: Vec<u64> = f.map(|x| x.parse().unwrap_or(0)).collect();
        let at = |i: usize| v.get(i).copied().unwrap_or(0);
        if out.len() <= idx {
            out.resize(idx + 1, (0, 0));
        }
        out[idx] = (at(0) + at(1) + at(2), at(7));
    }
    out
}
