//! Relay starters: the relay in this test's runtime (from command-line
//! style arguments, towards an upstream, over an HTTP/2 prior-knowledge
//! route, with or without its access log captured) and the real `sse-edge`
//! binary as a child process.

use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sse_edge::AccessLog;
use sse_edge::Running;
use sse_edge::cli::{Invocation, from_args};
use sse_edge::config::Config;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{CapturedLog, TempDir, Upstream, ca_pem_path, free_port, get, try_fetch};

/// Builds a config from `args` after `--listen 127.0.0.1:0 --admin 127.0.0.1:0`.
pub fn relay_config(args: &[&str]) -> Config {
    relay_config_env(args, &[]).unwrap_or_else(|e| panic!("{e}"))
}

/// Like [`relay_config`], with the process environment the relay reads
/// (`SSE_EDGE_*`, an endpoint's `key_env`) given as `env`; a refused
/// config is an error.
pub fn relay_config_env(args: &[&str], env: &[(&str, &str)]) -> Result<Config, String> {
    let mut all = vec![
        "sse-edge",
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
    ];
    all.extend_from_slice(args);
    let lookup = |k: &str| {
        env.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| (*v).to_owned())
    };
    match from_args(all, &lookup) {
        Ok(Invocation::Run(c)) => Ok(c),
        Ok(_) => Err(format!("relay args name a subcommand: {args:?}")),
        Err(e) => Err(format!("bad relay args {args:?}: {e}")),
    }
}

/// `--upstream <url>` (and, for `https`, the flags that make the relay
/// trust the test CA and no other) followed by `extra`.
fn upstream_args<'a>(url: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--upstream", url];
    if url.starts_with("https://") {
        args.extend([
            "--upstream-ca-file",
            ca_pem_path().to_str().unwrap(),
            "--upstream-roots",
            "none",
        ]);
    }
    args.extend_from_slice(extra);
    args
}

/// The config of a relay with one catch-all route to `up` speaking HTTP/2
/// with prior knowledge (`protocol = "http2"`), plus `extra` flags.
fn h2c_config(up: &Upstream, extra: &[&str]) -> Config {
    let dir = TempDir::new("h2c-route");
    let toml = format!(
        "[[route]]\nprefix = \"/\"\nupstream = \"{}\"\nprotocol = \"http2\"\n",
        up.url()
    );
    let file = dir.write("relay.toml", toml.as_bytes());
    let mut args = vec!["--config", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    // The file is read here, while the arguments are parsed.
    relay_config(&args)
}

async fn start_with(config: Config, log: AccessLog) -> Running {
    sse_edge::start(config, log).await.expect("relay starts")
}

/// Starts the relay in this runtime.
pub async fn start_relay(args: &[&str]) -> Running {
    start_with(relay_config(args), AccessLog::disabled()).await
}

/// Starts the relay with `--upstream <upstream>` plus `extra`.
pub async fn start_relay_to(upstream: &Upstream, extra: &[&str]) -> Running {
    start_relay_to_url(&upstream.url(), extra).await
}

/// Starts the relay with `--upstream <url>` plus `extra`; an `https` URL
/// is trusted through the test CA.
pub async fn start_relay_to_url(url: &str, extra: &[&str]) -> Running {
    start_relay(&upstream_args(url, extra)).await
}

/// Starts the relay with one HTTP/2 prior-knowledge route to `up`.
pub async fn start_relay_h2c(up: &Upstream, extra: &[&str]) -> Running {
    start_with(h2c_config(up, extra), AccessLog::disabled()).await
}

/// Starts the relay from `config` with its access log captured.
pub async fn start_with_log(config: Config) -> (Running, CapturedLog) {
    let (access, rx) = AccessLog::capture();
    (start_with(config, access).await, CapturedLog::new(rx))
}

/// [`start_relay`] with the access log captured.
pub async fn start_logged(args: &[&str]) -> (Running, CapturedLog) {
    start_with_log(relay_config(args)).await
}

/// [`start_relay_to`] with the access log captured.
pub async fn start_logged_to(upstream: &Upstream, extra: &[&str]) -> (Running, CapturedLog) {
    start_logged(&upstream_args(&upstream.url(), extra)).await
}

/// [`start_relay_h2c`] with the access log captured.
pub async fn start_logged_h2c(up: &Upstream, extra: &[&str]) -> (Running, CapturedLog) {
    start_with_log(h2c_config(up, extra)).await
}

/// Drains the relay and waits (bounded) for it to stop.
pub async fn stop_relay(r: Running) {
    r.drain();
    tokio::time::timeout(Duration::from_secs(10), r.wait())
        .await
        .expect("relay stops within 10s");
}

// ---------------------------------------------------------------- the binary

/// `sse-edge` with no `SSE_EDGE_*` variables from the test environment.
pub fn bin_command() -> tokio::process::Command {
    clean(tokio::process::Command::new(env!("CARGO_BIN_EXE_sse-edge")))
}

/// Like [`bin_command`], started by `sh` under an open-file limit (soft
/// `soft`, hard `hard`); `exec` keeps the process id.
pub fn bin_command_with_nofile(soft: u64, hard: u64) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("sh");
    cmd.args([
        "-c",
        r#"ulimit -S -n "$1" && ulimit -H -n "$2" && shift 2 && exec "$@""#,
        "sh",
        &soft.to_string(),
        &hard.to_string(),
        env!("CARGO_BIN_EXE_sse-edge"),
    ]);
    clean(cmd)
}

fn clean(mut cmd: tokio::process::Command) -> tokio::process::Command {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SSE_EDGE_") {
            cmd.env_remove(&k);
        }
    }
    cmd.env_remove("RUST_LOG");
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    cmd
}

/// Output of a finished run of the binary.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the binary to completion (bounded at 20 s).
pub async fn run_bin(args: &[&str], env: &[(&str, &str)]) -> Finished {
    run_command(bin_command(), args, env).await
}

/// Runs `cmd` (from [`bin_command`] or [`bin_command_with_nofile`]) with
/// `args` to completion (bounded at 20 s).
pub async fn run_command(
    mut cmd: tokio::process::Command,
    args: &[&str],
    env: &[(&str, &str)],
) -> Finished {
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(20), cmd.output())
        .await
        .expect("binary finished within 20s")
        .expect("binary runs");
    Finished {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The relay binary, running.
pub struct RelayProc {
    child: tokio::process::Child,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

fn drain_into<R>(mut r: R, buf: Arc<Mutex<Vec<u8>>>) -> tokio::task::JoinHandle<()>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut chunk = [0u8; 8192];
        loop {
            match r.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.lock().unwrap().extend_from_slice(&chunk[..n]),
            }
        }
    })
}

impl RelayProc {
    /// Starts the binary on free ports with `args` (plus `--workers 2`) and
    /// waits until `/readyz` answers 200. Retries with other ports if a port
    /// was taken in the meantime.
    pub async fn spawn(args: &[&str]) -> RelayProc {
        Self::spawn_from(bin_command, args).await
    }

    /// Like [`RelayProc::spawn`], with `--upstream <url>` (an `https` URL
    /// trusted through the test CA) before `extra`.
    pub async fn spawn_to(url: &str, extra: &[&str]) -> RelayProc {
        Self::spawn(&upstream_args(url, extra)).await
    }

    /// Like [`RelayProc::spawn`], under an open-file limit (see
    /// [`bin_command_with_nofile`]).
    pub async fn spawn_with_nofile(soft: u64, hard: u64, args: &[&str]) -> RelayProc {
        Self::spawn_from(|| bin_command_with_nofile(soft, hard), args).await
    }

    async fn spawn_from(command: impl Fn() -> tokio::process::Command, args: &[&str]) -> RelayProc {
        let mut last_err = String::new();
        for _ in 0..3 {
            let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let (l, a) = (listen.to_string(), admin.to_string());
            let mut cmd = command();
            cmd.args(["--listen", &l, "--admin", &a, "--workers", "2"])
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = cmd.spawn().expect("spawn sse-edge");
            let stdout = Arc::new(Mutex::new(Vec::new()));
            let stderr = Arc::new(Mutex::new(Vec::new()));
            let readers = vec![
                drain_into(child.stdout.take().unwrap(), stdout.clone()),
                drain_into(child.stderr.take().unwrap(), stderr.clone()),
            ];
            let mut proc = RelayProc {
                child,
                listen,
                admin,
                stdout,
                stderr,
                readers,
            };
            match proc.wait_ready().await {
                Ok(()) => return proc,
                Err(e) => {
                    last_err = format!("{e}; stderr: {}", proc.stderr());
                    let _ = proc.child.start_kill();
                    let _ = proc.child.wait().await;
                }
            }
        }
        panic!("sse-edge did not become ready: {last_err}");
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited early with {status}"));
            }
            let probe = tokio::time::timeout(
                Duration::from_secs(2),
                try_fetch(self.admin, get("/readyz")),
            )
            .await;
            if matches!(probe, Ok(Ok(ref r)) if r.status == 200) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err("readyz not 200 within 15s".to_owned())
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("child still running")
    }

    /// Sends SIGTERM with `kill(1)`.
    pub fn sigterm(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Kills the process outright (SIGKILL): no drain, no goodbye.
    pub async fn sigkill(&mut self) {
        self.child.start_kill().expect("send SIGKILL");
        let _ = self.child.wait().await;
    }

    /// Waits for the process to exit within `limit`; then for its output.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let status = tokio::time::timeout(limit, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "sse-edge did not exit within {limit:?}; stderr: {}",
                    self.stderr()
                )
            })
            .expect("wait for sse-edge");
        for r in self.readers.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), r).await;
        }
        status
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }
}
