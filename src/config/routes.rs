//! Routes: the `--upstream` catch-all or the file's `[[route]]` tables.
//!
//! Every key in [`INHERITED`] falls back to a top-level setting, resolved
//! like any other (flag, env, file, default): the one of the same name, or
//! `upstream.<key>` for the three timeouts. A route starts from the
//! top-level values of those keys and applies the ones its `[[route]]`
//! table sets; the `--upstream` route sets none. Each entry parses a value
//! into [`Inherited`] and shows it back as text, so loading and rendering
//! need no per-key code anywhere else.
//!
//! A route's upstreams are either `upstream = "URL"` (with the route's
//! `protocol`, `upstream_key_env` and `upstream_key_header`: a primary
//! group of one endpoint) or `[[route.group]]` tables ([`super::groups`]),
//! never both.

use std::time::Duration;

use super::cors::route_cors;
use super::file::FileDoc;
use super::groups::{load_groups, one_endpoint};
use super::load::{
    ConfigError, Layers, Lookup, Source, Values, invalid, setting, single, type_error,
};
use super::route_auth::route_auth;
use super::table::FileTable;
use super::value::{
    dialect_name, format_duration, format_size, parse_bool, parse_dialect, parse_duration,
    parse_heartbeat, parse_keepalive_frame, parse_number, parse_optional_duration,
    parse_positive_duration, parse_protocol, parse_route_name, parse_route_prefix, parse_size_in,
    parse_upstream_url,
};
use super::{DialectSetting, RouteAuth, RouteConfig, StreamConfig, UpstreamProtocol};

/// Keys only a route has.
const OWN_KEYS: &[&str] = &[
    "upstream",
    "group",
    "prefix",
    "name",
    "strip_prefix",
    "protocol",
    "auth_keys_file",
    "upstream_key_env",
    "upstream_key_header",
    "rate_limit",
    "rate_limit_burst",
    "rate_limit_on_cluster_error",
    "resume",
    "cors",
];

/// The part of a route that falls back to the top level.
#[derive(Clone)]
struct Inherited {
    dialect: DialectSetting,
    stream: StreamConfig,
}

/// A route key that falls back to a top-level setting.
struct InheritedKey {
    key: &'static str,
    /// The top-level setting: `key` itself, or `upstream.<key>`.
    top: &'static str,
    /// Parses a value given as text and stores it.
    apply: fn(&mut Inherited, &str) -> Result<(), String>,
    /// The value as text that `apply` reads back; `None` when unset.
    show: fn(&Inherited) -> Option<String>,
}

/// A key that falls back to the top-level setting of the same name.
const fn inherit(
    key: &'static str,
    apply: fn(&mut Inherited, &str) -> Result<(), String>,
    show: fn(&Inherited) -> Option<String>,
) -> InheritedKey {
    InheritedKey {
        key,
        top: key,
        apply,
        show,
    }
}

/// A key that falls back to the top-level setting `top` of another name.
const fn inherit_from(
    key: &'static str,
    top: &'static str,
    apply: fn(&mut Inherited, &str) -> Result<(), String>,
    show: fn(&Inherited) -> Option<String>,
) -> InheritedKey {
    InheritedKey {
        key,
        top,
        apply,
        show,
    }
}

/// A timeout as text: `0` for none.
fn show_timeout(t: Option<Duration>) -> Option<String> {
    Some(format_duration(t.unwrap_or_default()))
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
    inherit("retry_on_reset",
        |d, s| parse_bool(s).map(|v| d.stream.retry_on_reset = v),
        |d| Some(d.stream.retry_on_reset.to_string())),
    inherit("continuation_attempts",
        |d, s| parse_number(s, 0, 5).map(|v| d.stream.continuation_attempts = v),
        |d| Some(d.stream.continuation_attempts.to_string())),
    inherit("include_usage",
        |d, s| parse_bool(s).map(|v| d.stream.include_usage = v),
        |d| Some(d.stream.include_usage.to_string())),
    inherit("resume_window",
        |d, s| parse_optional_duration(s).map(|v| d.stream.resume_window = v),
        |d| Some(format_duration(d.stream.resume_window.unwrap_or_default()))),
    inherit("resume_max_bytes",
        |d, s| parse_size_in(s, 4 << 10, 1 << 30).map(|v| d.stream.resume_max_bytes = v),
        |d| Some(format_size(d.stream.resume_max_bytes))),
    inherit_from("first_byte_timeout", "upstream.first_byte_timeout",
        |d, s| parse_optional_duration(s).map(|v| d.stream.timeouts.first_byte = v),
        |d| show_timeout(d.stream.timeouts.first_byte)),
    inherit_from("first_event_timeout", "upstream.first_event_timeout",
        |d, s| parse_optional_duration(s).map(|v| d.stream.timeouts.first_event = v),
        |d| show_timeout(d.stream.timeouts.first_event)),
    inherit_from("read_timeout", "upstream.read_timeout",
        |d, s| parse_optional_duration(s).map(|v| d.stream.timeouts.read = v),
        |d| show_timeout(d.stream.timeouts.read)),
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
    /// The timeout keys each group sets itself, in
    /// [`Upstreams::groups`](super::Upstreams::groups) order.
    pub(super) group_overrides: Vec<Vec<&'static str>>,
}

/// One inheritable key of a loaded route, for the rendering.
pub(super) struct InheritedValue {
    pub(super) key: &'static str,
    /// The top-level setting it falls back to.
    pub(super) top: &'static str,
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
            top: k.top,
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
                    let t = FileTable::new(format!("route[{i}]"), table, &f.name);
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
        let Some(entry) = v.find(k.top)? else {
            continue;
        };
        let s = single(k.top, &entry.raw)?;
        (k.apply)(&mut top, s).map_err(|why| invalid(k.top, &entry.source, s, &why))?;
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
        upstreams: one_endpoint(upstream, UpstreamProtocol::Auto, None, top.stream.timeouts),
        dialect: top.dialect,
        stream: top.stream.clone(),
        auth: RouteAuth::default(),
        cors: None,
    };
    Ok(LoadedRoute {
        route,
        source,
        overrides: Vec::new(),
        group_overrides: vec![Vec::new()],
    })
}

fn file_route(
    t: &FileTable<'_>,
    top: &Inherited,
    env: Lookup<'_>,
    reload: Duration,
) -> Result<LoadedRoute, ConfigError> {
    let known = |k: &str| OWN_KEYS.contains(&k) || INHERITED.iter().any(|i| i.key == k);
    t.check_keys(known, None)?;
    let groups = t.tables("group", "[[route.group]] tables")?;
    let url =
        match &groups {
            None => Some(t.string("upstream", parse_upstream_url)?.ok_or_else(|| {
                t.missing("upstream", "an upstream URL or [[route.group]] tables")
            })?),
            Some(_) if t.has("upstream") => return Err(t.one_form("upstream", "group")),
            Some(_) => None,
        };
    if groups.is_some() {
        refuse_route_key(t)?;
    }
    let prefix = t
        .string("prefix", parse_route_prefix)?
        .unwrap_or_else(|| "/".to_owned());
    let (inherited, overrides) = route_values(t, top)?;
    let protocol = t
        .string("protocol", parse_protocol)?
        .unwrap_or(UpstreamProtocol::Auto);
    let (auth, key) = route_auth(t, env, reload)?;
    let cors = route_cors(t)?;
    let timeouts = inherited.stream.timeouts;
    let (upstreams, group_overrides) = match (url, groups) {
        (Some(url), _) => (one_endpoint(url, protocol, key, timeouts), vec![Vec::new()]),
        (None, groups) => load_groups(t, groups.unwrap_or_default(), protocol, timeouts, env)?,
    };
    let route = RouteConfig {
        name: t
            .string("name", parse_route_name)?
            .unwrap_or_else(|| prefix.clone()),
        prefix,
        strip_prefix: t.boolean("strip_prefix")?.unwrap_or(false),
        upstreams,
        dialect: inherited.dialect,
        stream: inherited.stream,
        auth,
        cors,
    };
    Ok(LoadedRoute {
        route,
        source: t.source(),
        overrides,
        group_overrides,
    })
}

/// With groups, a route-level upstream key is refused: it would go to
/// every endpoint, whichever provider runs it.
fn refuse_route_key(t: &FileTable<'_>) -> Result<(), ConfigError> {
    match ["upstream_key_env", "upstream_key_header"]
        .into_iter()
        .find(|k| t.has(k))
    {
        Some(key) => Err(ConfigError(format!(
            "{} is set together with {} in config file {}: with groups, give each endpoint \
             its own key_env (and key_header), so that a key meant for one provider never \
             goes to another",
            t.key(key),
            t.key("group"),
            t.file
        ))),
        None => Ok(()),
    }
}

/// `top` with the inheritable keys `t` sets applied, and those keys.
fn route_values(
    t: &FileTable<'_>,
    top: &Inherited,
) -> Result<(Inherited, Vec<&'static str>), ConfigError> {
    let mut d = top.clone();
    let mut overrides = Vec::new();
    for k in INHERITED {
        let kind = setting(k.top)?.1.kind;
        let Some(s) = t.text(k.key, kind)? else {
            continue;
        };
        (k.apply)(&mut d, &s).map_err(|why| invalid(&t.key(k.key), &t.source(), &s, &why))?;
        overrides.push(k.key);
    }
    resume_table(t, &mut d, &mut overrides)?;
    Ok((d, overrides))
}

/// Applies `resume = { window, max_bytes }` (or `resume = false`).
fn resume_table(
    t: &FileTable<'_>,
    d: &mut Inherited,
    overrides: &mut Vec<&'static str>,
) -> Result<(), ConfigError> {
    let Some(value) = t.table.get("resume") else {
        return Ok(());
    };
    if let Some(flat) = RESUME_TABLE.iter().find(|(_, k)| overrides.contains(k)) {
        return Err(t.one_form("resume", flat.1));
    }
    let table = match value {
        toml::Value::Boolean(false) => {
            d.stream.resume_window = None;
            overrides.push("resume_window");
            return Ok(());
        }
        toml::Value::Table(table) => table,
        other => {
            let expected = "a table { window = \"60s\", max_bytes = \"4MiB\" } or false";
            return Err(type_error(&t.key("resume"), t.file, other, expected));
        }
    };
    for (sub, value) in table {
        let key = t.key(&format!("resume.{sub}"));
        let Some((_, flat)) = RESUME_TABLE.iter().find(|(s, _)| s == sub) else {
            return Err(ConfigError(format!(
                "unknown key {key} in config file {}: expected window or max_bytes",
                t.file
            )));
        };
        let toml::Value::String(s) = value else {
            return Err(type_error(&key, t.file, value, "a string"));
        };
        let entry = INHERITED.iter().find(|k| k.key == *flat);
        if let Some(k) = entry {
            (k.apply)(d, s).map_err(|why| invalid(&key, &t.source(), s, &why))?;
            overrides.push(k.key);
        }
    }
    Ok(())
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
