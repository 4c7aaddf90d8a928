//! Tests of [`super::from_args`] down through `config`: precedence,
//! errors, routes, check-config.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::{CliError, Invocation, from_args};
use crate::config::{
    Config, DialectSetting, EndpointConfig, RootStore, RouteConfig, StreamConfig, Timeouts,
    UpstreamProtocol,
};

mod cors;
mod groups;
mod shape;
mod stream_keys;

const UP: &str = "--upstream=http://127.0.0.1:8000";

/// A file under the temp dir with a name unique to this process and call.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str, contents: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("sse-edge-cfg-{}-{n}-{tag}", std::process::id());
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, contents).unwrap();
        Self(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn load(args: &[&str], env: &[(&str, &str)]) -> Result<Invocation, CliError> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let argv = std::iter::once("sse-edge").chain(args.iter().copied());
    from_args(argv, &move |k| env.get(k).cloned())
}

/// The only endpoint of a route of the `upstream = "URL"` form.
fn endpoint(r: &RouteConfig) -> &EndpointConfig {
    let [group] = &r.upstreams.chain[..] else {
        panic!("{:?}", r.upstreams)
    };
    let [e] = &group.endpoints[..] else {
        panic!("{group:?}")
    };
    assert!(r.upstreams.context.is_none());
    assert_eq!(group.name, "primary");
    assert_eq!(group.timeouts, r.stream.timeouts);
    e
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Config {
    match load(args, env) {
        Ok(Invocation::Run(config)) => config,
        other => panic!("expected Run, got {other:?}"),
    }
}

fn error(args: &[&str], env: &[(&str, &str)]) -> String {
    match load(args, env) {
        Err(CliError::Invalid(msg)) => {
            assert!(!msg.contains('\n'), "multi-line error: {msg}");
            msg
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn defaults() {
    let c = run(&[UP], &[]);
    assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.admin.to_string(), "127.0.0.1:9090");
    assert!((1..=1024).contains(&c.workers));
    assert_eq!(c.drain_timeout, Duration::from_secs(30));
    assert_eq!(c.server.backlog, 1024);
    assert_eq!(c.server.tcp_keepalive, Some(Duration::from_secs(60)));
    assert_eq!(c.server.max_request_body, 32 << 20);
    assert!(c.server.http2 && !c.server.trust_forwarded);
    assert!(c.server.server_names.is_empty());
    assert!(c.tls.is_none());
    assert_eq!(c.upstream.connect_timeout, Duration::from_secs(5));
    assert_eq!(c.upstream.h2_max_streams_per_connection, 100);
    assert_eq!(c.upstream.roots, RootStore::Both);
    assert!(c.log.access_log);
    assert_eq!(c.log.level, "info");
    let r = &c.routes[..];
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].name.as_str(), r[0].prefix.as_str()), ("default", "/"));
    let e = endpoint(&r[0]);
    assert_eq!((e.url.host.as_str(), e.url.port), ("127.0.0.1", 8000));
    assert_eq!(
        (e.name.as_str(), e.weight, e.model.as_ref()),
        ("127.0.0.1:8000", 1, None)
    );
    assert!(e.key.is_none());
    assert_eq!(r[0].stream.heartbeat, Duration::from_secs(15));
    assert_eq!(r[0].stream, StreamConfig::default());
    let five_minutes = Some(Duration::from_secs(300));
    assert_eq!(
        r[0].stream.timeouts,
        Timeouts {
            first_byte: five_minutes,
            first_event: five_minutes,
            read: five_minutes,
        }
    );
    assert!(r[0].stream.retry_on_reset);
    assert_eq!(r[0].dialect, DialectSetting::Auto);
}

#[test]
fn precedence_flag_env_file_default() {
    let file = TempFile::new(
        "prec.toml",
        "listen = \"10.0.0.1:1\"\n[upstream]\nconnect_timeout = \"7s\"\nidle_timeout = \"9s\"\n",
    );
    let cfg = ["--config", file.path(), UP];
    let env_listen = ("SSE_EDGE_LISTEN", "10.0.0.2:2");
    let env_ct = ("SSE_EDGE_UPSTREAM_CONNECT_TIMEOUT", "8s");
    // file beats default
    let c = run(&cfg, &[]);
    assert_eq!(c.listen.to_string(), "10.0.0.1:1");
    assert_eq!(c.upstream.connect_timeout, Duration::from_secs(7));
    assert_eq!(c.upstream.idle_timeout, Duration::from_secs(9));
    assert_eq!(c.upstream.tcp_keepalive, Some(Duration::from_secs(60)));
    // env beats file
    let c = run(&cfg, &[env_listen, env_ct]);
    assert_eq!(c.listen.to_string(), "10.0.0.2:2");
    assert_eq!(c.upstream.connect_timeout, Duration::from_secs(8));
    // flag beats env
    let mut args = cfg.to_vec();
    args.extend(["--listen", "10.0.0.3:3", "--upstream-connect-timeout=1m30s"]);
    let c = run(&args, &[env_listen, env_ct]);
    assert_eq!(c.listen.to_string(), "10.0.0.3:3");
    assert_eq!(c.upstream.connect_timeout, Duration::from_secs(90));
    // config file named through the environment; empty env counts as unset
    let c = run(
        &[UP],
        &[("SSE_EDGE_CONFIG", file.path()), ("SSE_EDGE_LISTEN", "")],
    );
    assert_eq!(c.listen.to_string(), "10.0.0.1:1");
}

#[test]
fn bad_values_name_key_source_and_value() {
    let msg = error(&[UP], &[("SSE_EDGE_UPSTREAM_CONNECT_TIMEOUT", "5x")]);
    assert_eq!(
        msg,
        "invalid value for upstream.connect_timeout (from SSE_EDGE_UPSTREAM_CONNECT_TIMEOUT): \
         \"5x\": expected a duration like 250ms, 15s, 2m or 1h"
    );
    let msg = error(&[UP, "--server-max-request-body", "3TB"], &[]);
    assert!(msg.starts_with(
        "invalid value for server.max_request_body (from --server-max-request-body): \"3TB\""
    ));
    let msg = error(&[UP, "--admin", "localhost:9"], &[]);
    assert!(
        msg.contains("admin") && msg.contains("\"localhost:9\""),
        "{msg}"
    );
    let msg = error(&["--upstream", "ftp://x"], &[]);
    assert!(
        msg.starts_with("invalid value for upstream (from --upstream): \"ftp://x\""),
        "{msg}"
    );
    let msg = error(&[], &[("SSE_EDGE_UPSTREAM", "https://h/?q")]);
    assert!(msg.contains("(from SSE_EDGE_UPSTREAM)"), "{msg}");
    let msg = error(&[UP, "--upstream-roots", "all"], &[]);
    assert!(
        msg.contains("upstream.roots") && msg.contains("webpki, native, both, none"),
        "{msg}"
    );
    let msg = error(&[UP, "--dialect", "cohere"], &[]);
    assert!(msg.contains("invalid value for dialect"), "{msg}");
    let msg = error(&[UP, "--workers", "0"], &[]);
    assert!(
        msg.contains("workers") && msg.contains("1 to 1024"),
        "{msg}"
    );
    let msg = error(&[UP, "--heartbeat", "50ms"], &[]);
    assert!(
        msg.contains("heartbeat") && msg.contains("at least 100ms"),
        "{msg}"
    );
    let msg = error(&[UP, "--server-http2", "yes"], &[]);
    assert!(msg.contains("server.http2"), "{msg}");
    let msg = error(&[UP, "--server-header-read-timeout", "0"], &[]);
    assert!(msg.contains("server.header_read_timeout"), "{msg}");
}

#[test]
fn file_errors() {
    let unknown = TempFile::new("unknown.toml", "[server]\nfoo = 1\n");
    let msg = error(&["--config", unknown.path(), UP], &[]);
    assert_eq!(
        msg,
        format!("unknown key server.foo in config file {}", unknown.path())
    );
    let top = TempFile::new("top.toml", "lisen = \"x\"\n");
    assert!(error(&["--config", top.path(), UP], &[]).starts_with("unknown key lisen"));
    let typed = TempFile::new("type.toml", "[server]\nbacklog = \"many\"\n");
    let msg = error(&["--config", typed.path(), UP], &[]);
    assert!(
        msg.contains("server.backlog") && msg.contains("expected an integer"),
        "{msg}"
    );
    let neg = TempFile::new("neg.toml", "[server]\nbacklog = -1\n");
    let msg = error(&["--config", neg.path(), UP], &[]);
    assert!(
        msg.contains("server.backlog") && msg.contains("\"-1\""),
        "{msg}"
    );
    let syntax = TempFile::new("syntax.toml", "listen = \"a\"\n[server\nbacklog = 1\n");
    let msg = error(&["--config", syntax.path(), UP], &[]);
    assert!(
        msg.contains(syntax.path()) && msg.contains("line 2"),
        "{msg}"
    );
    let msg = error(&["--config", "/nonexistent/sse-edge.toml", UP], &[]);
    assert!(
        msg.contains("cannot read config file /nonexistent/sse-edge.toml"),
        "{msg}"
    );
}

#[test]
fn tls_pair_and_files() {
    let cert = TempFile::new("cert.pem", "cert");
    let key = TempFile::new("key.pem", "key");
    let msg = error(&[UP, "--tls-cert", cert.path()], &[]);
    assert!(msg.contains("tls.key is not"), "{msg}");
    let msg = error(&[UP], &[("SSE_EDGE_TLS_KEY", key.path())]);
    assert!(
        msg.contains("tls.key is set (from SSE_EDGE_TLS_KEY)"),
        "{msg}"
    );
    let msg = error(
        &[
            UP,
            "--tls-cert",
            "/nonexistent.pem",
            "--tls-key",
            key.path(),
        ],
        &[],
    );
    assert!(msg.starts_with("invalid value for tls.cert (from --tls-cert): \"/nonexistent.pem\""));
    let c = run(
        &[UP, "--tls-cert", cert.path(), "--tls-key", key.path()],
        &[],
    );
    let tls = c.tls.unwrap();
    assert_eq!(tls.cert.to_str(), Some(cert.path()));
    assert_eq!(tls.handshake_timeout, Duration::from_secs(10));
    let msg = error(&[UP, "--upstream-roots", "none"], &[]);
    assert!(msg.contains("upstream.ca_file is not set"), "{msg}");
    let c = run(
        &[
            UP,
            "--upstream-roots",
            "none",
            "--upstream-ca-file",
            cert.path(),
        ],
        &[],
    );
    assert_eq!(
        c.upstream.ca_file.as_deref().and_then(|p| p.to_str()),
        Some(cert.path())
    );
}

const ROUTES: &str = r#"
heartbeat = "5s"
dialect = "openai"

[server]
server_names = ["Relay.Example", "b.example"]

[[route]]
prefix = "/anthropic/"
upstream = "https://api.anthropic.com"
strip_prefix = true
dialect = "anthropic"

[[route]]
name = "oai"
upstream = "https://api.openai.com/v1/"
protocol = "http2"
heartbeat = "1m"
"#;

#[test]
fn routes_from_file_inherit_heartbeat_and_dialect() {
    let file = TempFile::new("routes.toml", ROUTES);
    let c = run(&["--config", file.path()], &[]);
    assert_eq!(c.server.server_names, ["relay.example", "b.example"]);
    let [a, o] = &c.routes[..] else {
        panic!("{:?}", c.routes)
    };
    assert_eq!(
        (a.name.as_str(), a.prefix.as_str()),
        ("/anthropic", "/anthropic")
    );
    assert!(a.strip_prefix);
    assert_eq!(a.dialect, DialectSetting::Anthropic);
    assert_eq!(a.stream.heartbeat, Duration::from_secs(5));
    assert_eq!(endpoint(a).protocol, UpstreamProtocol::Auto);
    assert_eq!(endpoint(a).name, "api.anthropic.com");
    assert_eq!((o.name.as_str(), o.prefix.as_str()), ("oai", "/"));
    assert_eq!(endpoint(o).url.base_path, "/v1");
    assert_eq!(o.dialect, DialectSetting::OpenAi);
    assert_eq!(o.stream.heartbeat, Duration::from_secs(60));
    assert_eq!(endpoint(o).protocol, UpstreamProtocol::Http2);
    // a flag for the top-level default reaches inheriting routes only
    let c = run(&["--config", file.path(), "--heartbeat", "2s"], &[]);
    assert_eq!(c.routes[0].stream.heartbeat, Duration::from_secs(2));
    assert_eq!(c.routes[1].stream.heartbeat, Duration::from_secs(60));
}

/// Top-level values for every stream key; route[0] inherits them all,
/// route[1] overrides them all.
const STREAMS: &str = r#"
heartbeat = "2s"
keepalive_frame = "event: ping\ndata: {\"t\": {now_ms}}\n\n"
max_event_size = "64KiB"
early_commit = false
json_keepalive = true
retry_attempts = 0
retry_budget = "0"
retry_backoff = "1s"
include_usage = true
resume_window = "30s"
resume_max_bytes = "64KiB"
retry_on_reset = false
continuation_attempts = 1

[upstream]
first_byte_timeout = "1m"
first_event_timeout = 0
read_timeout = "10s"

[[route]]
prefix = "/inherit"
upstream = "http://a"

[[route]]
prefix = "/own"
upstream = "http://b"
heartbeat = "250ms"
keepalive_frame = ": keepalive\n\n"
max_event_size = 2048
early_commit = true
json_keepalive = false
retry_attempts = 20
retry_budget = "1m30s"
retry_backoff = "100ms"
include_usage = false
resume = { window = "2m", max_bytes = "8MiB" }
retry_on_reset = true
continuation_attempts = 5
first_byte_timeout = "2s"
first_event_timeout = "3s"
read_timeout = 0
"#;

fn has_line(text: &str, line: &str) {
    assert!(
        text.lines().any(|l| l == line),
        "{line:?} missing from:\n{text}"
    );
}

/// Runs check-config, checks the config with `inspect`, checks that the
/// rendering loads to the same config, and returns the rendering. The
/// reload sees none of the `SSE_EDGE_*` settings of `env`, only the rest
/// (the upstream keys' variables).
fn check(args: &[&str], env: &[(&str, &str)], inspect: impl Fn(&Config)) -> String {
    let Ok(Invocation::CheckConfig { config, rendered }) = load(args, env) else {
        panic!("expected CheckConfig");
    };
    inspect(&config);
    let again = TempFile::new("again-streams.toml", &rendered);
    let keys: Vec<_> = env
        .iter()
        .copied()
        .filter(|(k, _)| !k.starts_with("SSE_EDGE_"))
        .collect();
    let Ok(Invocation::CheckConfig { config: c2, .. }) =
        load(&["check-config", again.path()], &keys)
    else {
        panic!("rendering did not load:\n{rendered}");
    };
    assert_eq!(format!("{c2:?}"), format!("{config:?}"), "{rendered}");
    rendered
}

#[test]
fn upstream_flag_replaces_file_routes() {
    let file = TempFile::new("replace.toml", ROUTES);
    let c = run(
        &[
            "--config",
            file.path(),
            "--upstream",
            "https://[::1]:8443/base",
        ],
        &[],
    );
    let [r] = &c.routes[..] else {
        panic!("{:?}", c.routes)
    };
    assert_eq!((r.name.as_str(), r.prefix.as_str()), ("default", "/"));
    let e = endpoint(r);
    assert_eq!((e.url.host.as_str(), e.url.port), ("::1", 8443));
    assert_eq!(e.name, "[::1]:8443");
    assert_eq!(r.dialect, DialectSetting::OpenAi);
    assert_eq!(r.stream.heartbeat, Duration::from_secs(5));
}

#[test]
fn route_errors() {
    assert_eq!(
        error(&[], &[]),
        "no routes: give --upstream URL or [[route]] entries in the config file"
    );
    let cases = [
        (
            "[[route]]\nprefix = \"/a\"\n",
            "missing key route[0].upstream",
        ),
        (
            "[[route]]\nupstream = \"http://a\"\nport = 1\n",
            "unknown key route[0].port",
        ),
        (
            "[[route]]\nupstream = \"http://a\"\nprefix = \"a\"\n",
            "invalid value for route[0].prefix",
        ),
        (
            "[[route]]\nupstream = \"http://a\"\nprotocol = \"h3\"\n",
            "invalid value for route[0].protocol",
        ),
        (
            "[[route]]\nupstream = \"http://a\"\nstrip_prefix = \"yes\"\n",
            "route[0].strip_prefix",
        ),
        (
            "[[route]]\nupstream = \"http://a\"\n[[route]]\nupstream = \"gopher://b\"\n",
            "route[1].upstream",
        ),
        (
            "[[route]]\nupstream = \"http://a\"\n[[route]]\nupstream = \"http://b\"\nprefix = \"/\"\n",
            "duplicate route prefix",
        ),
        (
            "[route]\nupstream = \"http://a\"\n",
            "invalid type for route",
        ),
    ];
    for (i, (toml, want)) in cases.into_iter().enumerate() {
        let file = TempFile::new(&format!("route-err-{i}.toml"), toml);
        let msg = error(&["--config", file.path()], &[]);
        assert!(msg.contains(want), "case {i}: {msg}");
    }
}

#[test]
fn check_config_renders_sources_and_round_trips() {
    let file = TempFile::new("check.toml", ROUTES);
    let args = ["check-config", file.path(), "--listen", "0.0.0.0:443"];
    let env = [("SSE_EDGE_UPSTREAM_IDLE_TIMEOUT", "20s")];
    let Ok(Invocation::CheckConfig { config, rendered }) = load(&args, &env) else {
        panic!("expected CheckConfig");
    };
    assert_eq!(config.listen.to_string(), "0.0.0.0:443");
    let has = |needle: &str| {
        assert!(
            rendered.contains(needle),
            "{needle:?} missing from:\n{rendered}"
        )
    };
    has("# from flag --listen");
    has("# from env SSE_EDGE_UPSTREAM_IDLE_TIMEOUT");
    has("heartbeat = \"5s\"");
    has("# from file");
    has("backlog = 1024");
    has("# from default");
    has("# cert is not set");
    has("server_names = [\"Relay.Example\", \"b.example\"]");
    has("[[route]]  # from file");
    has("heartbeat = \"5s\"  # inherited from top-level heartbeat");
    has("\nheartbeat = \"1m\"\n");
    has("dialect = \"anthropic\"\n");
    has("max_event_size = \"8MiB\"  # inherited from top-level max_event_size");
    has("retry_backoff = \"500ms\"  # inherited from top-level retry_backoff");
    has("# keepalive_frame is not set  # inherited from top-level keepalive_frame");
    // the rendering is itself a valid config file giving the same result
    let again = TempFile::new("again.toml", &rendered);
    let Ok(Invocation::CheckConfig {
        config: c2,
        rendered: r2,
    }) = load(&["check-config", again.path()], &[])
    else {
        panic!("rendering did not load");
    };
    assert_eq!(format!("{:?}", c2), format!("{:?}", config));
    assert!(r2.contains("listen = \"0.0.0.0:443\""));
}

#[test]
fn cli_outcomes() {
    let Err(CliError::Clap(help)) = load(&["--help"], &[]) else {
        panic!("no help")
    };
    let help = help.to_string();
    for needle in [
        "--upstream-connect-timeout",
        "SSE_EDGE_UPSTREAM_CONNECT_TIMEOUT",
        "--tls-cert",
        "check-config",
        "Streams:",
        "--keepalive-frame <FRAME>",
        "SSE_EDGE_RETRY_BUDGET",
        "--max-event-size <SIZE>",
        "--upstream-first-event-timeout <DURATION>",
        "SSE_EDGE_RETRY_ON_RESET",
        "routes and groups may override it",
    ] {
        assert!(help.contains(needle), "{needle} missing from help");
    }
    assert!(help.contains("TLS edge relay that keeps streaming model-API responses alive"));
    assert!(matches!(load(&["--version"], &[]), Err(CliError::Clap(_))));
    assert!(matches!(
        load(&["--no-such-flag"], &[]),
        Err(CliError::Clap(_))
    ));
    assert!(matches!(
        load(&["check-config"], &[]),
        Err(CliError::Clap(_))
    ));
    // last occurrence of a repeated flag wins
    let c = run(&[UP, "--workers", "3", "--workers", "4"], &[]);
    assert_eq!(c.workers, 4);
}
