//! Builds a [`Config`] from the command line, the environment and a TOML file.
//!
//! Precedence, per setting: command-line flag > `SSE_EDGE_*` environment
//! variable > config file > built-in default. Every setting is declared once
//! in [`SETTINGS`] ([`super::settings`]); its flag (`--upstream-connect-timeout`), environment
//! variable (`SSE_EDGE_UPSTREAM_CONNECT_TIMEOUT`) and file key
//! (`[upstream] connect_timeout`) are derived from its dotted key. Empty
//! environment variables count as unset.
//!
//! Routes are the exception: `--upstream URL` (or `SSE_EDGE_UPSTREAM`)
//! defines one catch-all route that replaces every `[[route]]` of the file.
//! Routes inherit the top-level `dialect` and stream settings (`heartbeat`,
//! `keepalive_frame`, `retry_*`, ...) unless they set their own; see
//! [`super::routes`]. [`super::render`] prints the check-config rendering.
//!
//! Every error is one line naming the key, where the value came from, the
//! value and what is allowed.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, ArgMatches, Command};

use super::nofile;
use super::render::render;
use super::routes::load_routes;
use super::settings::{Names, SETTINGS, Setting, default_value, help_text, names};
use super::value::{
    Raw, parse_bool, parse_duration, parse_heartbeat, parse_log_level, parse_number,
    parse_optional_duration, parse_positive_duration, parse_readable_file, parse_root_store,
    parse_server_name, parse_size, parse_size_in, parse_socket_addr,
};
use crate::demo::DemoOptions;

use super::{
    Config, LogConfig, RootStore, RouteConfig, ServerConfig, ServerLimits, TlsConfig,
    UpstreamConfig, UsageConfig,
};

const ABOUT: &str = "TLS edge relay that keeps streaming model-API responses alive";
const AFTER_HELP: &str = "Precedence: flag > SSE_EDGE_* environment variable > config file > \
default. --upstream replaces the config file's [[route]] entries.";

/// What the command line asked for.
#[derive(Debug)]
pub enum Invocation {
    /// Run the relay.
    Run(Config),
    /// `sse-edge check-config FILE`: validated config plus its rendering.
    CheckConfig { config: Config, rendered: String },
    /// `sse-edge demo`: a simulated slow model API behind the relay.
    Demo(DemoOptions),
    /// `sse-edge hash-key`: print the SHA-256 digest of the key on stdin,
    /// for an `auth_keys_file` (no configuration is loaded).
    HashKey,
}

/// Why no [`Invocation`] could be built.
#[derive(Debug)]
pub enum ConfigError {
    /// clap's own outcome (`--help`, `--version`, unknown flag): the caller
    /// calls `.exit()`.
    Cli(clap::Error),
    /// One line: names the key, the bad value and what is allowed.
    Invalid(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cli(e) => write!(f, "{e}"),
            Self::Invalid(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Cli(e) => Some(e),
            Self::Invalid(_) => None,
        }
    }
}

/// Where a value came from.
#[derive(Debug, Clone)]
pub(super) enum Source {
    Default,
    /// A default computed from the machine; says how.
    Derived(String),
    File(String),
    Env(&'static str),
    /// Long flag name without the leading dashes.
    Flag(&'static str),
}

impl Source {
    /// The `# from ...` comment of the rendering.
    pub(super) fn comment(&self) -> String {
        match self {
            Self::Default => "default".to_owned(),
            Self::Derived(how) => format!("default: {how}"),
            Self::File(_) => "file".to_owned(),
            Self::Env(name) => format!("env {name}"),
            Self::Flag(flag) => format!("flag --{flag}"),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::Derived(how) => write!(f, "default, {how}"),
            Self::File(name) => write!(f, "config file {name}"),
            Self::Env(name) => f.write_str(name),
            Self::Flag(flag) => write!(f, "--{flag}"),
        }
    }
}

pub(super) struct Entry {
    pub(super) raw: Raw,
    pub(super) source: Source,
}

pub(super) fn invalid(key: &str, source: &Source, value: &str, why: &str) -> ConfigError {
    let why = one_line(why);
    ConfigError::Invalid(format!(
        "invalid value for {key} (from {source}): {value:?}: {why}"
    ))
}

pub(super) fn type_error(
    key: &str,
    file: &str,
    found: &toml::Value,
    expected: &str,
) -> ConfigError {
    let found = found.type_str();
    ConfigError::Invalid(format!(
        "invalid type for {key} in config file {file}: found {found}, expected {expected}"
    ))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The setting named `key` and its index in [`SETTINGS`].
pub(super) fn setting(key: &str) -> Result<(usize, &'static Setting), ConfigError> {
    SETTINGS
        .iter()
        .enumerate()
        .find(|(_, s)| s.key == key)
        .ok_or_else(|| ConfigError::Invalid(format!("internal error: no setting {key}")))
}

/// The text of a single (non-list) value.
pub(super) fn single<'a>(key: &str, raw: &'a Raw) -> Result<&'a str, ConfigError> {
    match raw {
        Raw::One(s) => Ok(s),
        Raw::Many(_) => Err(ConfigError::Invalid(format!(
            "internal error: {key} is a list"
        ))),
    }
}

/// The winning value of every setting, parallel to [`SETTINGS`].
pub(super) struct Values {
    pub(super) entries: Vec<Option<Entry>>,
}

impl Values {
    pub(super) fn find(&self, key: &str) -> Result<Option<&Entry>, ConfigError> {
        let (i, _) = setting(key)?;
        Ok(self.entries.get(i).and_then(Option::as_ref))
    }

    /// Parses the value of `key`, `None` when no layer sets it.
    fn opt<T>(&self, key: &str, parse: Parser<T>) -> Result<Option<T>, ConfigError> {
        let Some(entry) = self.find(key)? else {
            return Ok(None);
        };
        let s = single(key, &entry.raw)?;
        parse(s)
            .map(Some)
            .map_err(|why| invalid(key, &entry.source, s, &why))
    }

    pub(super) fn get<T>(&self, key: &str, parse: Parser<T>) -> Result<T, ConfigError> {
        self.opt(key, parse)?
            .ok_or_else(|| ConfigError::Invalid(format!("missing value for {key}")))
    }

    /// Parses each item of a list setting.
    fn list<T>(&self, key: &str, parse: Parser<T>) -> Result<Vec<T>, ConfigError> {
        let Some(entry) = self.find(key)? else {
            return Ok(Vec::new());
        };
        entry
            .raw
            .items()
            .into_iter()
            .map(|item| parse(item).map_err(|why| invalid(key, &entry.source, item, &why)))
            .collect()
    }

    fn source(&self, key: &str) -> Option<&Source> {
        self.find(key).ok().flatten().map(|e| &e.source)
    }
}

/// The config file, split into setting values and raw `[[route]]` tables.
pub(super) struct FileDoc {
    pub(super) name: String,
    settings: Vec<Option<Raw>>,
    pub(super) routes: Vec<toml::Table>,
}

fn load_file(path: &Path) -> Result<FileDoc, ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::Invalid(format!("cannot read config file {name}: {e}")))?;
    let table = text
        .parse::<toml::Table>()
        .map_err(|e| syntax_error(&name, &text, &e))?;
    split_file(name, table)
}

fn syntax_error(name: &str, text: &str, e: &toml::de::Error) -> ConfigError {
    let at = e.span().map_or_else(String::new, |span| {
        let before = text.get(..span.start).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!(" at line {line} column {column}")
    });
    let message = one_line(e.message());
    ConfigError::Invalid(format!("cannot parse config file {name}{at}: {message}"))
}

fn split_file(name: String, table: toml::Table) -> Result<FileDoc, ConfigError> {
    let settings = SETTINGS.iter().map(|_| None).collect();
    let mut doc = FileDoc {
        name,
        settings,
        routes: Vec::new(),
    };
    for (key, value) in table {
        if key == "route" {
            doc.routes = route_tables(&doc.name, value)?;
        } else if is_section(&key) {
            let toml::Value::Table(inner) = value else {
                return Err(type_error(&key, &doc.name, &value, "a table"));
            };
            for (sub, value) in inner {
                doc.put(&format!("{key}.{sub}"), &value)?;
            }
        } else {
            doc.put(&key, &value)?;
        }
    }
    Ok(doc)
}

fn is_section(name: &str) -> bool {
    SETTINGS.iter().any(|s| {
        s.key
            .split_once('.')
            .is_some_and(|(section, _)| section == name)
    })
}

impl FileDoc {
    fn put(&mut self, key: &str, value: &toml::Value) -> Result<(), ConfigError> {
        let found = SETTINGS
            .iter()
            .zip(self.settings.iter_mut())
            .find(|(s, _)| s.key == key);
        let Some((setting, slot)) = found else {
            let file = &self.name;
            return Err(ConfigError::Invalid(format!(
                "unknown key {key} in config file {file}"
            )));
        };
        let expected = setting.kind.toml_type();
        *slot = Some(
            Raw::from_toml(setting.kind, value)
                .ok_or_else(|| type_error(key, &self.name, value, expected))?,
        );
        Ok(())
    }
}

fn route_tables(file: &str, value: toml::Value) -> Result<Vec<toml::Table>, ConfigError> {
    let toml::Value::Array(items) = value else {
        return Err(type_error("route", file, &value, "[[route]] tables"));
    };
    let table = |(i, v): (usize, toml::Value)| match v {
        toml::Value::Table(t) => Ok(t),
        other => Err(type_error(&format!("route[{i}]"), file, &other, "a table")),
    };
    items.into_iter().enumerate().map(table).collect()
}

// ---- command line ----

/// Subcommands; add one here, in [`mode`] and in [`Invocation`]. `demo`
/// and `hash-key` need neither file nor routes and are handled first in
/// [`from_args`].
enum Mode {
    Run,
    CheckConfig(PathBuf),
}

fn command() -> Command {
    let path = clap::value_parser!(PathBuf);
    Command::new("sse-edge")
        .version(env!("CARGO_PKG_VERSION"))
        .about(ABOUT)
        .after_help(AFTER_HELP)
        .args_override_self(true)
        // Each subcommand lists and takes its own flags; the relay's given
        // before a subcommand would be ignored, so they are refused.
        .args_conflicts_with_subcommands(true)
        .arg(
            value_arg("config", "FILE", "TOML config file [env: SSE_EDGE_CONFIG]")
                .value_parser(path.clone()),
        )
        .arg(upstream_arg())
        .args(setting_args())
        .subcommand(
            Command::new("check-config")
                .about("Validate a config file and print the effective configuration as TOML")
                .args_override_self(true)
                .arg(
                    Arg::new("file")
                        .value_name("FILE")
                        .required(true)
                        .value_parser(path)
                        .help("TOML config file to check (takes the place of --config)"),
                )
                .arg(upstream_arg())
                .args(setting_args()),
        )
        .subcommand(demo_command())
        .subcommand(Command::new("hash-key").about(
            "Read a client key on stdin and print its SHA-256 hex digest for an auth_keys_file",
        ))
}

fn upstream_arg() -> Arg {
    value_arg(
        "upstream",
        "URL",
        "Single upstream for every path; replaces the file's [[route]] entries [env: SSE_EDGE_UPSTREAM]",
    )
}

/// A flag for every setting.
fn setting_args() -> impl Iterator<Item = Arg> {
    SETTINGS.iter().zip(names()).map(|(s, n)| setting_arg(s, n))
}

fn demo_command() -> Command {
    let duration = |id: &'static str, default: &'static str, help: &'static str| {
        Arg::new(id)
            .long(id)
            .value_name("DURATION")
            .default_value(default)
            .help(help)
    };
    let keep_running = Arg::new("keep-running")
        .long("keep-running")
        .action(ArgAction::SetTrue)
        .help(DEMO_KEEP_RUNNING);
    Command::new("demo")
        .about(DEMO_ABOUT)
        .after_help(DEMO_AFTER_HELP)
        .args_override_self(true)
        .arg(duration("head-delay", "4s", DEMO_HEAD_DELAY))
        .arg(duration("pause", "3s", DEMO_PAUSE))
        .arg(keep_running)
        .args(
            DEMO_RELAY_SETTINGS
                .iter()
                .map(|&(key, help, default)| demo_relay_arg(key, help, default)),
        )
}

const DEMO_ABOUT: &str =
    "Stream from a simulated slow model API through the relay and show what arrives when";
const DEMO_HEAD_DELAY: &str = "Silence of the simulated API before its response headers";
const DEMO_PAUSE: &str = "Silence of the simulated API in the middle of each stream";
const DEMO_KEEP_RUNNING: &str = "Keep the relay and the simulated API up after the demo \
(until Ctrl-C or SIGTERM) and print commands to try";
/// The relay settings the demo takes (read by [`demo_relay_settings`]):
/// key, help and default.
const DEMO_RELAY_SETTINGS: &[(&str, &str, &str)] = &[
    (
        "listen",
        "Address of the demo's relay",
        "127.0.0.1:8080 with --keep-running, else an ephemeral port",
    ),
    (
        "admin",
        "Address of the demo relay's admin listener",
        "127.0.0.1:9090 with --keep-running, else an ephemeral port",
    ),
    (
        "heartbeat",
        "Silence before the demo's relay injects a keepalive (>= 100ms)",
        "1s",
    ),
];
const DEMO_AFTER_HELP: &str = "The demo's relay reads no config file; every setting but these \
three keeps its default.";

/// The flag of one of [`DEMO_RELAY_SETTINGS`], named and read from the
/// environment like the relay's own.
fn demo_relay_arg(key: &'static str, help: &str, default: &str) -> Arg {
    let found = SETTINGS.iter().zip(names()).find(|(s, _)| s.key == key);
    let (flag, value_name, env) = match found {
        Some((s, n)) => (
            n.flag.as_str(),
            s.kind.value_name(),
            format!(" [env: {}]", n.env),
        ),
        None => (key, "VALUE", String::new()),
    };
    value_arg(flag, value_name, "")
        .help(format!("{help}{env} [default: {default}]"))
        .help_heading("Relay")
}

fn value_arg(id: &'static str, value_name: &'static str, help: &'static str) -> Arg {
    Arg::new(id)
        .long(id)
        .value_name(value_name)
        .action(ArgAction::Set)
        .help(help)
}

fn setting_arg(setting: &Setting, names: &'static Names) -> Arg {
    let section = setting.key.split_once('.').map_or("", |(s, _)| s);
    let heading = setting.heading.unwrap_or(match section {
        "server" => "Server",
        "tls" => "TLS",
        "upstream" => "Upstream",
        "log" => "Logging",
        _ => "Relay",
    });
    value_arg(names.flag.as_str(), setting.kind.value_name(), "")
        .help(help_text(setting, names))
        .help_heading(heading)
}

fn mode(matches: &ArgMatches) -> Result<Mode, ConfigError> {
    match matches.subcommand() {
        Some(("check-config", sub)) => sub
            .try_get_one::<PathBuf>("file")
            .ok()
            .flatten()
            .map(|file| Mode::CheckConfig(file.clone()))
            .ok_or_else(|| ConfigError::Invalid("check-config needs a FILE".to_owned())),
        _ => Ok(Mode::Run),
    }
}

/// The demo's own flags; the relay addresses and heartbeat are filled in by
/// [`demo_relay_settings`].
fn demo_options(sub: &ArgMatches) -> Result<DemoOptions, ConfigError> {
    let duration = |flag: &'static str| {
        let text = sub
            .try_get_one::<String>(flag)
            .ok()
            .flatten()
            .ok_or_else(|| ConfigError::Invalid(format!("demo needs --{flag}")))?;
        parse_duration(text).map_err(|why| invalid(flag, &Source::Flag(flag), text, &why))
    };
    Ok(DemoOptions {
        head_delay: duration("head-delay")?,
        pause: duration("pause")?,
        keep_running: sub.get_flag("keep-running"),
        listen: None,
        admin: None,
        heartbeat: None,
    })
}

/// `listen`, `admin` and `heartbeat` when a flag or environment variable
/// sets them (the demo has its own defaults).
fn demo_relay_settings(mut options: DemoOptions, v: &Values) -> Result<DemoOptions, ConfigError> {
    let given = |key: &str| {
        !matches!(
            v.source(key),
            None | Some(Source::Default | Source::Derived(_))
        )
    };
    if given("listen") {
        options.listen = v.opt("listen", parse_socket_addr)?;
    }
    if given("admin") {
        options.admin = v.opt("admin", parse_socket_addr)?;
    }
    if given("heartbeat") {
        options.heartbeat = v.opt("heartbeat", parse_heartbeat)?;
    }
    Ok(options)
}

/// A value parser from [`super::value`] (closures that capture nothing coerce).
pub(super) type Parser<T> = fn(&str) -> Result<T, String>;

pub(super) type EnvFn<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The flag's value, else the environment variable's (empty counts as unset).
pub(super) fn flag_or_env(
    m: &ArgMatches,
    flag: &'static str,
    var: &'static str,
    env: EnvFn,
) -> Option<(String, Source)> {
    let from_flag = m.try_get_one::<String>(flag).ok().flatten().cloned();
    match from_flag {
        Some(value) => Some((value, Source::Flag(flag))),
        None => env(var)
            .filter(|v| !v.is_empty())
            .map(|v| (v, Source::Env(var))),
    }
}

fn config_path(m: &ArgMatches, mode: &Mode, env: EnvFn) -> Option<PathBuf> {
    if let Mode::CheckConfig(file) = mode {
        return Some(file.clone());
    }
    let from_flag = m.try_get_one::<PathBuf>("config").ok().flatten().cloned();
    from_flag.or_else(|| {
        env("SSE_EDGE_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
}

/// Applies flag > env > file > default to every setting.
fn resolve(m: &ArgMatches, env: EnvFn, file: Option<&FileDoc>) -> Values {
    let layered = |(i, (setting, names)): (usize, (&Setting, &'static Names))| {
        let from_file = file.and_then(|f| {
            let raw = f.settings.get(i)?.clone()?;
            Some(Entry {
                raw,
                source: Source::File(f.name.clone()),
            })
        });
        flag_or_env(m, &names.flag, &names.env, env)
            .map(|(value, source)| Entry {
                raw: Raw::from_cli(setting.kind, value),
                source,
            })
            .or(from_file)
            .or_else(|| default_value(setting.default).map(|(raw, source)| Entry { raw, source }))
    };
    let entries = SETTINGS
        .iter()
        .zip(names())
        .enumerate()
        .map(layered)
        .collect();
    Values { entries }
}

/// Parses the command line (`args` includes the program name) and loads the
/// configuration. `env` looks up environment variables (main passes
/// `|k| std::env::var(k).ok()`).
///
/// # Errors
///
/// [`ConfigError::Cli`] for `--help`, `--version` and command-line misuse;
/// [`ConfigError::Invalid`] for any bad value, file or combination.
pub fn from_args<I, T>(
    args: I,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Invocation, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = command()
        .try_get_matches_from(args)
        .map_err(ConfigError::Cli)?;
    match matches.subcommand() {
        Some(("demo", sub)) => {
            // The demo runs its own upstream: no config file, no routes.
            let values = resolve(sub, env, None);
            return demo_relay_settings(demo_options(sub)?, &values).map(Invocation::Demo);
        }
        Some(("hash-key", _)) => return Ok(Invocation::HashKey),
        _ => {}
    }
    let mode = mode(&matches)?;
    // The relay's flags are the subcommand's when there is one.
    let m = matches.subcommand().map_or(&matches, |(_, sub)| sub);
    let file = match config_path(m, &mode, env) {
        Some(path) => Some(load_file(&path)?),
        None => None,
    };
    let values = resolve(m, env, file.as_ref());
    let routes = load_routes(&values, m, env, file.as_ref())?;
    let config = build_config(&values, routes.iter().map(|r| r.route.clone()).collect())?;
    match mode {
        Mode::Run => Ok(Invocation::Run(config)),
        Mode::CheckConfig(_) => {
            let rendered = render(&values, &routes)?;
            Ok(Invocation::CheckConfig { config, rendered })
        }
    }
}

// ---- typed config ----

fn build_config(v: &Values, routes: Vec<RouteConfig>) -> Result<Config, ConfigError> {
    Ok(Config {
        listen: v.get("listen", parse_socket_addr)?,
        admin: v.get("admin", parse_socket_addr)?,
        workers: v.get("workers", |s| parse_number(s, 1, 1024))?,
        drain_timeout: v.get("drain_timeout", parse_duration)?,
        server: build_server(v)?,
        tls: build_tls(v)?,
        upstream: build_upstream(v)?,
        routes,
        log: LogConfig {
            access_log: v.get("log.access_log", parse_bool)?,
            level: v.get("log.level", parse_log_level)?,
        },
        usage: UsageConfig {
            max_models: v.get("usage.max_models", |s| parse_number(s, 1, 10_000))?,
            max_body_size: v.get("usage.max_body_size", parse_size)?,
        },
        resume_memory: v.get("resume_memory", parse_size)?,
    })
}

fn build_server(v: &Values) -> Result<ServerConfig, ConfigError> {
    Ok(ServerConfig {
        backlog: v.get("server.backlog", |s| parse_number(s, 1, 65535))?,
        tcp_keepalive: v.get("server.tcp_keepalive", parse_optional_duration)?,
        header_read_timeout: v.get("server.header_read_timeout", parse_positive_duration)?,
        max_request_body: v.get("server.max_request_body", parse_size)?,
        http2: v.get("server.http2", parse_bool)?,
        h2_max_concurrent_streams: v.get("server.h2_max_concurrent_streams", |s| {
            parse_number(s, 1, 65535)
        })?,
        trust_forwarded: v.get("server.trust_forwarded", parse_bool)?,
        server_names: v.list("server.server_names", parse_server_name)?,
        limits: ServerLimits {
            max_header_size: v.get("server.max_header_size", |s| {
                parse_size_in(s, 8 << 10, 1 << 20)
            })?,
            max_headers: v.get("server.max_headers", |s| parse_number(s, 1, 1000))?,
            max_uri_length: v.get("server.max_uri_length", |s| parse_size_in(s, 256, 1 << 20))?,
            max_connections: max_connections(v)?,
            max_requests: v.get("server.max_requests", |s| parse_number(s, 1, 1_000_000))?,
            body_timeout: v.get("server.body_timeout", parse_positive_duration)?,
            write_timeout: v.get("server.write_timeout", parse_positive_duration)?,
            idle_timeout: v.get("server.idle_timeout", parse_positive_duration)?,
        },
    })
}

/// `server.max_connections`, refused when the open-file limit has no room
/// for that many connections (see [`super::nofile`]).
fn max_connections(v: &Values) -> Result<usize, ConfigError> {
    const KEY: &str = "server.max_connections";
    let n: u64 = v.get(KEY, |s| parse_number(s, 1, nofile::MAX_CONNECTIONS))?;
    let too_many = nofile::soft_limit().and_then(|limit| nofile::too_many(n, limit));
    if let (Some(why), Some(entry)) = (too_many, v.find(KEY)?) {
        return Err(invalid(KEY, &entry.source, &n.to_string(), &why));
    }
    usize::try_from(n).map_err(|_| ConfigError::Invalid(format!("{KEY} {n} is too large")))
}

fn build_tls(v: &Values) -> Result<Option<TlsConfig>, ConfigError> {
    let handshake_timeout = v.get("tls.handshake_timeout", parse_positive_duration)?;
    let reload_interval = v.get("tls.reload_interval", parse_positive_duration)?;
    match (v.source("tls.cert"), v.source("tls.key")) {
        (None, None) => return Ok(None),
        (Some(from), None) => return Err(half_pair("tls.cert", from, "tls.key")),
        (None, Some(from)) => return Err(half_pair("tls.key", from, "tls.cert")),
        (Some(_), Some(_)) => {}
    }
    Ok(Some(TlsConfig {
        cert: v.get("tls.cert", parse_readable_file)?,
        key: v.get("tls.key", parse_readable_file)?,
        handshake_timeout,
        reload_interval,
    }))
}

fn half_pair(given: &str, from: &Source, missing: &str) -> ConfigError {
    ConfigError::Invalid(format!(
        "{given} is set (from {from}) but {missing} is not: give both tls.cert and tls.key, or neither"
    ))
}

fn build_upstream(v: &Values) -> Result<UpstreamConfig, ConfigError> {
    let roots = v.get("upstream.roots", parse_root_store)?;
    let ca_file = v.opt("upstream.ca_file", parse_readable_file)?;
    if roots == RootStore::None && ca_file.is_none() {
        let from = v
            .source("upstream.roots")
            .cloned()
            .unwrap_or(Source::Default);
        return Err(ConfigError::Invalid(format!(
            "upstream.roots is none (from {from}) but upstream.ca_file is not set: \
             give a CA file or choose webpki, native or both"
        )));
    }
    Ok(UpstreamConfig {
        connect_timeout: v.get("upstream.connect_timeout", parse_positive_duration)?,
        first_byte_timeout: v.get("upstream.first_byte_timeout", parse_optional_duration)?,
        read_timeout: v.get("upstream.read_timeout", parse_optional_duration)?,
        idle_timeout: v.get("upstream.idle_timeout", parse_positive_duration)?,
        max_idle_per_origin: v.get("upstream.max_idle_per_origin", |s| {
            parse_number(s, 0, 65535)
        })?,
        h2_max_streams_per_connection: v.get("upstream.h2_max_streams_per_connection", |s| {
            parse_number(s, 1, u32::MAX.into())
        })?,
        tcp_keepalive: v.get("upstream.tcp_keepalive", parse_optional_duration)?,
        roots,
        ca_file,
    })
}
