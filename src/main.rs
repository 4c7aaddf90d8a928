//! The `sse-edge` binary: parse configuration, run until SIGTERM/SIGINT,
//! drain, exit 0.
#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::process::ExitCode;

use sse_edge::AccessLog;
use sse_edge::DemoOptions;
use sse_edge::cli::{self, CliError, Invocation};
use sse_edge::config::{self, Config, OpenFileLimit};

/// jemalloc, with its background thread on (tikv-jemallocator's
/// `background_threads` feature builds `background_thread:true` in) and
/// `dirty_decay_ms:1000` (`.cargo/config.toml`): pages freed after a burst
/// go back to the system about a second after their last use, even while
/// the relay sits idle. glibc's malloc kept them: 8,000 closed idle
/// streams left RSS at its peak, and a 30 MiB upload left 30 MiB
/// (BENCHMARKS.md, "Memory after load"). `_RJEM_MALLOC_CONF` overrides the
/// built-in settings at run time.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// mimalloc, for the allocator comparison only (`--no-default-features
/// --features mimalloc`).
#[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // First: the default server.max_connections is derived from the limit,
    // and check-config shows what a relay started this way would get.
    let open_files = config::raise_open_file_limit();
    let env = |k: &str| std::env::var(k).ok();
    let invocation = match cli::from_args(std::env::args_os(), &env) {
        Ok(i) => i,
        Err(CliError::Clap(e)) => e.exit(),
        Err(e) => {
            eprintln!("sse-edge: {e}");
            return ExitCode::from(2);
        }
    };
    match invocation {
        Invocation::CheckConfig { rendered, .. } => {
            print!("{rendered}");
            eprintln!("sse-edge: configuration is valid");
            ExitCode::SUCCESS
        }
        Invocation::Run(config) => run(config, open_files),
        Invocation::Demo(options) => demo(options),
        Invocation::HashKey => hash_key(),
    }
}

/// `sse-edge hash-key`: the SHA-256 hex digest of the key on stdin (one
/// line; surrounding whitespace and the newline are not part of the key).
fn hash_key() -> ExitCode {
    use std::io::Read;
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().lock().read_to_end(&mut input) {
        eprintln!("sse-edge hash-key: cannot read stdin: {e}");
        return ExitCode::FAILURE;
    }
    let key = input.trim_ascii();
    if key.is_empty() {
        eprintln!(
            "sse-edge hash-key: no key on stdin (try: printf %s \"$KEY\" | sse-edge hash-key)"
        );
        return ExitCode::from(2);
    }
    if key.iter().any(|b| b.is_ascii_whitespace()) {
        eprintln!("sse-edge hash-key: give one key, without spaces or line breaks");
        return ExitCode::from(2);
    }
    println!("{}", sse_edge::key_hex(&sse_edge::key_digest(key)));
    ExitCode::SUCCESS
}

/// One worker runs on the current thread (no cross-thread wake-ups, no
/// work stealing: the cheapest setup for a sidecar or a pinned core); more
/// get tokio's multi-thread scheduler.
fn runtime(workers: usize) -> Option<tokio::runtime::Runtime> {
    let mut builder = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    match builder.thread_name("sse-edge").enable_all().build() {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("sse-edge: cannot start the runtime: {e}");
            None
        }
    }
}

fn demo(options: DemoOptions) -> ExitCode {
    init_logging("warn");
    let Some(runtime) = runtime(2) else {
        return ExitCode::FAILURE;
    };
    let result = runtime.block_on(sse_edge::run_demo(options, wait_for_signal()));
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sse-edge demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: Config, open_files: std::io::Result<OpenFileLimit>) -> ExitCode {
    init_logging(&config.log.level);
    let max = config.server.limits.max_connections;
    match open_files {
        Ok(l) if l.now > l.before => tracing::info!(
            "open-file limit raised from {} to {}; server.max_connections {max}",
            l.before,
            l.now
        ),
        Ok(l) => tracing::info!("open-file limit {}; server.max_connections {max}", l.now),
        Err(e) => {
            tracing::warn!("cannot raise the open-file limit: {e}; server.max_connections {max}")
        }
    }
    let Some(runtime) = runtime(config.workers) else {
        return ExitCode::FAILURE;
    };
    let (access, writer) = if config.log.access_log {
        match AccessLog::stdout() {
            Ok((log, writer)) => (log, Some(writer)),
            Err(e) => {
                eprintln!("sse-edge: cannot start the access-log writer: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        (AccessLog::disabled(), None)
    };
    let code = runtime.block_on(serve(config, access));
    // Aborted tasks may still hold access-log senders until the runtime is gone.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    if let Some(w) = writer {
        w.finish();
    }
    code
}

async fn serve(config: Config, access: AccessLog) -> ExitCode {
    let routes = config.routes.len();
    let workers = config.workers;
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let running = match sse_edge::start(config, access).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        "sse-edge {} listening on {scheme}://{} ({routes} route(s), {workers} worker(s)); admin on http://{}",
        env!("CARGO_PKG_VERSION"),
        running.listen,
        running.admin
    );
    let signal = wait_for_signal().await;
    tracing::info!("{signal}: draining");
    running.drain();
    running.wait().await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers there is nothing to wait for but Ctrl-C.
        let _ = tokio::signal::ctrl_c().await;
        return "interrupt";
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

fn init_logging(default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(default_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
