//! A route's endpoint groups: `[[route.group]]` tables, or the primary
//! group of one endpoint that `upstream = "URL"` (and `--upstream`) means.
//!
//! ```toml
//! [[route.group]]                  # the first ordinary group: the primary
//! name = "primary"                 # default primary, fallback1, fallback2...
//! first_byte_timeout = "30s"       # overrides the route's (three timeouts)
//! endpoints = [
//!   { url = "https://east.example/v1", weight = 3, key_env = "EAST_KEY" },
//!   { url = "https://west.example/v1", key_env = "WEST_KEY" },
//! ]
//! [[route.group]]                  # fallbacks, tried in file order
//! endpoints = [{ url = "https://other.example/v1", model = "other-model" }]
//! [[route.group]]
//! context_fallback = true          # at most one; default name context
//! endpoints = [{ url = "https://long.example/v1", model = "long-model" }]
//! ```
//!
//! Invariants of what this builds (relied on by the runtime): the chain is
//! never empty, no group is empty, group names are unique within the route
//! and so are endpoint names. An endpoint's `protocol` defaults to the
//! route's; route-level `upstream_key_*` are refused with groups (see
//! [`super::routes`]), so a key only ever goes to the endpoint it names.

use std::time::Duration;

use super::load::{ConfigError, Lookup, invalid};
use super::route_auth::upstream_key;
use super::table::FileTable;
use super::value::{
    Kind, parse_optional_duration, parse_protocol, parse_route_name, parse_upstream_url,
};
use super::{
    Continuation, EndpointConfig, GroupConfig, Timeouts, UpstreamKey, UpstreamProtocol,
    UpstreamUrl, Upstreams,
};

/// The [`Timeouts`] field a timeout key sets.
pub(super) type TimeoutField = fn(&mut Timeouts) -> &mut Option<Duration>;

/// The timeout keys a group may set (a route sets them too, inheriting
/// the top level's `upstream.*`), and the field each one sets.
pub(super) const TIMEOUT_KEYS: [(&str, TimeoutField); 3] = [
    ("first_byte_timeout", |t| &mut t.first_byte),
    ("first_event_timeout", |t| &mut t.first_event),
    ("read_timeout", |t| &mut t.read),
];

const GROUP_KEYS: &[&str] = &[
    "name",
    "context_fallback",
    "endpoints",
    "first_byte_timeout",
    "first_event_timeout",
    "read_timeout",
];
const ENDPOINT_KEYS: &[&str] = &[
    "url",
    "name",
    "weight",
    "model",
    "continuation",
    "key_env",
    "key_header",
    "protocol",
];
const ENDPOINTS_TYPE: &str = "an array of endpoint tables like [{ url = \"https://...\" }]";

/// The `upstream = "URL"` form: a primary group of one endpoint.
pub(super) fn one_endpoint(
    url: UpstreamUrl,
    protocol: UpstreamProtocol,
    key: Option<UpstreamKey>,
    timeouts: Timeouts,
) -> Upstreams {
    let endpoint = EndpointConfig {
        name: endpoint_name(&url, None),
        url,
        protocol,
        weight: 1,
        model: None,
        continuation: None,
        key,
    };
    Upstreams {
        chain: vec![GroupConfig {
            name: group_name(Some(0)),
            endpoints: vec![endpoint],
            timeouts,
        }],
        context: None,
    }
}

/// An endpoint's default name: its host (an IPv6 literal in brackets),
/// `:port` when the port is not the scheme's default, `/model` when the
/// endpoint rewrites the model.
pub(super) fn endpoint_name(url: &UpstreamUrl, model: Option<&str>) -> String {
    let mut name = if url.host.contains(':') {
        format!("[{}]", url.host)
    } else {
        url.host.clone()
    };
    if url.port != if url.tls { 443 } else { 80 } {
        name.push_str(&format!(":{}", url.port));
    }
    if let Some(model) = model {
        name.push_str(&format!("/{model}"));
    }
    name
}

/// A group's default name: `primary`, `fallback<N>` for the chain's
/// `N`th, `context` for the context group (`None`).
pub(super) fn group_name(chain_index: Option<usize>) -> String {
    match chain_index {
        Some(0) => "primary".to_owned(),
        Some(n) => format!("fallback{n}"),
        None => "context".to_owned(),
    }
}

/// A group as read, before its default name is known.
struct Loaded {
    path: String,
    name: Option<String>,
    context: bool,
    endpoints: Vec<(String, EndpointConfig)>,
    timeouts: Timeouts,
    overrides: Vec<&'static str>,
}

/// The route's `[[route.group]]` tables: its upstreams, and the timeout
/// keys each group sets itself (in [`Upstreams::groups`] order).
pub(super) fn load_groups(
    route: &FileTable<'_>,
    tables: Vec<FileTable<'_>>,
    protocol: UpstreamProtocol,
    timeouts: Timeouts,
    env: Lookup<'_>,
) -> Result<(Upstreams, Vec<Vec<&'static str>>), ConfigError> {
    if tables.is_empty() {
        return Err(ConfigError(format!(
            "{} is empty in config file {}: give at least one [[route.group]] table",
            route.key("group"),
            route.file
        )));
    }
    let mut chain = Vec::new();
    let mut context: Option<Loaded> = None;
    for t in &tables {
        let g = group(t, protocol, timeouts, env)?;
        match &context {
            Some(first) if g.context => {
                return Err(ConfigError(format!(
                    "{}.context_fallback and {}.context_fallback are both true in config file \
                     {}: a route has at most one context group",
                    first.path, g.path, route.file
                )));
            }
            _ if g.context => context = Some(g),
            _ => chain.push(g),
        }
    }
    if let (true, Some(c)) = (chain.is_empty(), &context) {
        return Err(ConfigError(format!(
            "{}.context_fallback is true on the only group of {} in config file {}: a route \
             needs a primary group without context_fallback (the context group is not part \
             of the ordinary chain)",
            c.path,
            route.path(),
            route.file
        )));
    }
    assemble(route, chain, context)
}

/// Names the groups (by position unless they name themselves), checks
/// that names are unique, and builds the route's upstreams.
fn assemble(
    route: &FileTable<'_>,
    chain: Vec<Loaded>,
    context: Option<Loaded>,
) -> Result<(Upstreams, Vec<Vec<&'static str>>), ConfigError> {
    let has_context = context.is_some();
    let named = |i: Option<usize>, g: Loaded| {
        let name = g.name.clone().unwrap_or_else(|| group_name(i));
        (name, g)
    };
    let all: Vec<(String, Loaded)> = chain
        .into_iter()
        .enumerate()
        .map(|(i, g)| named(Some(i), g))
        .chain(context.map(|g| named(None, g)))
        .collect();
    check_unique(route, &all)?;
    let mut overrides = Vec::with_capacity(all.len());
    let mut groups = Vec::with_capacity(all.len());
    for (name, g) in all {
        overrides.push(g.overrides);
        groups.push(GroupConfig {
            name,
            endpoints: g.endpoints.into_iter().map(|(_, e)| e).collect(),
            timeouts: g.timeouts,
        });
    }
    // The context group, when there is one, came last.
    let context = if has_context { groups.pop() } else { None };
    let upstreams = Upstreams {
        chain: groups,
        context,
    };
    Ok((upstreams, overrides))
}

/// Group names, and endpoint names across the route, are unique.
fn check_unique(route: &FileTable<'_>, groups: &[(String, Loaded)]) -> Result<(), ConfigError> {
    let dup = |what: &str, name: &str, a: &str, b: &str| {
        ConfigError(format!(
            "duplicate {what} name {name:?} in config file {}: {a} and {b} both use it \
             (give one of them another name)",
            route.file
        ))
    };
    for (i, (name, g)) in groups.iter().enumerate() {
        if let Some((_, other)) = groups[..i].iter().find(|(n, _)| n == name) {
            return Err(dup("group", name, &other.path, &g.path));
        }
    }
    let endpoints: Vec<&(String, EndpointConfig)> =
        groups.iter().flat_map(|(_, g)| &g.endpoints).collect();
    for (i, (path, e)) in endpoints.iter().enumerate() {
        if let Some((other, _)) = endpoints[..i].iter().find(|(_, o)| o.name == e.name) {
            return Err(dup("endpoint", &e.name, other, path));
        }
    }
    Ok(())
}

fn group(
    t: &FileTable<'_>,
    protocol: UpstreamProtocol,
    route_timeouts: Timeouts,
    env: Lookup<'_>,
) -> Result<Loaded, ConfigError> {
    t.check_keys(|k| GROUP_KEYS.contains(&k), Some(&GROUP_KEYS.join(", ")))?;
    let mut timeouts = route_timeouts;
    let mut overrides = Vec::new();
    for (key, field) in TIMEOUT_KEYS {
        let Some(s) = t.text(key, Kind::Duration)? else {
            continue;
        };
        *field(&mut timeouts) = parse_optional_duration(&s)
            .map_err(|why| invalid(&t.key(key), &t.source(), &s, &why))?;
        overrides.push(key);
    }
    let tables = t
        .tables("endpoints", ENDPOINTS_TYPE)?
        .ok_or_else(|| t.missing("endpoints", ENDPOINTS_TYPE))?;
    if tables.is_empty() {
        return Err(ConfigError(format!(
            "{} is empty in config file {}: a group needs at least one endpoint",
            t.key("endpoints"),
            t.file
        )));
    }
    let endpoints = tables
        .iter()
        .map(|e| Ok((e.path().to_owned(), endpoint(e, protocol, env)?)))
        .collect::<Result<_, ConfigError>>()?;
    Ok(Loaded {
        path: t.path().to_owned(),
        name: t.string("name", parse_route_name)?,
        context: t.boolean("context_fallback")?.unwrap_or(false),
        endpoints,
        timeouts,
        overrides,
    })
}

fn endpoint(
    e: &FileTable<'_>,
    protocol: UpstreamProtocol,
    env: Lookup<'_>,
) -> Result<EndpointConfig, ConfigError> {
    e.check_keys(
        |k| ENDPOINT_KEYS.contains(&k),
        Some(&ENDPOINT_KEYS.join(", ")),
    )?;
    let url = e
        .string("url", parse_upstream_url)?
        .ok_or_else(|| e.missing("url", "an upstream URL"))?;
    let model = e.string("model", parse_model)?;
    let name = e
        .string("name", parse_route_name)?
        .unwrap_or_else(|| endpoint_name(&url, model.as_deref()));
    Ok(EndpointConfig {
        name,
        protocol: e.string("protocol", parse_protocol)?.unwrap_or(protocol),
        weight: e.integer("weight", 1, MAX_WEIGHT)?.unwrap_or(1),
        continuation: e.string("continuation", parse_continuation)?,
        key: upstream_key(e, env, "key_env", "key_header")?,
        url,
        model,
    })
}

/// `continuation = "anthropic" | "vllm" | "assistant"`.
fn parse_continuation(s: &str) -> Result<Continuation, String> {
    match s {
        "anthropic" => Ok(Continuation::Anthropic),
        "vllm" => Ok(Continuation::Vllm),
        "assistant" => Ok(Continuation::Assistant),
        _ => Err("expected anthropic, vllm or assistant".to_owned()),
    }
}

/// Largest endpoint `weight`.
const MAX_WEIGHT: u32 = 1000;

/// A model name sent upstream in the request body: non-empty, no control
/// characters.
fn parse_model(s: &str) -> Result<String, String> {
    if s.is_empty() || s.chars().any(char::is_control) {
        return Err("expected a non-empty model name without control characters".to_owned());
    }
    Ok(s.to_owned())
}
