//! Starting and stopping the proxies under test, each pinned to the proxy
//! CPU with `taskset`, and the process whose CPU and memory are measured.

use std::fs;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    SseEdge,
    Nginx,
    Haproxy,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::SseEdge => "sse-edge",
            Kind::Nginx => "nginx",
            Kind::Haproxy => "haproxy",
        }
    }
}

/// What a run needs to start the proxies.
pub struct Env {
    pub work: PathBuf,
    pub sse_edge: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub proxy_cpu: usize,
    pub upstream: SocketAddr,
    pub port_base: u16,
}

impl Env {
    /// The mock upstream's flaky listener: a primary that answers `503` on
    /// request (see `upstream.rs`).
    pub fn flaky(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port_base + 10).into()
    }

    /// The mock upstream's switchable listener: a primary whose connects
    /// can be refused.
    pub fn switchable(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port_base + 11).into()
    }
}

pub struct Options {
    pub tls: bool,
    pub heartbeat: &'static str,
    /// A command the proxy runs under (valgrind for the profiles); empty for none.
    pub wrapper: Vec<String>,
    /// The sse-edge binary to run instead of [`Env::sse_edge`]: another
    /// build of the same source (an allocator variant, or the
    /// system-allocator build massif needs).
    pub bin: Option<PathBuf>,
    /// The failover routes instead of the one route to the upstream:
    /// `/` through the flaky primary, `/refused/` through the switchable
    /// one, both with the upstream as their fallback ([`failover_toml`]).
    pub failover: bool,
}

/// A running proxy. `pid` is the process that does the relaying (nginx's
/// worker, not its master).
pub struct Proxy {
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub pid: u32,
    child: Child,
}

fn port(env: &Env, kind: Kind) -> u16 {
    env.port_base
        + match kind {
            Kind::SseEdge => 1,
            Kind::Nginx => 2,
            Kind::Haproxy => 3,
        }
}

fn log_file(env: &Env, name: &str) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(env.work.join("logs").join(name))
}

pub async fn start(env: &Env, kind: Kind, opts: &Options) -> io::Result<Proxy> {
    fs::create_dir_all(env.work.join("logs"))?;
    let addr: SocketAddr = ([127, 0, 0, 1], port(env, kind)).into();
    let mut cmd = Command::new("taskset");
    cmd.arg("-c").arg(env.proxy_cpu.to_string());
    cmd.args(&opts.wrapper);
    let mut admin = None;
    match kind {
        Kind::SseEdge => {
            let a: SocketAddr = ([127, 0, 0, 1], env.port_base + 91).into();
            admin = Some(a);
            cmd.arg(opts.bin.as_ref().unwrap_or(&env.sse_edge))
                .args(["--listen", &addr.to_string()])
                .args(["--admin", &a.to_string()]);
            if opts.failover {
                let file = env.work.join("sse-edge-failover.toml");
                fs::write(&file, failover_toml(env))?;
                cmd.arg("--config").arg(file);
            } else {
                cmd.args(["--upstream", &format!("http://{}", env.upstream)]);
            }
            cmd.args(["--heartbeat", opts.heartbeat])
                .args(["--log-access-log", "false"])
                .args(["--workers", "1"])
                .args(["--drain-timeout", "1s"]);
            if opts.tls {
                cmd.arg("--tls-cert").arg(&env.cert);
                cmd.arg("--tls-key").arg(&env.key);
            }
        }
        Kind::Nginx => {
            let dir = env.work.join("nginx");
            fs::create_dir_all(dir.join("tmp"))?;
            fs::write(dir.join("nginx.conf"), nginx_conf(env, addr, opts, &dir))?;
            cmd.arg("nginx")
                .arg("-p")
                .arg(&dir)
                .arg("-c")
                .arg(dir.join("nginx.conf"))
                .arg("-e")
                .arg(dir.join("error.log"))
                .args(["-g", "daemon off;"]);
        }
        Kind::Haproxy => {
            let dir = env.work.join("haproxy");
            fs::create_dir_all(&dir)?;
            if opts.tls {
                let mut pem = fs::read(&env.cert)?;
                pem.extend_from_slice(&fs::read(&env.key)?);
                fs::write(dir.join("site.pem"), pem)?;
            }
            fs::write(
                dir.join("haproxy.cfg"),
                haproxy_cfg(env, addr, opts.tls, &dir),
            )?;
            cmd.arg("haproxy")
                .arg("-f")
                .arg(dir.join("haproxy.cfg"))
                .arg("-db");
        }
    }
    cmd.stdin(Stdio::null())
        .stdout(log_file(env, &format!("{}.out", kind.name()))?)
        .stderr(log_file(env, &format!("{}.err", kind.name()))?);
    let child = cmd.spawn()?;
    let mut p = Proxy {
        addr,
        admin,
        pid: child.id(),
        child,
    };
    let deadline =
        Instant::now() + Duration::from_secs(if opts.wrapper.is_empty() { 15 } else { 120 });
    loop {
        if let Some(st) = p.child.try_wait()? {
            return Err(io::Error::other(format!(
                "{} exited at start ({st}); see {}",
                kind.name(),
                env.work.join("logs").display()
            )));
        }
        if TcpStream::connect(addr).await.is_ok() {
            break;
        }
        if Instant::now() > deadline {
            p.stop().await;
            return Err(io::Error::other(format!(
                "{} did not listen on {addr}",
                kind.name()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if kind == Kind::Nginx {
        // Measure the worker: the master only supervises.
        let master = p.child.id();
        loop {
            let children = fs::read_to_string(format!("/proc/{master}/task/{master}/children"))
                .unwrap_or_default();
            if let Some(w) = children
                .split_whitespace()
                .next()
                .and_then(|w| w.parse().ok())
            {
                p.pid = w;
                break;
            }
            if Instant::now() > deadline {
                p.stop().await;
                return Err(io::Error::other("nginx worker not found"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(p)
}

impl Proxy {
    /// SIGTERM, then SIGKILL after 5 s (nginx's worker too).
    pub async fn stop(self) {
        self.stop_within(Duration::from_secs(5)).await
    }

    /// SIGTERM, then SIGKILL after `grace` (nginx's worker too).
    pub async fn stop_within(mut self, grace: Duration) {
        let master = self.child.id();
        // SAFETY: plain kill(2) on a process this run started.
        unsafe {
            libc::kill(master as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if self.pid != master && Path::new(&format!("/proc/{}", self.pid)).exists() {
            // SAFETY: as above; the worker of the nginx this run started.
            unsafe {
                libc::kill(self.pid as libc::pid_t, libc::SIGKILL);
            }
        }
    }
}

/// nginx as the issue asks: one worker, `proxy_buffering off`, HTTP/1.1
/// with keep-alive to the upstream, no access log, room for ~9,500 streams;
/// request bodies up to 64 MiB (the upload run sends 30 MiB; nginx's
/// default limit is 1 MiB).
fn nginx_conf(env: &Env, addr: SocketAddr, opts: &Options, dir: &Path) -> String {
    let tls = opts.tls;
    let tmp = dir.join("tmp");
    let tmp = tmp.display();
    let (listen, ssl) = if tls {
        (
            format!("{addr} ssl backlog=4096"),
            format!(
                "ssl_certificate {};\n    ssl_certificate_key {};\n    ssl_protocols TLSv1.2 TLSv1.3;\n",
                env.cert.display(),
                env.key.display()
            ),
        )
    } else {
        (format!("{addr} backlog=4096"), String::new())
    };
    format!(
        r#"# Written by benches/e2e (e2e-bench). One worker, pinned by taskset.
user root;
worker_processes 1;
worker_rlimit_nofile 20000;
pid {dir}/nginx.pid;
events {{
    worker_connections 19500;
}}
http {{
    access_log off;
    keepalive_timeout 3600s;
    keepalive_requests 1000000;
    client_max_body_size 64m;
    # A 200 KB prompt (the `prompt` run) is kept in memory, as sse-edge
    # keeps it, instead of in a temp file (the default is 16k).
    client_body_buffer_size 256k;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream mock {{
        server {up};
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 3600s;
    }}
{failover_upstreams}    server {{
    listen {listen};
    {ssl}
    location / {{
        proxy_pass http://{pass};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_buffering off;
        proxy_read_timeout 3600s;
        proxy_send_timeout 3600s;{failover_next}
    }}
{failover_location}    }}
}}
"#,
        dir = dir.display(),
        up = env.upstream,
        failover_upstreams = if opts.failover {
            nginx_failover_upstreams(env)
        } else {
            String::new()
        },
        failover_next = if opts.failover { NGINX_NEXT } else { "" },
        failover_location = if opts.failover {
            NGINX_REFUSED_LOCATION
        } else {
            ""
        },
        pass = if opts.failover { "flaky" } else { "mock" },
    )
}

/// sse-edge's failover routes: `/` sends to the flaky primary with the
/// upstream as its fallback group, `/refused/` (prefix stripped) to the
/// switchable primary with the same fallback. The fallback rewrites the
/// request's `model`, as a fallback to another provider or model would.
pub fn failover_toml(env: &Env) -> String {
    let group = |name: &str, url: SocketAddr| {
        format!(
            "[[route.group]]\nname = \"primary\"\nendpoints = [ {{ url = \"http://{url}\", name = \"{name}\" }} ]\n\
             [[route.group]]\nname = \"fallback\"\nendpoints = [ {{ url = \"http://{up}\", name = \"fallback\", model = \"gpt-4o-mini-fallback\" }} ]\n",
            up = env.upstream
        )
    };
    format!(
        "# Written by benches/e2e (e2e-bench): the failover runs.\n\
         [[route]]\nprefix = \"/refused\"\nstrip_prefix = true\n{}\n\
         [[route]]\nprefix = \"/\"\n{}",
        group("refusing", env.switchable()),
        group("flaky", env.flaky()),
    )
}

/// nginx's peers of the failover routes: the primary and the upstream as its
/// `backup`, `max_fails=0` so a failure never takes the primary out (each
/// request tries it, as in sse-edge's runs, whose failures never come three
/// in a row).
fn nginx_failover_upstreams(env: &Env) -> String {
    let block = |name: &str, primary: SocketAddr| {
        format!(
            "    upstream {name} {{\n        server {primary} max_fails=0;\n        server {up} backup max_fails=0;\n        keepalive 64;\n        keepalive_requests 1000000;\n        keepalive_timeout 3600s;\n    }}\n",
            up = env.upstream
        )
    };
    block("flaky", env.flaky()) + &block("switchable", env.switchable())
}

/// Retry a `503` or a failed connect on the next server (the backup), POSTs
/// included: sse-edge fails a streaming request over in both cases.
const NGINX_NEXT: &str = "\n        proxy_next_upstream error timeout http_503 non_idempotent;\n        proxy_next_upstream_tries 2;";

const NGINX_REFUSED_LOCATION: &str = "    location /refused/ {
        proxy_pass http://switchable/;
        proxy_http_version 1.1;
        proxy_set_header Connection \"\";
        proxy_buffering off;
        proxy_read_timeout 3600s;
        proxy_send_timeout 3600s;
        proxy_next_upstream error timeout http_503 non_idempotent;
        proxy_next_upstream_tries 2;
    }
";

/// HAProxy as the issue asks: HTTP mode, one thread, keep-alive both ways
/// (`http-reuse always` shares idle server connections), room for ~9,000
/// streams, long timeouts so silent streams stay open. `option
/// http-no-delay` is what a streaming deployment needs: without it HAProxy
/// sends with MSG_MORE while a chunked body is unfinished and the kernel
/// holds small events back (measured here: p50 added latency 11 ms instead
/// of 0.5 ms, at slightly lower CPU per event).
fn haproxy_cfg(env: &Env, addr: SocketAddr, tls: bool, dir: &Path) -> String {
    let bind = if tls {
        format!("{addr} ssl crt {}/site.pem alpn http/1.1", dir.display())
    } else {
        addr.to_string()
    };
    format!(
        r#"# Written by benches/e2e (e2e-bench). One thread, pinned by taskset.
global
    maxconn 9500
    nbthread 1
    tune.ssl.default-dh-param 2048

defaults
    mode http
    maxconn 9500
    option http-keep-alive
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    timeout http-request 15s
    timeout http-keep-alive 1h
    http-reuse always
    option http-no-delay

frontend fe
    bind {bind}
    default_backend be

backend be
    server up {up}
"#,
        up = env.upstream,
    )
}
