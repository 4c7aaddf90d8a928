//! `sse-edge demo`: the relay in front of a simulated slow model API, both
//! on loopback, with a client that shows what arrives and when.
//!
//! The simulated API ([`upstream`]) stays silent before its headers and
//! again mid-stream, the way reasoning models do. The relay is started
//! in-process exactly as `sse-edge --upstream URL --heartbeat 1s` would be,
//! with its access log captured. The client ([`client`]) streams one OpenAI
//! chat-completions and one Anthropic messages request through it and prints
//! each keepalive, token, usage report and ending with its time offset, then
//! the access-log line and the token metrics the relay recorded.
//!
//! A web page ([`page`]) on another loopback port streams a chat through
//! the relay's `/browser` route (CORS policy for the page's origin,
//! resumption on): keepalives and tokens as they arrive, and a "cut the
//! connection" button that shows the stream resuming with nothing lost.
//! The terminal prints its URL.
//!
//! With `--keep-running` all stay up until SIGTERM/SIGINT (the relay then
//! drains as in production) and the demo prints curl commands and Python SDK
//! snippets to try by hand.

mod client;
mod output;
mod page;
mod report;
mod script;
mod transcript;
mod upstream;

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::app::{self, Running, StartError};
use crate::config::{Config, ConfigError, Layers};
use crate::telemetry::AccessLog;
use output::Output;
use page::PageListener;
use script::SCENARIOS;
use upstream::{SimulatedApi, Timing};

pub use script::{ANTHROPIC_ANSWER, OPENAI_ANSWER};

/// The demo relay's heartbeat unless `--heartbeat` says otherwise: short,
/// so that keepalives show within seconds.
pub(crate) const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);
/// Time between two tokens of the simulated API.
const TOKEN_GAP: Duration = Duration::from_millis(50);
/// How long after a request the demo waits for its access-log line.
const LOG_WAIT: Duration = Duration::from_secs(3);

/// What `sse-edge demo` was asked for.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Silence of the simulated API before its response headers.
    pub head_delay: Duration,
    /// Silence of the simulated API after the first event of a stream.
    pub pause: Duration,
    /// Keep everything running after the demo requests, until a signal.
    pub keep_running: bool,
    /// Relay listener; `None`: 127.0.0.1:8080 with `keep_running`, else an
    /// ephemeral port.
    pub listen: Option<SocketAddr>,
    /// Admin listener; `None`: 127.0.0.1:9090 with `keep_running`, else an
    /// ephemeral port.
    pub admin: Option<SocketAddr>,
    /// Relay heartbeat; `None`: [`DEFAULT_HEARTBEAT`].
    pub heartbeat: Option<Duration>,
    /// The web page's listener; `None`: 127.0.0.1:8081 with
    /// `keep_running`, else an ephemeral port.
    pub page: Option<SocketAddr>,
}

/// Why the demo failed.
#[derive(Debug)]
pub enum DemoError {
    /// A part of the demo could not be started.
    Setup {
        what: &'static str,
        source: io::Error,
    },
    /// The relay refused the demo's configuration.
    Config(ConfigError),
    /// The relay did not start.
    Start(StartError),
    /// The client could not connect.
    Connect { addr: SocketAddr, source: io::Error },
    /// An HTTP exchange failed.
    Http(hyper::Error),
    /// A response body could not be read.
    Body(Box<dyn std::error::Error + Send + Sync>),
    /// A demo request took too long.
    Timeout { what: &'static str, after: Duration },
    /// The relay answered with an error status.
    Status {
        what: &'static str,
        status: http::StatusCode,
    },
    /// A stream ended without its dialect's last event.
    Incomplete { what: &'static str },
}

impl fmt::Display for DemoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Setup { what, source } => write!(f, "cannot start {what}: {source}"),
            Self::Config(e) => write!(f, "demo relay configuration: {e}"),
            Self::Start(e @ StartError::Bind { .. }) => {
                write!(f, "{e} (choose other addresses with --listen and --admin)")
            }
            Self::Start(e) => write!(f, "{e}"),
            Self::Connect { addr, source } => write!(f, "cannot connect to {addr}: {source}"),
            Self::Http(e) => write!(f, "HTTP exchange failed: {e}"),
            Self::Body(e) => write!(f, "cannot read a response body: {e}"),
            Self::Timeout { what, after } => {
                write!(f, "{what}: no complete answer within {}s", after.as_secs())
            }
            Self::Status { what, status } => write!(f, "{what}: the relay answered {status}"),
            Self::Incomplete { what } => {
                write!(f, "{what}: the stream did not end with its last event")
            }
        }
    }
}

impl std::error::Error for DemoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Setup { source, .. } | Self::Connect { source, .. } => Some(source),
            Self::Config(e) => Some(e),
            Self::Start(e) => Some(e),
            Self::Http(e) => Some(e),
            Self::Body(e) => Some(e.as_ref()),
            Self::Timeout { .. } | Self::Status { .. } | Self::Incomplete { .. } => None,
        }
    }
}

/// Runs the demo. With `keep_running`, waits for `signal` (which resolves
/// to the signal's name) before draining.
///
/// # Errors
///
/// When a part cannot start, or a demo request fails or ends incomplete.
pub async fn run(
    options: DemoOptions,
    signal: impl Future<Output = &'static str>,
) -> Result<(), DemoError> {
    let timing = Timing {
        head_delay: options.head_delay,
        pause: options.pause,
        token_gap: TOKEN_GAP,
    };
    let api = SimulatedApi::start(timing)
        .await
        .map_err(|source| DemoError::Setup {
            what: "the simulated model API",
            source,
        })?;
    let result = with_api(&options, api.addr, signal).await;
    api.stop().await;
    result
}

async fn with_api(
    options: &DemoOptions,
    api: SocketAddr,
    signal: impl Future<Output = &'static str>,
) -> Result<(), DemoError> {
    let page_addr = options.page.unwrap_or(if options.keep_running {
        SocketAddr::from((Ipv4Addr::LOCALHOST, 8081))
    } else {
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
    });
    let page = PageListener::bind(page_addr)
        .await
        .map_err(|source| DemoError::Setup {
            what: "the demo page (choose another address with --page)",
            source,
        })?;
    let config = relay_config(options, api, &page.origins())?;
    let (access, captured) = AccessLog::capture();
    let mut lines = forward_lines(captured)?;
    let relay = app::start(config, access).await.map_err(DemoError::Start)?;
    let page_url = format!("http://{}/", report::shown(page.addr));
    let page = page.serve(relay.listen);
    let mut out = Output::stdout();
    introduce(&mut out, options, api, &relay, &page_url);
    let result = demo_requests(&mut out, options, &relay, &mut lines).await;
    if result.is_ok() && options.keep_running {
        report::guide(&mut out, relay.listen, relay.admin, &page_url);
        let printer = tokio::spawn(print_lines(out.clone(), lines));
        let name = signal.await;
        out.line(&format!("\n{name}: draining the relay, then stopping"));
        relay.drain();
        relay.wait().await;
        page.stop().await;
        // The relay's access-log senders are gone: the printer ends.
        let _ = tokio::time::timeout(LOG_WAIT, printer).await;
        return Ok(());
    }
    relay.drain();
    relay.wait().await;
    page.stop().await;
    if result.is_ok() {
        out.line(
            "\nDone. `sse-edge demo --keep-running` keeps everything up (the browser page too) and prints curl and SDK commands to try.",
        );
    }
    result
}

/// The relay's configuration: what `sse-edge --listen .. --admin ..
/// --heartbeat .. --drain-timeout 10s --config FILE` would load, with no
/// environment, where FILE has two routes to the simulated API: `/` (as
/// `--upstream` makes it) for the terminal's requests, and `/browser` for
/// the page, with resumption and a CORS policy for the page's `origins`.
fn relay_config(
    options: &DemoOptions,
    api: SocketAddr,
    origins: &[String],
) -> Result<Config, DemoError> {
    // Fixed ports to paste into commands when it keeps running.
    let (listen, admin) = if options.keep_running {
        ((Ipv4Addr::LOCALHOST, 8080), (Ipv4Addr::LOCALHOST, 9090))
    } else {
        ((Ipv4Addr::LOCALHOST, 0), (Ipv4Addr::LOCALHOST, 0))
    };
    let listen = options.listen.unwrap_or(SocketAddr::from(listen));
    let admin = options.admin.unwrap_or(SocketAddr::from(admin));
    let heartbeat = options.heartbeat.unwrap_or(DEFAULT_HEARTBEAT);
    let flags = [
        ("listen", listen.to_string()),
        ("admin", admin.to_string()),
        ("heartbeat", format!("{}ms", heartbeat.as_millis())),
        ("drain-timeout", "10s".to_owned()),
    ];
    let layers = Layers {
        flags: &|name| {
            let given = flags.iter().find(|(flag, _)| *flag == name);
            given.map(|(_, value)| value.clone())
        },
        env: &|_| None,
    };
    match layers.load_text("(the demo's relay)", &routes_toml(api, origins)) {
        Ok(loaded) => Ok(loaded.into_config()),
        Err(e) => Err(DemoError::Config(e)),
    }
}

/// The demo relay's routes (see [`relay_config`]).
fn routes_toml(api: SocketAddr, origins: &[String]) -> String {
    let origins: Vec<String> = origins.iter().map(|o| format!("{o:?}")).collect();
    format!(
        "[[route]]\nname = \"default\"\nprefix = \"/\"\nupstream = \"http://{api}\"\n\n\
         [[route]]\nname = \"browser\"\nprefix = \"{route}\"\nstrip_prefix = true\n\
         upstream = \"http://{api}\"\nresume = {{ window = \"60s\" }}\n\
         cors = {{ allow_origins = [{origins}] }}\n",
        route = page::ROUTE,
        origins = origins.join(", ")
    )
}

/// Moves captured access-log lines from the relay's channel (a blocking
/// receiver) to an async one, on a thread that ends with the relay.
fn forward_lines(
    captured: std::sync::mpsc::Receiver<String>,
) -> Result<mpsc::Receiver<String>, DemoError> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::Builder::new()
        .name("demo-access-log".into())
        .spawn(move || {
            while let Ok(line) = captured.recv() {
                if tx.blocking_send(line).is_err() {
                    break;
                }
            }
        })
        .map_err(|source| DemoError::Setup {
            what: "the access-log reader",
            source,
        })?;
    Ok(rx)
}

fn introduce(
    out: &mut Output,
    options: &DemoOptions,
    api: SocketAddr,
    relay: &Running,
    page_url: &str,
) {
    let heartbeat = secs(options.heartbeat.unwrap_or(DEFAULT_HEARTBEAT));
    let (head, pause) = (secs(options.head_delay), secs(options.pause));
    out.heading("sse-edge demo: a slow model API behind the relay, on this machine");
    out.line(&format!(
        "The simulated API sends nothing for {head} before its headers and pauses {pause}\n\
         mid-stream. Proxies and SDKs cut connections that stay silent too long, so the\n\
         relay writes a keepalive after every {heartbeat} of silence, where event-stream\n\
         parsers ignore it.\n"
    ));
    let (listen, admin) = (report::shown(relay.listen), report::shown(relay.admin));
    out.line(&format!(
        "  simulated model API  http://{api}   one token per word, {}ms apart",
        TOKEN_GAP.as_millis()
    ));
    out.line(&format!(
        "  relay                http://{listen}   heartbeat {heartbeat}"
    ));
    out.line(&format!(
        "  relay admin          http://{admin}   /healthz /readyz /metrics"
    ));
    let stays = if options.keep_running {
        ""
    } else {
        " (add --keep-running to keep it up)"
    };
    out.line(&format!(
        "  browser page         {page_url}   a chat through the relay's {} route, with a \"cut the connection\" button{stays}\n",
        page::ROUTE
    ));
    out.line(&out.dim("  → request  ← response head  ♥ keepalive from the relay  ● event  ▸ tokens  Σ usage  ■ end"));
}

async fn demo_requests(
    out: &mut Output,
    options: &DemoOptions,
    relay: &Running,
    lines: &mut mpsc::Receiver<String>,
) -> Result<(), DemoError> {
    let limit = options.head_delay + options.pause + Duration::from_secs(60);
    for (i, scenario) in SCENARIOS.iter().enumerate() {
        out.heading(&format!(
            "{}/{}  {}: POST {}",
            i + 1,
            SCENARIOS.len(),
            scenario.title,
            scenario.path
        ));
        out.line(&out.dim(scenario.body));
        let transcript = client::stream(scenario, relay.listen, out, limit).await?;
        let keepalives = match transcript.keepalives {
            1 => "1 keepalive".to_owned(),
            n => format!("{n} keepalives"),
        };
        out.line(&format!(
            "  client: complete, {keepalives}, {} characters of text\n",
            transcript.text.chars().count()
        ));
        match tokio::time::timeout(LOG_WAIT, lines.recv()).await {
            Ok(Some(line)) => report::access_line(out, &line),
            _ => out.line("  (the relay wrote no access-log line in time)"),
        }
    }
    let metrics = client::get(relay.admin, "/metrics").await?;
    report::metrics(out, relay.admin, &metrics);
    Ok(())
}

async fn print_lines(mut out: Output, mut lines: mpsc::Receiver<String>) {
    while let Some(line) = lines.recv().await {
        out.line("");
        report::access_line(&mut out, &line);
    }
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0}s")
    } else {
        format!("{s:.1}s")
    }
}
