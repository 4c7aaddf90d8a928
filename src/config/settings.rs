//! The settings table: every configuration key except routes.
//!
//! Each [`Setting`] is declared once in [`SETTINGS`] with its value kind,
//! built-in default and `--help` text; the command-line flag
//! (`--upstream-connect-timeout`), environment variable
//! (`SSE_EDGE_UPSTREAM_CONNECT_TIMEOUT`) and file key
//! (`[upstream] connect_timeout`) are derived from its dotted key
//! ([`names`]). [`super::load`] layers the values; [`flags`] describes
//! them to the command line, which lives above config.

use std::sync::OnceLock;

use super::load::Source;
use super::nofile;
use super::value::{Kind, Raw};

const ENV_PREFIX: &str = "SSE_EDGE_";

/// Value used when no layer sets the key.
#[derive(Clone, Copy)]
pub(super) enum Fallback {
    Value(&'static str),
    /// `std::thread::available_parallelism`, at most 1024.
    Cpus,
    /// The client connections the open-file limit leaves room for
    /// ([`nofile::room`]).
    OpenFiles,
    Unset,
}

pub(super) struct Setting {
    /// Dotted TOML path; at most one level of section.
    pub(super) key: &'static str,
    pub(super) kind: Kind,
    pub(super) default: Fallback,
    help: &'static str,
    /// `--help` heading; `None` derives it from the section.
    pub(super) heading: Option<&'static str>,
}

const fn set(key: &'static str, kind: Kind, default: Fallback, help: &'static str) -> Setting {
    Setting {
        key,
        kind,
        default,
        help,
        heading: None,
    }
}

/// A stream setting: top-level default of a key every `[[route]]` may set.
const fn stream(key: &'static str, kind: Kind, default: Fallback, help: &'static str) -> Setting {
    Setting {
        heading: Some("Streams"),
        ..set(key, kind, default, help)
    }
}

use Fallback::{Cpus, OpenFiles, Unset, Value as V};
const ROOTS: &[&str] = &["webpki", "native", "both", "none"];
const DIALECTS: &[&str] = &["auto", "openai", "anthropic", "generic"];

/// Every setting except routes; flags, env vars and file keys derive from it.
#[rustfmt::skip]
pub(super) const SETTINGS: &[Setting] = &[
    set("listen", Kind::Addr, V("127.0.0.1:8080"), "Address of the client-facing listener"),
    set("admin", Kind::Addr, V("127.0.0.1:9090"), "Address of the admin listener (/healthz, /readyz, /metrics)"),
    set("workers", Kind::Int, Cpus, "Worker threads, 1..=1024"),
    set("drain_timeout", Kind::Duration, V("30s"), "How long in-flight requests may run after SIGTERM/SIGINT"),
    set("dialect", Kind::Choice(DIALECTS), V("auto"), "API dialect; routes inherit it"),
    set("auth_reload_interval", Kind::Duration, V("10s"), "How often each route's auth_keys_file is checked for changes"),
    stream("heartbeat", Kind::Duration, V("15s"), "Downstream silence before a keepalive is injected (>= 100ms); routes inherit it"),
    stream("keepalive_frame", Kind::Frame, Unset, "Keepalive frame instead of the dialect's: SSE lines ending in a blank line, {now_ms} = Unix time in ms, \\n = newline on the command line; routes inherit it"),
    stream("max_event_size", Kind::Size, V("8MiB"), "Largest upstream event held, 1KiB..=1GiB; routes inherit it"),
    stream("early_commit", Kind::Bool, V("true"), "Commit 200 text/event-stream when upstream headers take longer than heartbeat; routes inherit it"),
    stream("json_keepalive", Kind::Bool, V("false"), "Keep slow non-streaming JSON responses alive with leading whitespace; routes inherit it"),
    stream("retry_attempts", Kind::Int, V("3"), "Further attempts of a streaming request after the first, on any endpoint, before the first upstream event, 0..=20; routes inherit it"),
    stream("retry_budget", Kind::Duration, V("60s"), "Total time spent waiting between attempts, Retry-After included; routes inherit it"),
    stream("retry_backoff", Kind::Duration, V("500ms"), "First backoff (> 0) before retrying one endpoint, doubled per retry up to 8x; routes inherit it"),
    stream("continuation_attempts", Kind::Int, V("0"), "Continuations of a stream cut after its first event, on endpoints that declare `continuation`, 0..=5; 0 turns continuation off; routes inherit it"),
    stream("retry_on_reset", Kind::Bool, V("true"), "Fail over when the upstream closes or resets the connection before any response byte, even after the request was written; routes inherit it"),
    stream("include_usage", Kind::Bool, V("false"), "OpenAI chat: ask the upstream for usage when the client did not, and strip it from the client's stream; routes inherit it"),
    stream("resume_window", Kind::Duration, V("0"), "Stream resumption: how long a stream outlives its client's disconnect, buffered for a reconnect with Last-Event-ID; 0 turns it off; routes inherit it"),
    stream("resume_max_bytes", Kind::Size, V("4MiB"), "Stream resumption: most bytes of recent events kept per stream, 4KiB..=1GiB; routes inherit it"),
    set("resume_memory", Kind::Size, V("256MiB"), "Stream resumption: most bytes all resume buffers hold together"),
    set("server.backlog", Kind::Int, V("1024"), "listen(2) backlog, 1..=65535"),
    set("server.tcp_keepalive", Kind::Duration, V("60s"), "TCP keepalive on accepted sockets; 0 turns it off"),
    set("server.header_read_timeout", Kind::Duration, V("15s"), "Deadline for a complete HTTP/1 request head"),
    set("server.max_request_body", Kind::Size, V("32MiB"), "Largest request body accepted"),
    set("server.http2", Kind::Bool, V("true"), "Accept HTTP/2 (h2c or ALPN h2)"),
    set("server.h2_max_concurrent_streams", Kind::Int, V("256"), "HTTP/2 streams per client connection, 1..=65535"),
    set("server.trust_forwarded", Kind::Bool, V("false"), "Append to client-supplied X-Forwarded-For"),
    set("server.server_names", Kind::List, V(""), "Host names accepted in absolute-form targets (comma-separated)"),
    set("server.max_header_size", Kind::Size, V("64KiB"), "Largest request head (HTTP/1) or header list (HTTP/2); 431 above it, 8KiB..=1MiB"),
    set("server.max_headers", Kind::Int, V("100"), "Most request header fields (HTTP/1); 431 above it, 1..=1000"),
    set("server.max_uri_length", Kind::Size, V("8KiB"), "Longest request target; 414 above it"),
    set("server.max_connections", Kind::Int, OpenFiles, "Open client connections (2 descriptors each, client and upstream); more are answered 503 and closed; at most (open-file limit - reserve) / 2"),
    set("server.max_requests", Kind::Int, V("10000"), "Requests in flight (streams included); more get 503 with Retry-After"),
    set("server.body_timeout", Kind::Duration, V("30s"), "Longest pause between request body bytes; 408 after it"),
    set("server.write_timeout", Kind::Duration, V("60s"), "How long a client may stop reading before its connection is closed"),
    set("server.idle_timeout", Kind::Duration, V("5m"), "HTTP/2 connections with no open request are closed after this (HTTP/1: header_read_timeout)"),
    set("tls.cert", Kind::Path, Unset, "PEM certificate chain; enables TLS together with --tls-key"),
    set("tls.key", Kind::Path, Unset, "PEM private key; enables TLS together with --tls-cert"),
    set("tls.handshake_timeout", Kind::Duration, V("10s"), "Deadline for a complete TLS handshake"),
    set("tls.reload_interval", Kind::Duration, V("10s"), "How often cert and key are checked for changes"),
    set("upstream.connect_timeout", Kind::Duration, V("5s"), "Upstream TCP + TLS + HTTP/2 handshake deadline"),
    set("upstream.first_byte_timeout", Kind::Duration, V("5m"), "Deadline from sending a request to the upstream's response head (504); 0 waits forever; routes and groups may override it"),
    set("upstream.first_event_timeout", Kind::Duration, V("5m"), "Deadline from an event stream's response head to its first event (upstream comments do not count); 0 waits forever; routes and groups may override it"),
    set("upstream.read_timeout", Kind::Duration, V("5m"), "Longest upstream silence inside a response body (keepalives do not count); 0 waits forever; routes and groups may override it"),
    set("upstream.idle_timeout", Kind::Duration, V("50s"), "Idle upstream HTTP/1.1 connections are closed after this"),
    set("upstream.max_idle_per_origin", Kind::Int, V("64"), "Idle HTTP/1.1 connections kept per origin at least (more after a peak of use, see the pool), 0..=65535; 0 turns pooling off"),
    set("upstream.h2_max_streams_per_connection", Kind::Int, V("100"), "Streams per upstream HTTP/2 connection"),
    set("upstream.tcp_keepalive", Kind::Duration, V("60s"), "TCP keepalive on upstream sockets; 0 turns it off"),
    set("upstream.roots", Kind::Choice(ROOTS), V("both"), "CA roots for upstream TLS"),
    set("upstream.ca_file", Kind::Path, Unset, "Extra PEM CA bundle for upstream TLS"),
    set("log.access_log", Kind::Bool, V("true"), "One JSON access-log line per request on stdout"),
    set("log.level", Kind::Text, V("info"), "Diagnostics filter used when RUST_LOG is unset"),
    set("usage.max_models", Kind::Int, V("32"), "Distinct model labels in token metrics before the rest fold into \"other\", 1..=10000"),
    set("usage.max_body_size", Kind::Size, V("1MiB"), "Largest non-streaming JSON response parsed for usage"),
    set("cluster.url", Kind::Text, Unset, "Cluster mode: redis:// or rediss:// URL (user, password, db) of the Redis or Valkey the replicas share rate limits and stream resumption through; unset keeps everything in-process"),
    set("cluster.connect_timeout", Kind::Duration, V("2s"), "Cluster mode: deadline for connecting to Redis"),
    set("cluster.command_timeout", Kind::Duration, V("250ms"), "Cluster mode: deadline for one Redis round trip; past it the route's rate_limit_on_cluster_error applies"),
    set("cluster.key_prefix", Kind::Text, V("sse-edge:"), "Cluster mode: prefix of every Redis key the relay writes, at most 64 bytes"),
    set("cluster.ca_file", Kind::Path, Unset, "Cluster mode: PEM CA bundle that verifies a rediss:// server instead of the system's CA store (a managed Redis with its own CA)"),
    set("cluster.rate_limit_lease", Kind::Duration, V("100ms"), "Cluster mode: a replica takes this much of a rate limit's tokens from Redis at once and spends them without a round trip (0s: one round trip per request)"),
];

/// Names derived from a setting's key, computed once so clap can borrow them.
pub(super) struct Names {
    pub(super) flag: String,
    pub(super) env: String,
}

pub(super) fn names() -> &'static [Names] {
    static NAMES: OnceLock<Vec<Names>> = OnceLock::new();
    NAMES.get_or_init(|| {
        SETTINGS
            .iter()
            .map(|s| Names {
                flag: s.key.replace(['.', '_'], "-"),
                env: format!(
                    "{ENV_PREFIX}{}",
                    s.key.to_ascii_uppercase().replace('.', "_")
                ),
            })
            .collect()
    })
}

/// A setting as the command line shows it.
pub(crate) struct Flag {
    /// The dotted key (`upstream.connect_timeout`).
    pub(crate) key: &'static str,
    /// Long flag name without the dashes (`upstream-connect-timeout`).
    pub(crate) name: &'static str,
    /// The environment variable (`SSE_EDGE_UPSTREAM_CONNECT_TIMEOUT`).
    pub(crate) env: &'static str,
    /// Placeholder shown in `--help` (`DURATION`).
    pub(crate) value_name: &'static str,
    /// The `--help` line: what it does, its variable, choices and default.
    pub(crate) help: String,
    /// The `--help` section it is listed under.
    pub(crate) heading: &'static str,
}

/// Every setting's flag, in [`SETTINGS`] order.
pub(crate) fn flags() -> impl Iterator<Item = Flag> {
    SETTINGS.iter().zip(names()).map(|(setting, names)| {
        let section = setting.key.split_once('.').map_or("", |(s, _)| s);
        let heading = setting.heading.unwrap_or(match section {
            "server" => "Server",
            "tls" => "TLS",
            "upstream" => "Upstream",
            "log" => "Logging",
            "cluster" => "Cluster",
            _ => "Relay",
        });
        Flag {
            key: setting.key,
            name: &names.flag,
            env: &names.env,
            value_name: setting.kind.value_name(),
            help: help_text(setting, names),
            heading,
        }
    })
}

fn help_text(setting: &Setting, names: &Names) -> String {
    let mut help = format!("{} [env: {}]", setting.help, names.env);
    if let Kind::Choice(choices) = setting.kind {
        help.push_str(&format!(" [possible values: {}]", choices.join(", ")));
    }
    match setting.default {
        V("") | Unset => {}
        V(value) => help.push_str(&format!(" [default: {value}]")),
        Cpus => help.push_str(" [default: number of CPUs]"),
        OpenFiles => help.push_str(&format!(
            " [default: (open-file limit - reserve) / 2, reserve {} or a quarter of the limit]",
            nofile::RESERVE
        )),
    }
    help
}

/// The built-in value of a setting and its source.
pub(super) fn default_value(fallback: Fallback) -> Option<(Raw, Source)> {
    let value = match fallback {
        V(value) => value.to_owned(),
        Cpus => {
            let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
            cpus.min(1024).to_string()
        }
        OpenFiles => {
            // The relay's own default when the limit cannot be read.
            let Some(limit) = nofile::soft_limit() else {
                let how = "open-file limit unknown".to_owned();
                return Some((Raw::One("10000".to_owned()), Source::Derived(how)));
            };
            // At least 1, so that a limit with no room is refused naming it.
            let room = nofile::room(limit).max(1);
            let how = nofile::describe(limit);
            return Some((Raw::One(room.to_string()), Source::Derived(how)));
        }
        Unset => return None,
    };
    Some((Raw::One(value), Source::Default))
}
