//! The clap declaration of the command line: the relay's flags (one per
//! setting, named and documented by `config`'s settings table), the
//! subcommands and the demo's own flags. Help texts live here; what a flag
//! means lives in `config`.

use std::path::PathBuf;

use clap::{Arg, ArgAction, Command};

use crate::config;

const ABOUT: &str = "TLS edge relay that keeps streaming model-API responses alive";
const AFTER_HELP: &str = "Precedence: flag > SSE_EDGE_* environment variable > config file > \
default. --upstream replaces the config file's [[route]] entries.";

/// The whole command line. Subcommands: add one here and in
/// [`super::Invocation`] and [`super::from_args`].
pub(super) fn command() -> Command {
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
    config::flags().map(|f| {
        value_arg(f.name, f.value_name, "")
            .help(f.help)
            .help_heading(f.heading)
    })
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
        .arg(
            Arg::new("page")
                .long("page")
                .value_name("ADDR")
                .help(DEMO_PAGE),
        )
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
const DEMO_PAGE: &str = "Address of the demo's web page (a chat through the relay from another \
origin) [default: 127.0.0.1:8081 with --keep-running, else an ephemeral port]";
const DEMO_KEEP_RUNNING: &str = "Keep the relay and the simulated API up after the demo \
(until Ctrl-C or SIGTERM) and print commands to try";
/// The relay settings the demo takes (read in [`super::demo`]): key, help
/// and default.
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
    let (flag, value_name, env) = match config::flags().find(|f| f.key == key) {
        Some(f) => (f.name, f.value_name, format!(" [env: {}]", f.env)),
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
