//! The check-config rendering: the effective configuration as a TOML file
//! that loads to the same [`super::Config`], each value commented with where
//! it came from, and each route's inheritable keys with whether they are the
//! top-level values.
//!
//! Durations and sizes are shown one way wherever they appear (top level or
//! route, whatever form they were given in): as [`format_duration`] and
//! [`format_size`] write them (`1m30s`, `8MiB`).

use super::load::{ConfigError, Entry, Values, setting};
use super::routes::LoadedRoute;
use super::settings::SETTINGS;
use super::value::{
    Kind, Raw, format_duration, format_size, format_upstream_url, parse_duration, parse_size,
    protocol_name, toml_string,
};
use super::{RouteAuth, UpstreamKey};

/// The effective configuration as TOML, each setting commented with its
/// source; `key_counts` (parallel to `routes`) notes the keys in each keys
/// file when they were read.
pub(super) fn render(
    values: &Values,
    routes: &[LoadedRoute],
    key_counts: &[Option<usize>],
) -> Result<String, ConfigError> {
    let mut out = String::from("# Effective sse-edge configuration.\n");
    let rows: Vec<_> = SETTINGS.iter().zip(&values.entries).collect();
    for (setting, entry) in rows.iter().filter(|(s, _)| !s.key.contains('.')) {
        out.push_str(&render_line(setting.key, setting.kind, entry.as_ref()));
    }
    let mut section = "";
    for (setting, entry) in &rows {
        let Some((sec, name)) = setting.key.split_once('.') else {
            continue;
        };
        if sec != section {
            out.push_str(&format!("\n[{sec}]\n"));
            section = sec;
        }
        out.push_str(&render_line(name, setting.kind, entry.as_ref()));
    }
    for (route, keys) in routes.iter().zip(key_counts) {
        out.push_str(&render_route(route, *keys)?);
    }
    Ok(out)
}

fn render_line(name: &str, kind: Kind, entry: Option<&Entry>) -> String {
    match entry {
        None => format!("# {name} is not set\n"),
        Some(e) => {
            let line = format!("{name} = {}", canonical(kind, &e.raw).to_toml(kind));
            format!("{line:<47} # from {}\n", e.source.comment())
        }
    }
}

/// A duration or size in the form the routes' rendering uses; any other
/// value as given.
fn canonical(kind: Kind, raw: &Raw) -> Raw {
    let formatted = match (kind, raw) {
        (Kind::Duration, Raw::One(s)) => parse_duration(s).ok().map(format_duration),
        (Kind::Size, Raw::One(s)) => parse_size(s).ok().map(format_size),
        _ => None,
    };
    formatted.map_or_else(|| raw.clone(), Raw::One)
}

fn render_route(r: &LoadedRoute, key_count: Option<usize>) -> Result<String, ConfigError> {
    let c = &r.route;
    let mut out = format!(
        "\n[[route]]  # from {}\nname = {}\nprefix = {}\nupstream = {}\nstrip_prefix = {}\n\
         protocol = {}\n",
        r.source.comment(),
        toml_string(&c.name),
        toml_string(&c.prefix),
        toml_string(&format_upstream_url(&c.upstreams.chain[0].endpoints[0].url)),
        c.strip_prefix,
        toml_string(protocol_name(c.upstreams.chain[0].endpoints[0].protocol)),
    );
    for v in r.inherited() {
        let key = v.key;
        let kind = setting(key)?.1.kind;
        let line = match v.text {
            Some(text) => format!("{key} = {}", Raw::One(text).to_toml(kind)),
            None => format!("# {key} is not set"),
        };
        let note = if v.inherited {
            format!("  # inherited from top-level {key}")
        } else {
            String::new()
        };
        out.push_str(&format!("{line}{note}\n"));
    }
    let key = c.upstreams.chain[0].endpoints[0].key.as_ref();
    out.push_str(&render_auth(&c.auth, key, key_count));
    Ok(out)
}

/// The route-only edge-auth keys; the upstream key shows only its
/// environment variable.
fn render_auth(a: &RouteAuth, key: Option<&UpstreamKey>, key_count: Option<usize>) -> String {
    let keys_file = a.keys.as_ref().map(|k| {
        let path = toml_string(&k.path.to_string_lossy());
        match key_count {
            Some(n) => format!("{path}  # {n} key(s)"),
            None => path,
        }
    });
    let env = key.map(|k| toml_string(&k.env));
    let header = key.map(|k| toml_string(k.header.name()));
    let rate = a.rate_limit.map(|r| {
        let text = format!("{}/{}", r.count, r.period.suffix());
        (toml_string(&text), r.burst.to_string())
    });
    let (rate, burst) = rate.unzip();
    let rows = [
        ("auth_keys_file", keys_file),
        ("upstream_key_env", env),
        ("upstream_key_header", header),
        ("rate_limit", rate),
        ("rate_limit_burst", burst),
    ];
    let mut out = String::new();
    for (key, value) in rows {
        match value {
            Some(v) => out.push_str(&format!("{key} = {v}\n")),
            None => out.push_str(&format!("# {key} is not set\n")),
        }
    }
    out
}
