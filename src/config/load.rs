//! Layers the value of every setting: command-line flag > `SSE_EDGE_*`
//! environment variable > config file > built-in default.
//!
//! Every setting is declared once in [`SETTINGS`] ([`super::settings`]);
//! its flag (`--upstream-connect-timeout`), environment variable
//! (`SSE_EDGE_UPSTREAM_CONNECT_TIMEOUT`) and file key (`[upstream]
//! connect_timeout`) are derived from its dotted key. Empty environment
//! variables count as unset.
//!
//! The command line is not parsed here: the caller hands in the flags it
//! was given as a lookup by flag name ([`Layers`]); the CLI passes clap's,
//! the demo the few it sets for its relay. What only a layer above config
//! can check (a keys file's contents: auth's format) comes in as a callback
//! ([`Loaded::check_keys_files`]).
//!
//! Routes are the exception: `--upstream URL` (or `SSE_EDGE_UPSTREAM`)
//! defines one catch-all route that replaces every `[[route]]` of the file.
//! Routes inherit the top-level `dialect`, stream settings (`heartbeat`,
//! `keepalive_frame`, `retry_*`, ...) and `upstream.*` timeouts unless they
//! set their own, and a route's endpoint groups inherit its timeouts; see
//! [`super::routes`] and [`super::groups`]. [`super::render`] prints the check-config rendering.
//!
//! Every error is one line naming the key, where the value came from, the
//! value and what is allowed.

use std::fmt;
use std::path::Path;

use super::Config;
use super::build::build_config;
use super::file::{FileDoc, load_file, parse_file};
use super::render::render;
use super::routes::{LoadedRoute, load_routes};
use super::settings::{Names, SETTINGS, Setting, default_value, names};
use super::value::Raw;

/// Looks a value up by name: a flag by its long name without the dashes
/// (`upstream-connect-timeout`), or an environment variable; `None` when
/// it was not given.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// A value parser from [`super::value`] (closures that capture nothing coerce).
pub(crate) type Parser<T> = fn(&str) -> Result<T, String>;

/// The two layers above the config file.
#[derive(Clone, Copy)]
pub struct Layers<'a> {
    /// Command-line flags: one per setting, and `upstream` for the
    /// catch-all route.
    pub flags: Lookup<'a>,
    /// The environment (the binary passes `|k| std::env::var(k).ok()`).
    pub env: Lookup<'a>,
}

impl Layers<'_> {
    /// Layers every setting over `file` (when given) and the defaults,
    /// builds the routes and validates the lot.
    ///
    /// # Errors
    ///
    /// The first bad value, file or combination, as one line.
    pub fn load(&self, file: Option<&Path>) -> Result<Loaded, ConfigError> {
        let file = file.map(load_file).transpose()?;
        self.load_doc(file)
    }

    /// [`load`](Self::load) with the config file given as text (the demo's
    /// relay); `name` stands for the file in errors and sources.
    pub(crate) fn load_text(&self, name: &str, text: &str) -> Result<Loaded, ConfigError> {
        let file = parse_file(name.to_owned(), text)?;
        self.load_doc(Some(file))
    }

    fn load_doc(&self, file: Option<FileDoc>) -> Result<Loaded, ConfigError> {
        let values = self.resolve(file.as_ref());
        let routes = load_routes(&values, self, file.as_ref())?;
        let config = build_config(&values, routes.iter().map(|r| r.route.clone()).collect())?;
        Ok(Loaded {
            key_counts: vec![None; routes.len()],
            config,
            values,
            routes,
        })
    }

    /// A setting's value when a flag or the environment gives it (the
    /// file and the default are not consulted), parsed: for the demo,
    /// whose relay has defaults of its own.
    pub(crate) fn given<T>(&self, key: &str, parse: Parser<T>) -> Result<Option<T>, ConfigError> {
        let (i, setting) = setting(key)?;
        let names = names()
            .get(i)
            .ok_or_else(|| ConfigError(format!("internal error: no names for {key}")))?;
        let Some((value, source)) = self.flag_or_env(&names.flag, &names.env) else {
            return Ok(None);
        };
        let raw = Raw::from_cli(setting.kind, value);
        let s = single(key, &raw)?;
        parse(s)
            .map(Some)
            .map_err(|why| invalid(key, &source, s, &why))
    }

    /// A flag that is no setting (the demo's `--pause`), parsed; its errors
    /// read like a setting's.
    pub(crate) fn flag<T>(
        &self,
        flag: &'static str,
        parse: Parser<T>,
    ) -> Result<Option<T>, ConfigError> {
        let Some(value) = (self.flags)(flag) else {
            return Ok(None);
        };
        parse(&value)
            .map(Some)
            .map_err(|why| invalid(flag, &Source::Flag(flag), &value, &why))
    }

    /// The flag's value, else the environment variable's (empty counts as unset).
    pub(super) fn flag_or_env(
        &self,
        flag: &'static str,
        var: &'static str,
    ) -> Option<(String, Source)> {
        match (self.flags)(flag) {
            Some(value) => Some((value, Source::Flag(flag))),
            None => (self.env)(var)
                .filter(|v| !v.is_empty())
                .map(|v| (v, Source::Env(var))),
        }
    }

    /// Applies flag > env > file > default to every setting.
    fn resolve(&self, file: Option<&FileDoc>) -> Values {
        let layered = |(i, (setting, names)): (usize, (&Setting, &'static Names))| {
            let from_file = file.and_then(|f| {
                let raw = f.settings.get(i)?.clone()?;
                Some(Entry {
                    raw,
                    source: Source::File(f.name.clone()),
                })
            });
            self.flag_or_env(&names.flag, &names.env)
                .map(|(value, source)| Entry {
                    raw: Raw::from_cli(setting.kind, value),
                    source,
                })
                .or(from_file)
                .or_else(|| {
                    default_value(setting.default).map(|(raw, source)| Entry { raw, source })
                })
        };
        let entries = SETTINGS
            .iter()
            .zip(names())
            .enumerate()
            .map(layered)
            .collect();
        Values { entries }
    }
}

/// A validated configuration, with what check-config shows about it.
pub struct Loaded {
    config: Config,
    values: Values,
    routes: Vec<LoadedRoute>,
    /// Keys in each route's keys file, once [`Loaded::check_keys_files`]
    /// has read them; parallel to `routes`.
    key_counts: Vec<Option<usize>>,
}

impl Loaded {
    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn into_config(self) -> Config {
        self.config
    }

    /// Reads every route's `auth_keys_file` with `read`, which returns the
    /// number of keys or why the file is refused (auth's loader: config sits
    /// below auth, so the caller hands it in). Loading checks only that the
    /// file is readable; the relay reads it at start. check-config calls
    /// this to report a bad file the way it reports any bad value, and the
    /// rendering then shows how many keys each file holds.
    ///
    /// # Errors
    ///
    /// The first refused file, named as `route[N].auth_keys_file`.
    pub fn check_keys_files(
        &mut self,
        read: &dyn Fn(&Path) -> Result<usize, String>,
    ) -> Result<(), ConfigError> {
        for (i, (route, count)) in self.routes.iter().zip(&mut self.key_counts).enumerate() {
            let Some(keys) = &route.route.auth.keys else {
                continue;
            };
            let key = format!("route[{i}].auth_keys_file");
            let path = keys.path.display().to_string();
            *count =
                Some(read(&keys.path).map_err(|why| invalid(&key, &route.source, &path, &why))?);
        }
        Ok(())
    }

    /// The effective configuration as a TOML file that loads to the same
    /// [`Config`], each value commented with where it came from.
    ///
    /// # Errors
    ///
    /// Only an internal inconsistency of the settings table.
    pub fn render(&self) -> Result<String, ConfigError> {
        render(&self.values, &self.routes, &self.key_counts)
    }
}

/// Why no configuration could be built: one line that names the key, where
/// the value came from, the bad value and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub(super) String);

impl ConfigError {
    /// The one-line message.
    pub fn into_message(self) -> String {
        self.0
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

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
    ConfigError(format!(
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
    ConfigError(format!(
        "invalid type for {key} in config file {file}: found {found}, expected {expected}"
    ))
}

pub(super) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The setting named `key` and its index in [`SETTINGS`].
pub(super) fn setting(key: &str) -> Result<(usize, &'static Setting), ConfigError> {
    SETTINGS
        .iter()
        .enumerate()
        .find(|(_, s)| s.key == key)
        .ok_or_else(|| ConfigError(format!("internal error: no setting {key}")))
}

/// The text of a single (non-list) value.
pub(super) fn single<'a>(key: &str, raw: &'a Raw) -> Result<&'a str, ConfigError> {
    match raw {
        Raw::One(s) => Ok(s),
        Raw::Many(_) => Err(ConfigError(format!("internal error: {key} is a list"))),
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
    pub(super) fn opt<T>(&self, key: &str, parse: Parser<T>) -> Result<Option<T>, ConfigError> {
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
            .ok_or_else(|| ConfigError(format!("missing value for {key}")))
    }

    /// Parses each item of a list setting.
    pub(super) fn list<T>(&self, key: &str, parse: Parser<T>) -> Result<Vec<T>, ConfigError> {
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

    pub(super) fn source(&self, key: &str) -> Option<&Source> {
        self.find(key).ok().flatten().map(|e| &e.source)
    }
}
