//! The check-config rendering: the effective configuration as a TOML file
//! that loads to the same [`super::Config`], each value commented with where
//! it came from, and each route's inheritable keys with whether they are the
//! top-level values.
//!
//! A route whose upstreams `upstream = "URL"` can say (one group of one
//! endpoint, all at their defaults) is shown that way; any other shows its
//! `[[route.group]]` tables, each with its name, `context_fallback` when
//! set, its three timeouts (noted when they are the route's) and every key
//! of every endpoint; an upstream key shows only its variable.
//!
//! Durations and sizes are shown one way wherever they appear (top level or
//! route, whatever form they were given in): as [`format_duration`] and
//! [`format_size`] write them (`1m30s`, `8MiB`).

use super::cors;
use super::groups::{TIMEOUT_KEYS, endpoint_name, group_name};
use super::load::{ConfigError, Entry, Values, setting};
use super::routes::LoadedRoute;
use super::settings::SETTINGS;
use super::value::{
    Kind, Raw, format_duration, format_size, format_upstream_url, parse_duration, parse_size,
    protocol_name, toml_string,
};
use super::{EndpointConfig, GroupConfig, RouteAuth, RouteConfig, UpstreamKey};

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
        out.push_str(&render_line(
            setting.key,
            setting.kind,
            entry.as_ref(),
            false,
        ));
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
        let secret = setting.key == "cluster.url";
        out.push_str(&render_line(name, setting.kind, entry.as_ref(), secret));
    }
    for (route, keys) in routes.iter().zip(key_counts) {
        out.push_str(&render_route(route, *keys)?);
    }
    Ok(out)
}

/// One setting's line; `secret` (`cluster.url`) shows it redacted.
fn render_line(name: &str, kind: Kind, entry: Option<&Entry>, secret: bool) -> String {
    match entry {
        None => format!("# {name} is not set\n"),
        Some(e) => {
            let mut raw = canonical(kind, &e.raw);
            if let (true, Raw::One(url)) = (secret, &raw) {
                raw = Raw::One(super::cluster::redact(url));
            }
            let line = format!("{name} = {}", raw.to_toml(kind));
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
    let single = single_endpoint(c);
    let mut out = format!(
        "\n[[route]]  # from {}\nname = {}\nprefix = {}\n",
        r.source.comment(),
        toml_string(&c.name),
        toml_string(&c.prefix),
    );
    if let Some(e) = single {
        let url = toml_string(&format_upstream_url(&e.url));
        out.push_str(&format!("upstream = {url}\n"));
    }
    out.push_str(&format!("strip_prefix = {}\n", c.strip_prefix));
    if let Some(e) = single {
        out.push_str(&format!(
            "protocol = {}\n",
            toml_string(protocol_name(e.protocol))
        ));
    }
    for v in r.inherited() {
        let key = v.key;
        let kind = setting(v.top)?.1.kind;
        let line = match v.text {
            Some(text) => format!("{key} = {}", Raw::One(text).to_toml(kind)),
            None => format!("# {key} is not set"),
        };
        let note = if v.inherited {
            format!("  # inherited from top-level {}", v.top)
        } else {
            String::new()
        };
        out.push_str(&format!("{line}{note}\n"));
    }
    let key = single.map(|e| e.key.as_ref());
    out.push_str(&render_auth(&c.auth, key, key_count));
    out.push_str(&render_cors(c));
    if single.is_none() {
        for (i, g) in c.upstreams.groups().enumerate() {
            let overrides = r.group_overrides.get(i).map_or(&[][..], Vec::as_slice);
            let context = i >= c.upstreams.chain.len();
            out.push_str(&render_group(g, context, overrides));
        }
    }
    Ok(out)
}

/// The endpoint of a route that `upstream = "URL"` says all about: one
/// group of one endpoint, every group and endpoint key at its default.
fn single_endpoint(c: &RouteConfig) -> Option<&EndpointConfig> {
    let [group] = &c.upstreams.chain[..] else {
        return None;
    };
    let [e] = &group.endpoints[..] else {
        return None;
    };
    let plain = c.upstreams.context.is_none()
        && group.name == group_name(Some(0))
        && group.timeouts == c.stream.timeouts
        && e.weight == 1
        && e.model.is_none()
        && e.continuation.is_none()
        && e.name == endpoint_name(&e.url, None);
    plain.then_some(e)
}

/// A `[[route.group]]` table: its timeouts, each noted when it is the
/// route's, and its endpoints (an upstream key only by its variable).
fn render_group(g: &GroupConfig, context: bool, overrides: &[&str]) -> String {
    let mut out = format!("\n[[route.group]]\nname = {}\n", toml_string(&g.name));
    if context {
        out.push_str("context_fallback = true\n");
    }
    for (key, field) in TIMEOUT_KEYS {
        let mut timeouts = g.timeouts;
        let value = format_duration(field(&mut timeouts).unwrap_or_default());
        let note = if overrides.contains(&key) {
            ""
        } else {
            "  # inherited from the route"
        };
        out.push_str(&format!("{key} = {}{note}\n", toml_string(&value)));
    }
    out.push_str("endpoints = [\n");
    for e in &g.endpoints {
        out.push_str(&format!("  {},\n", render_endpoint(e)));
    }
    out.push_str("]\n");
    out
}

/// An endpoint as an inline table, every key shown.
fn render_endpoint(e: &EndpointConfig) -> String {
    let mut fields = vec![
        format!("name = {}", toml_string(&e.name)),
        format!("url = {}", toml_string(&format_upstream_url(&e.url))),
        format!("weight = {}", e.weight),
    ];
    if let Some(model) = &e.model {
        fields.push(format!("model = {}", toml_string(model)));
    }
    if let Some(c) = e.continuation {
        fields.push(format!("continuation = {}", toml_string(c.name())));
    }
    fields.push(format!(
        "protocol = {}",
        toml_string(protocol_name(e.protocol))
    ));
    if let Some(key) = &e.key {
        fields.push(format!("key_env = {}", toml_string(&key.env)));
        fields.push(format!("key_header = {}", toml_string(key.header.name())));
    }
    format!("{{ {} }}", fields.join(", "))
}

/// The route's CORS policy, or what happens to browsers without one.
fn render_cors(c: &RouteConfig) -> String {
    let Some(policy) = &c.cors else {
        let commit = if c.stream.early_commit || c.stream.json_keepalive {
            "; cross-origin requests (Origin without Sec-Fetch-Site: same-origin) are not \
             committed early: their head waits for the upstream's"
        } else {
            ""
        };
        return format!(
            "# cors is not set: the upstream's own CORS headers pass through, \
             relay-made answers carry none{commit}\n"
        );
    };
    let exposed = cors::relay_exposed(&c.stream);
    format!(
        "{}\n# cors also exposes the relay's {}; the upstream's own CORS headers are replaced\n",
        cors::render(policy),
        exposed.join(", ")
    )
}

/// The route-only edge-auth keys; the upstream key shows only its
/// environment variable, and not at all on a route with groups (`key`
/// `None`: its endpoints show their own).
fn render_auth(
    a: &RouteAuth,
    key: Option<Option<&UpstreamKey>>,
    key_count: Option<usize>,
) -> String {
    let keys_file = a.keys.as_ref().map(|k| {
        let path = toml_string(&k.path.to_string_lossy());
        match key_count {
            Some(n) => format!("{path}  # {n} key(s)"),
            None => path,
        }
    });
    let env = key.flatten().map(|k| toml_string(&k.env));
    let header = key.flatten().map(|k| toml_string(k.header.name()));
    let rate = a.rate_limit.map(|r| {
        let text = format!("{}/{}", r.count, r.period.suffix());
        (toml_string(&text), r.burst.to_string())
    });
    let (rate, burst) = rate.unzip();
    let on_error = a.rate_limit.map(|_| toml_string(a.on_cluster_error.name()));
    let rows = [
        ("auth_keys_file", keys_file),
        ("upstream_key_env", env),
        ("upstream_key_header", header),
        ("rate_limit", rate),
        ("rate_limit_burst", burst),
        ("rate_limit_on_cluster_error", on_error),
    ];
    let mut out = String::new();
    for (name, value) in rows {
        if key.is_none() && name.starts_with("upstream_key") {
            continue;
        }
        match value {
            Some(v) => out.push_str(&format!("{name} = {v}\n")),
            None => out.push_str(&format!("# {name} is not set\n")),
        }
    }
    out
}
