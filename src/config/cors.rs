//! A route's CORS policy: `cors = { allow_origins = [...], ... }` in a
//! `[[route]]` (or a `[route.cors]` table after it), checked when the
//! configuration loads; `crate::proxy` applies it.
//!
//! ```toml
//! cors = { allow_origins = ["https://app.example.com", "https://*.example.com"],
//!          allow_methods = ["GET", "POST"], allow_headers = ["authorization", "content-type"],
//!          expose_headers = ["x-request-id"], allow_credentials = false, max_age = "10m" }
//! ```
//!
//! Rules (each refusal names `route[i].cors.<key>`):
//! - an origin is `scheme://host[:port]` exactly as a browser sends it in
//!   `Origin`: no path (not even `/`), no user info; `https://*.example.com`
//!   stands for every subdomain of `example.com` at any depth (not
//!   `example.com` itself), with the same scheme and port; `"*"` alone
//!   allows every origin. Schemes and hosts are lower-cased and a scheme's
//!   default port dropped (`https://A.example:443` is `https://a.example`),
//!   since a browser's `Origin` is always written that way;
//! - `"null"` (sandboxed frames, `file:` pages: any page can send it) and a
//!   wildcard over a single label (`https://*.com`) are refused;
//! - `allow_credentials = true` refuses `allow_origins = ["*"]` and
//!   `expose_headers = ["*"]` (browsers read `*` literally then);
//! - `allow_methods` and `allow_headers` take `["*"]` to mean whatever
//!   the preflight asks for (echoed: unlike a literal `*`, this also
//!   covers `Authorization` and works with credentials);
//! - `max_age` is whole seconds up to `24h` (browsers cap it lower:
//!   Chromium at 2 h).
//!
//! A request `Origin` is matched as bytes ([`OriginPattern::matches`]):
//! browsers send it lower-case and without a default port.

use std::fmt;
use std::net::Ipv6Addr;
use std::time::Duration;

use super::StreamConfig;
use super::load::{ConfigError, invalid, type_error};
use super::table::FileTable;
use super::value::{format_duration, parse_duration};

/// A route's CORS policy (`cors`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsConfig {
    /// `allow_origins`: who may read the route's answers.
    pub origins: AllowedOrigins,
    /// `allow_methods`, for preflights.
    pub methods: Allowed,
    /// `allow_headers`, for preflights; lower-case.
    pub headers: Allowed,
    /// `expose_headers`: response fields scripts may read besides the
    /// CORS-safelisted ones and the relay's own (lower-case; may be `*`).
    pub expose: Vec<String>,
    /// `allow_credentials`: cookies and HTTP auth may come along.
    pub credentials: bool,
    /// `max_age`: how long a browser may cache a preflight answer.
    pub max_age: Duration,
}

/// `allow_origins`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// `["*"]`: every origin.
    Any,
    /// Exact origins and subdomain wildcards; never empty.
    List(Vec<OriginPattern>),
}

impl AllowedOrigins {
    /// Whether a request's `Origin` value is allowed.
    pub fn allows(&self, origin: &[u8]) -> bool {
        match self {
            Self::Any => true,
            Self::List(patterns) => patterns.iter().any(|p| p.matches(origin)),
        }
    }
}

/// `allow_methods` or `allow_headers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    /// `["*"]`: what the preflight asks for, echoed.
    Echo,
    /// These, as listed.
    List(Vec<String>),
}

/// One entry of `allow_origins`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPattern {
    /// `scheme://host[:port]`, normalised.
    Exact(String),
    /// `scheme://*.domain[:port]`: any subdomain of `domain`.
    Subdomains {
        scheme: String,
        /// `.domain`, with its leading dot.
        suffix: String,
        port: Option<u16>,
    },
}

impl OriginPattern {
    /// Whether a request's `Origin` value matches: byte for byte for an
    /// exact origin; for a wildcard, the scheme, a host that is one or more
    /// labels followed by `.domain`, and the port (none when the pattern
    /// has none).
    pub fn matches(&self, origin: &[u8]) -> bool {
        match self {
            Self::Exact(exact) => origin == exact.as_bytes(),
            Self::Subdomains {
                scheme,
                suffix,
                port,
            } => {
                let Some(rest) = origin
                    .strip_prefix(scheme.as_bytes())
                    .and_then(|r| r.strip_prefix(b"://"))
                else {
                    return false;
                };
                let (host, given_port) = match rest.iter().rposition(|&b| b == b':') {
                    Some(i) => (&rest[..i], Some(&rest[i + 1..])),
                    None => (rest, None),
                };
                let port_ok = match (port, given_port) {
                    (None, None) => true,
                    (Some(p), Some(g)) => g == p.to_string().as_bytes(),
                    _ => false,
                };
                let Some(sub) = host.strip_suffix(suffix.as_bytes()) else {
                    return false;
                };
                port_ok && is_subdomain_part(sub)
            }
        }
    }
}

/// The labels in front of a wildcard's domain: one or more, none empty.
fn is_subdomain_part(sub: &[u8]) -> bool {
    !sub.is_empty()
        && sub
            .split(|&b| b == b'.')
            .all(|label| !label.is_empty() && label.iter().all(|&b| is_label_byte(b)))
}

fn is_label_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
}

impl fmt::Display for OriginPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(s) => f.write_str(s),
            Self::Subdomains {
                scheme,
                suffix,
                port,
            } => {
                write!(f, "{scheme}://*{suffix}")?;
                match port {
                    Some(p) => write!(f, ":{p}"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// The response fields a policy exposes besides its `expose_headers`:
/// the relay's own that the route can send, and `retry-after` (relay-made
/// `429` and `503` answers carry it).
pub fn relay_exposed(stream: &StreamConfig) -> Vec<&'static str> {
    let mut fields = vec!["sse-edge-error", "retry-after"];
    if stream.early_commit || stream.json_keepalive {
        fields.push("sse-edge-early-commit");
    }
    if stream.resume_window.is_some() {
        fields.push("sse-edge-stream-id");
    }
    fields
}

/// `allow_headers` when the route does not set it: what the OpenAI and
/// Anthropic HTTP APIs, `fetch` and an `EventSource` reconnect send.
pub const DEFAULT_ALLOW_HEADERS: &[&str] = &[
    "authorization",
    "content-type",
    "x-api-key",
    "anthropic-version",
    "anthropic-beta",
    "openai-organization",
    "openai-project",
    "last-event-id",
];
/// `allow_methods` when the route does not set it.
pub const DEFAULT_ALLOW_METHODS: &[&str] = &["GET", "POST"];
/// `max_age` when the route does not set it.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(600);
/// Largest `max_age` (Firefox's cap; Chromium's is 2 h).
const MAX_AGE_LIMIT: Duration = Duration::from_secs(24 * 3600);

const KEYS: &[&str] = &[
    "allow_origins",
    "allow_methods",
    "allow_headers",
    "expose_headers",
    "allow_credentials",
    "max_age",
];
const ORIGIN_HINT: &str = "expected scheme://host[:port] like https://app.example.com, \
     a subdomain wildcard like https://*.example.com, or \"*\" alone";

/// Reads the route's `cors` table, if it has one.
pub(super) fn route_cors(t: &FileTable<'_>) -> Result<Option<CorsConfig>, ConfigError> {
    let Some(value) = t.table.get("cors") else {
        return Ok(None);
    };
    let toml::Value::Table(table) = value else {
        let expected = "a table like { allow_origins = [\"https://app.example.com\"] }";
        return Err(type_error(&t.key("cors"), t.file, value, expected));
    };
    let c = FileTable::new(t.key("cors"), table, t.file);
    c.check_keys(|k| KEYS.contains(&k), Some(&KEYS.join(", ")))?;
    let credentials = c.boolean("allow_credentials")?.unwrap_or(false);
    let origins = match strings(&c, "allow_origins")? {
        None => return Err(c_missing(&c)),
        Some(list) => origins(&c, &list, credentials)?,
    };
    let methods = match strings(&c, "allow_methods")? {
        None => Allowed::List(owned(DEFAULT_ALLOW_METHODS)),
        Some(list) => allowed(&c, "allow_methods", &list, |s| s.to_owned())?,
    };
    let headers = match strings(&c, "allow_headers")? {
        None => Allowed::List(owned(DEFAULT_ALLOW_HEADERS)),
        Some(list) => allowed(&c, "allow_headers", &list, str::to_ascii_lowercase)?,
    };
    let expose = match strings(&c, "expose_headers")? {
        None => Vec::new(),
        Some(list) => expose(&c, &list, credentials)?,
    };
    let max_age = c
        .string("max_age", parse_max_age)?
        .unwrap_or(DEFAULT_MAX_AGE);
    Ok(Some(CorsConfig {
        origins,
        methods,
        headers,
        expose,
        credentials,
        max_age,
    }))
}

fn c_missing(c: &FileTable<'_>) -> ConfigError {
    c.missing(
        "allow_origins",
        "a list of origins like [\"https://app.example.com\"]",
    )
}

fn owned(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// An array of strings, each with its key path (`allow_origins[1]`).
fn strings(c: &FileTable<'_>, key: &str) -> Result<Option<Vec<(String, String)>>, ConfigError> {
    let Some(value) = c.table.get(key) else {
        return Ok(None);
    };
    let toml::Value::Array(items) = value else {
        return Err(type_error(
            &c.key(key),
            c.file,
            value,
            "an array of strings",
        ));
    };
    let item = |(i, v): (usize, &toml::Value)| {
        let path = c.key(&format!("{key}[{i}]"));
        match v {
            toml::Value::String(s) => Ok((path, s.clone())),
            other => Err(type_error(&path, c.file, other, "a string")),
        }
    };
    items
        .iter()
        .enumerate()
        .map(item)
        .collect::<Result<_, _>>()
        .map(Some)
}

fn origins(
    c: &FileTable<'_>,
    list: &[(String, String)],
    credentials: bool,
) -> Result<AllowedOrigins, ConfigError> {
    let key = c.key("allow_origins");
    if list.is_empty() {
        return Err(invalid(
            &key,
            &c.source(),
            "[]",
            "expected at least one origin",
        ));
    }
    if let Some((path, s)) = list.iter().find(|(_, s)| s == "*") {
        if list.len() > 1 {
            let why = "\"*\" allows every origin: give it alone or list the origins";
            return Err(invalid(path, &c.source(), s, why));
        }
        if credentials {
            return Err(ConfigError(format!(
                "{key} is [\"*\"] and {} is true in config file {}: browsers refuse \
                 credentials with a wildcard origin; list the origins instead",
                c.key("allow_credentials"),
                c.file
            )));
        }
        return Ok(AllowedOrigins::Any);
    }
    let mut patterns = Vec::with_capacity(list.len());
    for (path, s) in list {
        let p = parse_origin(s).map_err(|why| invalid(path, &c.source(), s, &why))?;
        if !patterns.contains(&p) {
            patterns.push(p);
        }
    }
    Ok(AllowedOrigins::List(patterns))
}

/// `allow_methods` / `allow_headers`: `["*"]`, or tokens.
fn allowed(
    c: &FileTable<'_>,
    key: &str,
    list: &[(String, String)],
    normalise: fn(&str) -> String,
) -> Result<Allowed, ConfigError> {
    if list.iter().any(|(_, s)| s == "*") {
        if list.len() > 1 {
            let why = "\"*\" echoes what the preflight asks for: give it alone";
            return Err(invalid(&c.key(key), &c.source(), "*", why));
        }
        return Ok(Allowed::Echo);
    }
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for (path, s) in list {
        check_token(s).map_err(|why| invalid(path, &c.source(), s, &why))?;
        let s = normalise(s);
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(Allowed::List(out))
}

fn expose(
    c: &FileTable<'_>,
    list: &[(String, String)],
    credentials: bool,
) -> Result<Vec<String>, ConfigError> {
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for (path, s) in list {
        if s == "*" && credentials {
            return Err(ConfigError(format!(
                "{path} is \"*\" and {} is true in config file {}: with credentials browsers \
                 read \"*\" as a field name; list the fields instead",
                c.key("allow_credentials"),
                c.file
            )));
        }
        if s != "*" {
            check_token(s).map_err(|why| invalid(path, &c.source(), s, &why))?;
        }
        let s = s.to_ascii_lowercase();
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

/// An HTTP token (RFC 9110 §5.6.2): a method or a field name.
fn check_token(s: &str) -> Result<(), String> {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if s.is_empty() || !s.bytes().all(tchar) {
        return Err("expected a method or field name (letters, digits, - and the like)".into());
    }
    Ok(())
}

fn parse_max_age(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.subsec_nanos() != 0 {
        return Err("expected whole seconds: browsers read max-age in seconds".into());
    }
    if d > MAX_AGE_LIMIT {
        return Err(format!(
            "must be at most {} (browsers cap it: Chromium at 2h, Firefox at 24h)",
            format_duration(MAX_AGE_LIMIT)
        ));
    }
    Ok(d)
}

/// Parses one `allow_origins` entry other than `*` (see the module doc).
pub(crate) fn parse_origin(s: &str) -> Result<OriginPattern, String> {
    if s.eq_ignore_ascii_case("null") {
        return Err(
            "the \"null\" origin is what sandboxed frames and local files send, \
             so any page can claim it: it cannot be allowed"
                .into(),
        );
    }
    let (scheme, rest) = s.split_once("://").ok_or(ORIGIN_HINT)?;
    let scheme = scheme.to_ascii_lowercase();
    let scheme_ok = scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    if !scheme_ok {
        return Err(format!("bad scheme {scheme:?}; {ORIGIN_HINT}"));
    }
    if let Some(i) = rest.find(['/', '?', '#']) {
        return Err(format!(
            "an origin has no path, query or fragment (a browser's Origin is \
             scheme://host[:port] only): write {scheme}://{}",
            &rest[..i]
        ));
    }
    if rest.contains('@') {
        return Err(format!("an origin has no user info; {ORIGIN_HINT}"));
    }
    let (host, port) = split_port(rest)?;
    let port = port.filter(|&p| Some(p) != default_port(&scheme));
    let host = host.to_ascii_lowercase();
    if let Some(domain) = host.strip_prefix("*.") {
        check_host(domain)?;
        if !domain.contains('.') || domain.starts_with('[') {
            return Err(format!(
                "a wildcard needs a domain of two labels or more after *. \
                 (https://*.example.com), not {domain:?}"
            ));
        }
        return Ok(OriginPattern::Subdomains {
            suffix: format!(".{domain}"),
            scheme,
            port,
        });
    }
    if host.contains('*') {
        return Err(format!(
            "* stands only for the subdomains, as the host's first label: \
             https://*.example.com; {ORIGIN_HINT}"
        ));
    }
    check_host(&host)?;
    Ok(OriginPattern::Exact(match port {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    }))
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// `host[:port]`, the host an IPv6 literal in brackets or not.
fn split_port(authority: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']').ok_or(ORIGIN_HINT)? + 1;
        match &authority[end..] {
            "" => (&authority[..end], None),
            p => (
                &authority[..end],
                Some(p.strip_prefix(':').ok_or(ORIGIN_HINT)?),
            ),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|&n| n > 0 && p.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| format!("bad port {p:?}: expected 1 to 65535"))?,
        ),
    };
    Ok((host, port))
}

/// A host name of non-empty labels (ASCII: a browser sends an IDN as
/// punycode), an IPv4 address, or an IPv6 literal in brackets.
fn check_host(host: &str) -> Result<(), String> {
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6
            .parse::<Ipv6Addr>()
            .map(|_| ())
            .map_err(|_| format!("bad IPv6 address {v6:?}"));
    }
    if !host.is_ascii() {
        return Err("write an internationalised host name in its xn-- form, \
             as browsers send it"
            .into());
    }
    if host.is_empty() || !is_subdomain_part(host.as_bytes()) {
        return Err(format!("bad host {host:?}; {ORIGIN_HINT}"));
    }
    Ok(())
}

/// The policy as the check-config rendering writes it: an inline table
/// that loads back to the same policy.
pub(super) fn render(c: &CorsConfig) -> String {
    let list = |items: Vec<String>| {
        let quoted: Vec<String> = items.iter().map(|s| super::value::toml_string(s)).collect();
        format!("[{}]", quoted.join(", "))
    };
    let allowed = |a: &Allowed| match a {
        Allowed::Echo => list(vec!["*".into()]),
        Allowed::List(l) => list(l.clone()),
    };
    let origins = match &c.origins {
        AllowedOrigins::Any => list(vec!["*".into()]),
        AllowedOrigins::List(l) => list(l.iter().map(ToString::to_string).collect()),
    };
    format!(
        "cors = {{ allow_origins = {origins}, allow_methods = {}, allow_headers = {}, \
         expose_headers = {}, allow_credentials = {}, max_age = {} }}",
        allowed(&c.methods),
        allowed(&c.headers),
        list(c.expose.clone()),
        c.credentials,
        super::value::toml_string(&format_duration(c.max_age)),
    )
}

#[cfg(test)]
mod tests;
