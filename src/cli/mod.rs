//! The command line: `sse-edge [FLAGS]` runs the relay, `check-config
//! FILE [FLAGS]` validates and prints a configuration, `demo` runs the
//! relay in front of a simulated slow model API, `hash-key` prints a key's
//! digest for a keys file.
//!
//! The top layer of the library, above `demo` and `config`: clap parses
//! the arguments (`command` declares them, with "did you mean" tips for
//! mistyped flags); `config` layers each value (flag > `SSE_EDGE_*`
//! environment variable > config file > default) and validates it;
//! check-config also has `auth` read each keys file, which the relay
//! otherwise reads at start; the demo's flags become [`DemoOptions`].

mod command;
#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

use clap::ArgMatches;

use crate::auth::KeySet;
use crate::config::{self, Config, ConfigError, Layers, Lookup};
use crate::demo::DemoOptions;

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
pub enum CliError {
    /// clap's own outcome (`--help`, `--version`, unknown flag): the caller
    /// calls `.exit()`.
    Clap(clap::Error),
    /// One line: names the key, the bad value and what is allowed.
    Invalid(String),
}

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> Self {
        Self::Invalid(e.into_message())
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Clap(e) => write!(f, "{e}"),
            Self::Invalid(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for CliError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Clap(e) => Some(e),
            Self::Invalid(_) => None,
        }
    }
}

/// Parses the command line (`args` includes the program name) and loads the
/// configuration. `env` looks up environment variables (main passes
/// `|k| std::env::var(k).ok()`).
///
/// # Errors
///
/// [`CliError::Clap`] for `--help`, `--version` and command-line misuse;
/// [`CliError::Invalid`] for any bad value, file or combination.
pub fn from_args<I, T>(args: I, env: Lookup<'_>) -> Result<Invocation, CliError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = command::command()
        .try_get_matches_from(args)
        .map_err(CliError::Clap)?;
    match matches.subcommand() {
        Some(("demo", sub)) => demo(sub, env).map(Invocation::Demo),
        Some(("hash-key", _)) => Ok(Invocation::HashKey),
        Some(("check-config", sub)) => check_config(sub, env),
        _ => run(&matches, env).map(Invocation::Run),
    }
}

/// A flag's value by its id, which is its long name.
fn flag(m: &ArgMatches, id: &str) -> Option<String> {
    m.try_get_one::<String>(id).ok().flatten().cloned()
}

fn run(m: &ArgMatches, env: Lookup<'_>) -> Result<Config, CliError> {
    let file = m
        .try_get_one::<PathBuf>("config")
        .ok()
        .flatten()
        .cloned()
        .or_else(|| {
            env("SSE_EDGE_CONFIG")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        });
    let layers = Layers {
        flags: &|id| flag(m, id),
        env,
    };
    Ok(layers.load(file.as_deref())?.into_config())
}

/// `check-config FILE`: the relay's flags after the file; every keys file
/// is read now, as the relay would read it at start.
fn check_config(sub: &ArgMatches, env: Lookup<'_>) -> Result<Invocation, CliError> {
    let file = sub
        .try_get_one::<PathBuf>("file")
        .ok()
        .flatten()
        .ok_or_else(|| CliError::Invalid("check-config needs a FILE".to_owned()))?;
    let layers = Layers {
        flags: &|id| flag(sub, id),
        env,
    };
    let mut loaded = layers.load(Some(file))?;
    loaded.check_keys_files(&|path| {
        KeySet::load(path)
            .map(|set| set.len())
            .map_err(|e| e.to_string())
    })?;
    let rendered = loaded.render()?;
    Ok(Invocation::CheckConfig {
        config: loaded.into_config(),
        rendered,
    })
}

/// `demo`: its own flags, and the relay's `listen`, `admin` and `heartbeat`
/// when a flag or environment variable sets them (the demo has defaults
/// of its own; it reads no config file).
fn demo(sub: &ArgMatches, env: Lookup<'_>) -> Result<DemoOptions, CliError> {
    let layers = Layers {
        flags: &|id| flag(sub, id),
        env,
    };
    let duration = |flag: &'static str| {
        layers
            .flag(flag, config::parse_duration)?
            .ok_or_else(|| CliError::Invalid(format!("demo needs --{flag}")))
    };
    Ok(DemoOptions {
        head_delay: duration("head-delay")?,
        pause: duration("pause")?,
        keep_running: sub.get_flag("keep-running"),
        listen: layers.given("listen", config::parse_socket_addr)?,
        admin: layers.given("admin", config::parse_socket_addr)?,
        heartbeat: layers.given("heartbeat", config::parse_heartbeat)?,
        page: layers.flag("page", config::parse_socket_addr)?,
    })
}
