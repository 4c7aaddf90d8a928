//! Routes: the `--upstream` catch-all or the file's `[[route]]` tables.
//!
//! Every key in [`INHERITED`] is also a top-level setting, resolved like any
//! other (flag, env, file, default). A route starts from the top-level
//! values of those keys and applies the ones its `[[route]]` table sets; the
//! `--upstream` route sets none. Each entry parses a value into
//! [`Inherited`] and shows it back as text, so loading and rendering need no
//! per-key code anywhere else.

use std::time::Duration;

use super::file::FileDoc;
use super::load::{
    ConfigError, Layers, Lookup, Parser, Source, Values, invalid, setting, single, type_error,
};
use super::route_auth::route_auth;
use super::value::{
    Raw, dialect_name, format_duration, format_size, parse_bool, parse_dialect, parse_duration,
    parse_heartbeat, parse_keepalive_frame, parse_number, parse_optional_duration,
    parse_positive_duration, parse_protocol, parse_route_name, parse_route_prefix, parse_size_in,
    parse_upstream_url,
};
use super::{
    DialectSetting, EndpointConfig, GroupConfig, RouteAuth, RouteConfig, StreamConfig, UpstreamKey,
    UpstreamProtocol, UpstreamUrl, Upstreams,
};

/// Keys only a route has.
const OWN_KEYS: &[&str] = &[
    "upstream",
    "prefix",
    "name",
    "strip_prefix",
    "protocol",
    "auth_keys_file",
    "upstream_key_env",
    "upstream_key_header",
    "rate_limit",
    "rate_limit_burst",
    "resume",
];

/// The part of a route that falls back to the top level.
#[derive(Clone)]
struct Inherited {
    dialect: DialectSetting,
    stream: StreamConfig,
}

/// A route key that falls back to the top-level setting of the same name.
struct InheritedKey {
    key: &'static str,
    /// Parses a value given as text and stores it.
    apply: fn(&mut Inherited, &str) -> Result<(), String>,
    /// The value as text that `apply` reads back; `None` when unset.
    show: fn(&Inherited) -> Option<String>,
}

const fn inherit(
    key: &'static str,
    apply: fn(&mut Inherited, &str) -> Result<(), String>,
    show: fn(&Inherited) -> Option<String>,
) -> InheritedKey {
    InheritedKey { key, apply, show }
}

/// Every inheritable key, in rendering order.
#[rustfmt::skip]
const INHERITED: &[InheritedKey] = &[
    inherit("dialect",
        |d, s| parse_dialect(s).map(|v| d.dialect = v),
        |d| Some(dialect_name(d.dialect).to_owned())),
    inherit("heartbeat",
        |d, s| parse_heartbeat(s).map(|v| d.stream.heartbeat = v),
        |d| Some(format_duration(d.stream.heartbeat))),
    inherit("keepalive_frame",
        |d, s| parse_keepalive_frame(s).map(|v| d.stream.keepalive_frame = Some(v)),
        |d| d.stream.keepalive_frame.clone()),
    inherit("max_event_size",
        |d, s| parse_size_in(s, 1 << 10, 1 << 30).map(|v| d.stream.max_event_size = v),
        |d| Some(format_size(d.stream.max_event_size))),
    inherit("early_commit",
        |d, s| parse_bool(s).map(|v| d.stream.early_commit = v),
        |d| Some(d.stream.early_commit.to_string())),
    inherit("json_keepalive",
        |d, s| parse_bool(s).map(|v| d.stream.json_keepalive = v),
        |d| Some(d.stream.json_keepalive.to_string())),
    inherit("retry_attempts",
        |d, s| parse_number(s, 0, 20).map(|v| d.stream.retry_attempts = v),
        |d| Some(d.stream.retry_attempts.to_string())),
    inherit("retry_budget",
        |d, s| parse_duration(s).map(|v| d.stream.retry_budget = v),
        |d| Some(format_duration(d.stream.retry_budget))),
    inherit("retry_backoff",
        |d, s| parse_positive_duration(s).map(|v| d.stream.retry_backoff = v),
        |d| Some(format_duration(d.stream.retry_backoff))),
    inherit("include_usage",
        |d, s| parse_bool(s).map(|v| d.stream.include_usage = v),
        |d| Some(d.stream.include_usage.to_string())),
    inherit("resume_window",
        |d, s| parse_optional_duration(s).map(|v| d.stream.resume_window = v),
        |d| Some(format_duration(d.stream.resume_window.unwrap_or_default()))),
    inherit("resume_max_bytes",
        |d, s| parse_size_in(s, 4 << 10, 1 << 30).map(|v| d.stream.resume_max_bytes = v),
        |d| Some(format_size(d.stream.resume_max_bytes))),
];

/// `resume = { window = "60s", max_bytes = "4MiB" }` in a `[[route]]`: the
/// same as its `resume_window` and `resume_max_bytes` keys; `resume = false`
/// turns resumption off for the route.
const RESUME_TABLE: &[(&str, &str)] = &[
    ("window", "resume_window"),
    ("max_bytes", "resume_max_bytes"),
];

/// A route plus what the rendering needs to say about it.
pub(super) struct LoadedRoute {
    pub(super) route: RouteConfig,
    pub(super) source: Source,
    /// Inheritable keys the route sets itself.
    overrides: Vec<&'static str>,
}

/// One inheritable key of a loaded route, for the rendering.
pub(super) struct InheritedValue {
    pub(super) key: &'static str,
    /// The effective value as text a parser reads; `None` when unset.
    pub(super) text: Option<String>,
    /// Whether the value is the top-level one.
    pub(super) inherited: bool,
}

impl LoadedRoute {
    /// Every inheritable key, in rendering order.
    pub(super) fn inherited(&self) -> Vec<InheritedValue> {
        let d = Inherited {
            dialect: self.route.dialect,
            stream: self.route.stream.clone(),
        };
        let value = |k: &InheritedKey| InheritedValue {
            key: k.key,
            text: (k.show)(&d),
            inherited: !self.overrides.contains(&k.key),
        };
        INHERITED.iter().map(value).collect()
    }
}

pub(super) fn load_routes(
    v: &Values,
    layers: &Layers<'_>,
    file: Option<&FileDoc>,
) -> Result<Vec<LoadedRoute>, ConfigError> {
    let top = top_level(v)?;
    let reload = v.get("auth_reload_interval", parse_positive_duration)?;
    let env = layers.env;
    let routes = match layers.flag_or_env("upstream", "SSE_EDGE_UPSTREAM") {
        Some((url, source)) => vec![cli_route(&url, source, &top)?],
        None => match file {
            Some(f) => f
                .routes
                .iter()
                .enumerate()
                .map(|(i, table)| {
                    let t = RouteTable {
                        index: i,
                        table,
                        file: &f.name,
                    };
                    file_route(&t, &top, env, reload)
                })
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        },
    };
    check_routes(&routes)?;
    Ok(routes)
}

/// The top-level value of every inheritable key.
fn top_level(v: &Values) -> Result<Inherited, ConfigError> {
    let mut top = Inherited {
        dialect: DialectSetting::Auto,
        stream: StreamConfig::default(),
    };
    for k in INHERITED {
        let Some(entry) = v.find(k.key)? else {
            continue;
        };
        let s = single(k.key, &entry.raw)?;
        (k.apply)(&mut top, s).map_err(|why| invalid(k.key, &entry.source, s, &why))?;
    }
    Ok(top)
}

fn cli_route(url: &str, source: Source, top: &Inherited) -> Result<LoadedRoute, ConfigError> {
    let upstream =
        parse_upstream_url(url).map_err(|why| invalid("upstream", &source, url, &why))?;
    let route = RouteConfig {
        name: "default".to_owned(),
        prefix: "/".to_owned(),
        strip_prefix: false,
        upstreams: one_endpoint(upstream, UpstreamProtocol::Auto, None, &top.stream),
        dialect: top.dialect,
        stream: top.stream.clone(),
        auth: RouteAuth::default(),
    };
    Ok(LoadedRoute {
        route,
        source,
        overrides: Vec::new(),
    })
}

/// One `[[route]]` table of the file, keys named `route[i].key` in errors.
pub(super) struct RouteTable<'a> {
    index: usize,
    table: &'a toml::Table,
    pub(super) file: &'a str,
}

impl RouteTable<'_> {
    pub(super) fn key(&self, key: &str) -> String {
        format!("route[{}].{key}", self.index)
    }

    fn source(&self) -> Source {
        Source::File(self.file.to_owned())
    }

    fn check_keys(&self) -> Result<(), ConfigError> {
        let known = |k: &str| OWN_KEYS.contains(&k) || INHERITED.iter().any(|i| i.key == k);
        match self.table.keys().find(|k| !known(k)) {
            Some(unknown) => Err(ConfigError(format!(
                "unknown key {} in config file {}",
                self.key(unknown),
                self.file
            ))),
            None => Ok(()),
        }
    }

    pub(super) fn string<T>(&self, key: &str, parse: Parser<T>) -> Result<Option<T>, ConfigError> {
        match self.table.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => parse(s)
                .map(Some)
                .map_err(|why| invalid(&self.key(key), &self.source(), s, &why)),
            Some(other) => Err(type_error(&self.key(key), self.file, other, "a string")),
        }
    }

    pub(super) fn integer(
        &self,
        key: &str,
        min: u32,
        max: u32,
    ) -> Result<Option<u32>, ConfigError> {
        match self.table.get(key) {
            None => Ok(None),
            Some(toml::Value::Integer(n)) => u32::try_from(*n)
                .ok()
                .filter(|n| (min..=max).contains(n))
                .map(Some)
                .ok_or_else(|| {
                    let why = format!("expected a whole number from {min} to {max}");
                    invalid(&self.key(key), &self.source(), &n.to_string(), &why)
                }),
            Some(other) => Err(type_error(&self.key(key), self.file, other, "an integer")),
        }
    }

    /// `key` is set without `needed`, which gives it its meaning.
    pub(super) fn needs(&self, key: &str, needed: &str) -> ConfigError {
        let (key, needed) = (self.key(key), self.key(needed));
        ConfigError(format!(
            "{key} is set but {needed} is not in config file {}: set both or neither",
            self.file
        ))
    }

    fn boolean(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        match self.table.get(key) {
            None => Ok(None),
            Some(toml::Value::Boolean(b)) => Ok(Some(*b)),
            Some(other) => Err(type_error(
                &self.key(key),
                self.file,
                other,
                "a boolean (true or false)",
            )),
        }
    }

    /// `top` with the inheritable keys this table sets applied, and those keys.
    fn inherit(&self, top: &Inherited) -> Result<(Inherited, Vec<&'static str>), ConfigError> {
        let mut d = top.clone();
        let mut overrides = Vec::new();
        for k in INHERITED {
            let Some(value) = self.table.get(k.key) else {
                continue;
            };
            let key = self.key(k.key);
            let kind = setting(k.key)?.1.kind;
            let raw = Raw::from_toml(kind, value)
                .ok_or_else(|| type_error(&key, self.file, value, kind.toml_type()))?;
            let s = single(&key, &raw)?;
            (k.apply)(&mut d, s).map_err(|why| invalid(&key, &self.source(), s, &why))?;
            overrides.push(k.key);
        }
        self.resume_table(&mut d, &mut overrides)?;
        Ok((d, overrides))
    }

    /// Applies `resume = { window, max_bytes }` (or `resume = false`).
    fn resume_table(
        &self,
        d: &mut Inherited,
        overrides: &mut Vec<&'static str>,
    ) -> Result<(), ConfigError> {
        let Some(value) = self.table.get("resume") else {
            return Ok(());
        };
        if let Some(flat) = RESUME_TABLE.iter().find(|(_, k)| overrides.contains(k)) {
            return Err(ConfigError(format!(
                "{} and {} are both set in config file {}: use one form",
                self.key("resume"),
                self.key(flat.1),
                self.file
            )));
        }
        let table = match value {
            toml::Value::Boolean(false) => {
                d.stream.resume_window = None;
                overrides.push("resume_window");
                return Ok(());
            }
            toml::Value::Table(t) => t,
            other => {
                let expected = "a table { window = \"60s\", max_bytes = \"4MiB\" } or false";
                return Err(type_error(&self.key("resume"), self.file, other, expected));
            }
        };
        for (sub, value) in table {
            let key = self.key(&format!("resume.{sub}"));
            let Some((_, flat)) = RESUME_TABLE.iter().find(|(s, _)| s == sub) else {
                return Err(ConfigError(format!(
                    "unknown key {key} in config file {}: expected window or max_bytes",
                    self.file
                )));
            };
            let toml::Value::String(s) = value else {
                return Err(type_error(&key, self.file, value, "a string"));
            };
            let entry = INHERITED.iter().find(|k| k.key == *flat);
            if let Some(k) = entry {
                (k.apply)(d, s).map_err(|why| invalid(&key, &self.source(), s, &why))?;
                overrides.push(k.key);
            }
        }
        Ok(())
    }
}

fn file_route(
    t: &RouteTable<'_>,
    top: &Inherited,
    env: Lookup<'_>,
    reload: Duration,
) -> Result<LoadedRoute, ConfigError> {
    t.check_keys()?;
    let upstream = t.string("upstream", parse_upstream_url)?.ok_or_else(|| {
        let key = t.key("upstream");
        let file = t.file;
        ConfigError(format!(
            "missing key {key} in config file {file}: expected an upstream URL"
        ))
    })?;
    let prefix = t
        .string("prefix", parse_route_prefix)?
        .unwrap_or_else(|| "/".to_owned());
    let (inherited, overrides) = t.inherit(top)?;
    let protocol = t
        .string("protocol", parse_protocol)?
        .unwrap_or(UpstreamProtocol::Auto);
    let (auth, key) = route_auth(t, env, reload)?;
    let route = RouteConfig {
        name: t
            .string("name", parse_route_name)?
            .unwrap_or_else(|| prefix.clone()),
        prefix,
        strip_prefix: t.boolean("strip_prefix")?.unwrap_or(false),
        upstreams: one_endpoint(upstream, protocol, key, &inherited.stream),
        dialect: inherited.dialect,
        stream: inherited.stream,
        auth,
    };
    Ok(LoadedRoute {
        route,
        source: t.source(),
        overrides,
    })
}

/// The `upstream = "URL"` form: a primary group of one endpoint.
fn one_endpoint(
    url: UpstreamUrl,
    protocol: UpstreamProtocol,
    key: Option<UpstreamKey>,
    stream: &StreamConfig,
) -> Upstreams {
    let name = url.host.clone();
    let endpoint = EndpointConfig {
        name,
        url,
        protocol,
        weight: 1,
        model: None,
        key,
    };
    Upstreams {
        chain: vec![GroupConfig {
            name: "primary".to_owned(),
            endpoints: vec![endpoint],
            timeouts: stream.timeouts,
        }],
        context: None,
    }
}

fn check_routes(routes: &[LoadedRoute]) -> Result<(), ConfigError> {
    if routes.is_empty() {
        return Err(ConfigError(
            "no routes: give --upstream URL or [[route]] entries in the config file".to_owned(),
        ));
    }
    for (i, r) in routes.iter().enumerate() {
        let prefix = &r.route.prefix;
        if let Some(j) = routes[..i].iter().position(|o| &o.route.prefix == prefix) {
            return Err(ConfigError(format!(
                "duplicate route prefix {prefix:?}: route[{j}] and route[{i}] both use it"
            )));
        }
    }
    Ok(())
}
