//! Typed parsers (and their inverse formatters) for single config values.
//!
//! Every parser takes the value as text, whether it came from a flag, an
//! environment variable or the TOML file, and returns an error that says
//! what is allowed; [`super::load`] adds the key and the source around it.

use std::net::{Ipv6Addr, SocketAddr};
use std::time::Duration;

use http::Uri;
use http::uri::Authority;

use super::{DialectSetting, RootStore, UpstreamProtocol, UpstreamUrl};

const DURATION_HINT: &str = "expected a duration like 250ms, 15s, 2m or 1h";
const URL_HINT: &str = "expected an http:// or https:// URL like https://api.openai.com/v1";

/// Parses a duration with [`humantime`]: `250ms`, `15s`, `2m`, `1h`,
/// compound forms such as `1m30s`, and `0`.
///
/// Refused before humantime sees them, as they always were: whitespace,
/// signs and decimal points (`1 s`, `-1s`, `1.5s`) and upper-case units
/// (humantime's `M` is a month, easily taken for a minute). Refused after:
/// anything finer than a millisecond, which check-config could not render
/// back, and more than `u64::MAX` milliseconds, which timers could not add
/// to the clock.
///
/// # Errors
///
/// A message saying which forms are allowed.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    const TOO_LARGE: &str = "duration is too large";
    if !s
        .bytes()
        .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    {
        return Err(DURATION_HINT.to_owned());
    }
    let d = humantime::parse_duration(s).map_err(|e| match e {
        humantime::DurationError::NumberOverflow => TOO_LARGE.to_owned(),
        _ => DURATION_HINT.to_owned(),
    })?;
    if d.subsec_nanos() % 1_000_000 != 0 {
        return Err(format!("{DURATION_HINT}; the smallest unit is ms"));
    }
    if d.as_millis() > u128::from(u64::MAX) {
        return Err(TOO_LARGE.to_owned());
    }
    Ok(d)
}

/// A duration that must be greater than zero.
pub(crate) fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        Duration::ZERO => Err(format!("must be greater than zero; {DURATION_HINT}")),
        d => Ok(d),
    }
}

/// A duration where `0` turns the feature off (`None`).
pub(crate) fn parse_optional_duration(s: &str) -> Result<Option<Duration>, String> {
    let d = parse_duration(s)?;
    Ok((!d.is_zero()).then_some(d))
}

/// A duration of at least `min`.
pub(crate) fn parse_duration_at_least(s: &str, min: Duration) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < min {
        return Err(format!("must be at least {}", format_duration(min)));
    }
    Ok(d)
}

/// A heartbeat interval: at least 100ms.
pub(crate) fn parse_heartbeat(s: &str) -> Result<Duration, String> {
    parse_duration_at_least(s, Duration::from_millis(100))
}

/// Renders a duration the way [`parse_duration`] reads it (`1m30s`, `0`).
pub(crate) fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0".to_owned();
    }
    let mut out = String::new();
    for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

/// Size units as today's files spell them; [`parse_size`] refuses others.
const SIZE_UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "KB", "MB", "GB"];

/// Parses a byte count with [`parse_size`](::parse_size): `1024`, `64KiB`,
/// `32MiB`, `1GiB`, `500KB`, `2MB`, `1GB`.
///
/// The crate reads units in any case, with spaces, fractions and units up
/// to exabytes; the relay keeps to a whole number and one of
/// `SIZE_UNITS` spelled as shown (`8mb` and `3TB` stay errors), so a file
/// means the same to every reader. Overflow is an error, never a clamp.
///
/// # Errors
///
/// A message saying which forms are allowed, or that the size overflows.
pub fn parse_size(s: &str) -> Result<u64, String> {
    const HINT: &str =
        "expected a size like 1024, 64KiB, 32MiB or 1GiB (units: KiB, MiB, GiB, KB, MB, GB)";
    let unit = s.trim_start_matches(|c: char| c.is_ascii_digit());
    let spelled = unit.len() < s.len() && (unit.is_empty() || SIZE_UNITS.contains(&unit));
    if !spelled {
        return Err(HINT.to_owned());
    }
    ::parse_size::parse_size(s).map_err(|e| match e {
        ::parse_size::Error::PosOverflow => "size is too large".to_owned(),
        _ => HINT.to_owned(),
    })
}

/// A size of `min..=max` bytes.
pub(crate) fn parse_size_in(s: &str, min: u64, max: u64) -> Result<u64, String> {
    let n = parse_size(s)?;
    if !(min..=max).contains(&n) {
        let (min, max) = (format_size(min), format_size(max));
        return Err(format!("must be from {min} to {max}"));
    }
    Ok(n)
}

/// Renders a byte count the way [`parse_size`] reads it, in the largest
/// unit, binary or decimal, that divides it (`8MiB`, `512MB`, `1500`).
pub(crate) fn format_size(n: u64) -> String {
    const UNITS: [(&str, u64); 6] = [
        ("GiB", 1 << 30),
        ("GB", 1_000_000_000),
        ("MiB", 1 << 20),
        ("MB", 1_000_000),
        ("KiB", 1 << 10),
        ("KB", 1_000),
    ];
    match UNITS
        .iter()
        .find(|(_, size)| n != 0 && n.is_multiple_of(*size))
    {
        Some((unit, size)) => format!("{}{unit}", n / size),
        None => n.to_string(),
    }
}

const FRAME_HINT: &str = r#"expected SSE lines ending in a blank line, like "event: heartbeat\ndata: {\"timestamp\": {now_ms}}\n\n""#;

/// A keepalive frame: complete SSE lines, each ending in `\n` (no CR), then
/// one blank line; `{now_ms}` stands for digits. Returned unchanged.
pub(crate) fn parse_keepalive_frame(s: &str) -> Result<String, String> {
    let filled = s.replace("{now_ms}", "0");
    let problem = if filled.contains('\r') {
        "carriage returns are not allowed (end lines with \\n alone)"
    } else if let Some(body) = filled.strip_suffix("\n\n") {
        let mut lines = body.split('\n');
        if body.is_empty() {
            "no SSE lines before the blank line"
        } else if lines.any(str::is_empty) {
            "a blank line before the end would split the frame"
        } else {
            return Ok(s.to_owned());
        }
    } else {
        "does not end in a blank line (\\n\\n)"
    };
    Err(format!("{problem}; {FRAME_HINT}"))
}

/// Parses `true` or `false`.
pub(crate) fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("expected true or false".to_owned()),
    }
}

/// Parses a whole number in `min..=max` into any integer type that holds it.
pub(crate) fn parse_number<T: TryFrom<u64>>(s: &str, min: u64, max: u64) -> Result<T, String> {
    let hint = || format!("expected a whole number from {min} to {max}");
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(hint());
    }
    let n: u64 = s.parse().map_err(|_| hint())?;
    if !(min..=max).contains(&n) {
        return Err(hint());
    }
    T::try_from(n).map_err(|_| hint())
}

/// Parses an IP socket address (`127.0.0.1:8080`, `[::1]:8080`); host names
/// are refused so that loading the config never touches DNS.
pub(crate) fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| "expected an IP address and port like 127.0.0.1:8080 or [::]:8080".to_owned())
}

/// A path that must name a readable file now.
pub(crate) fn parse_readable_file(s: &str) -> Result<std::path::PathBuf, String> {
    if s.is_empty() {
        return Err("expected a file path".to_owned());
    }
    let path = std::path::PathBuf::from(s);
    match std::fs::File::open(&path).and_then(|f| f.metadata()) {
        Ok(meta) if meta.is_file() => Ok(path),
        Ok(_) => Err("not a regular file".to_owned()),
        Err(e) => Err(format!("cannot read file: {e}")),
    }
}

/// A log filter used when `RUST_LOG` is unset; only emptiness is checked here.
pub(crate) fn parse_log_level(s: &str) -> Result<String, String> {
    match s.trim() {
        "" => Err("expected a log filter like info or sse_edge=debug,warn".to_owned()),
        level => Ok(level.to_owned()),
    }
}

/// A host name for `server.server_names`; stored in lower case.
pub(crate) fn parse_server_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b',');
    if !ok {
        return Err("expected a host name like relay.example.com".to_owned());
    }
    Ok(s.to_ascii_lowercase())
}

/// A route prefix: starts with `/`; a trailing `/` is dropped (except for `/`).
pub(crate) fn parse_route_prefix(s: &str) -> Result<String, String> {
    let bad = |b: u8| b.is_ascii_control() || b == b' ' || b == b'?' || b == b'#';
    if !s.starts_with('/') || s.bytes().any(bad) {
        return Err("expected a path prefix starting with / like /v1 (no query or spaces)".into());
    }
    let trimmed = s.trim_end_matches('/');
    Ok(if trimmed.is_empty() {
        "/".to_owned()
    } else {
        trimmed.to_owned()
    })
}

/// A route name for metrics and logs: non-empty, no control characters.
pub(crate) fn parse_route_name(s: &str) -> Result<String, String> {
    if s.is_empty() || s.chars().any(char::is_control) {
        return Err("expected a non-empty name without control characters".to_owned());
    }
    Ok(s.to_owned())
}

/// Parses `http(s)://host[:port][/base/path]` with [`http::Uri`].
///
/// `Uri` splits scheme, authority and path and refuses characters a URI
/// cannot hold; this adds what a relay's upstream needs on top: http or
/// https only, no query, fragment (which `Uri` would silently drop) or user
/// info, a host name or IP literal, and a port from 1 to 65535.
pub(crate) fn parse_upstream_url(s: &str) -> Result<UpstreamUrl, String> {
    if s.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err("spaces and control characters are not allowed in an upstream URL".into());
    }
    if s.contains(['?', '#']) {
        return Err("query and fragment are not allowed in an upstream URL".to_owned());
    }
    let uri: Uri = s.parse().map_err(|_| URL_HINT.to_owned())?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(URL_HINT.to_owned()),
    };
    let authority = uri.authority().ok_or_else(|| URL_HINT.to_owned())?;
    if authority.as_str().contains('@') {
        return Err("user info (user@host) is not allowed in an upstream URL".to_owned());
    }
    let (host, port) = host_and_port(authority)?;
    let port = match port {
        None if tls => 443,
        None => 80,
        Some(p) => parse_number(p, 1, 65535).map_err(|_| format!("bad port {p:?}; {URL_HINT}"))?,
    };
    Ok(UpstreamUrl {
        tls,
        host,
        port,
        base_path: uri.path().trim_end_matches('/').to_owned(),
    })
}

/// The host (lower case, an IPv6 literal without brackets) and the port
/// text of an authority. `Uri` ignores a port it cannot read (`:70000`,
/// `:`), so the port is taken from the text after the host.
fn host_and_port(authority: &Authority) -> Result<(String, Option<&str>), String> {
    let host = authority.host();
    let port = match &authority.as_str()[host.len()..] {
        "" => None,
        rest => Some(rest.strip_prefix(':').ok_or_else(|| URL_HINT.to_owned())?),
    };
    if let Some(v6) = host.strip_prefix('[') {
        let v6 = v6.strip_suffix(']').ok_or_else(|| URL_HINT.to_owned())?;
        v6.parse::<Ipv6Addr>()
            .map_err(|_| format!("bad IPv6 address {v6:?}; {URL_HINT}"))?;
        return Ok((v6.to_ascii_lowercase(), port));
    }
    let host_ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
    if host.is_empty() || !host.bytes().all(host_ok) {
        return Err(format!("missing or bad host; {URL_HINT}"));
    }
    Ok((host.to_ascii_lowercase(), port))
}

/// Renders an upstream URL back in the form [`parse_upstream_url`] reads.
pub(crate) fn format_upstream_url(u: &UpstreamUrl) -> String {
    let scheme = if u.tls { "https" } else { "http" };
    let host = if u.host.contains(':') {
        format!("[{}]", u.host)
    } else {
        u.host.clone()
    };
    let default_port = if u.tls { 443 } else { 80 };
    let port = if u.port == default_port {
        String::new()
    } else {
        format!(":{}", u.port)
    };
    format!("{scheme}://{host}{port}{}", u.base_path)
}

const ROOTS: [(&str, RootStore); 4] = [
    ("webpki", RootStore::Webpki),
    ("native", RootStore::Native),
    ("both", RootStore::Both),
    ("none", RootStore::None),
];
const PROTOCOLS: [(&str, UpstreamProtocol); 3] = [
    ("auto", UpstreamProtocol::Auto),
    ("http1", UpstreamProtocol::Http1),
    ("http2", UpstreamProtocol::Http2),
];
const DIALECTS: [(&str, DialectSetting); 4] = [
    ("auto", DialectSetting::Auto),
    ("openai", DialectSetting::OpenAi),
    ("anthropic", DialectSetting::Anthropic),
    ("generic", DialectSetting::Generic),
];

fn parse_choice<T: Copy>(s: &str, table: &[(&str, T)]) -> Result<T, String> {
    match table.iter().find(|(name, _)| *name == s) {
        Some((_, v)) => Ok(*v),
        None => {
            let names: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
            Err(format!("expected one of {}", names.join(", ")))
        }
    }
}

fn choice_name<T: Copy + PartialEq>(v: T, table: &[(&'static str, T)]) -> &'static str {
    table.iter().find(|(_, t)| *t == v).map_or("?", |(n, _)| n)
}

/// Parses `webpki`, `native`, `both` or `none`.
pub(crate) fn parse_root_store(s: &str) -> Result<RootStore, String> {
    parse_choice(s, &ROOTS)
}

/// Parses `auto`, `http1` or `http2`.
pub(crate) fn parse_protocol(s: &str) -> Result<UpstreamProtocol, String> {
    parse_choice(s, &PROTOCOLS)
}

/// Parses `auto`, `openai`, `anthropic` or `generic`.
pub(crate) fn parse_dialect(s: &str) -> Result<DialectSetting, String> {
    parse_choice(s, &DIALECTS)
}

pub(crate) fn protocol_name(p: UpstreamProtocol) -> &'static str {
    choice_name(p, &PROTOCOLS)
}

pub(crate) fn dialect_name(d: DialectSetting) -> &'static str {
    choice_name(d, &DIALECTS)
}

/// Quotes `s` as a TOML basic string.
pub(crate) fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// How a setting's value is written; decides its TOML type and rendering.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Duration,
    Size,
    Bool,
    Int,
    Addr,
    Path,
    Text,
    /// An SSE frame; on the command line and in the environment the two
    /// characters `\n` stand for a newline.
    Frame,
    /// TOML array of strings; comma-separated on the command line.
    List,
    Choice(&'static [&'static str]),
}

impl Kind {
    /// The TOML type(s) the file may use, for error messages.
    pub(crate) fn toml_type(self) -> &'static str {
        match self {
            Self::Bool => "a boolean (true or false)",
            Self::Int => "an integer",
            Self::Size => "an integer or a size string like \"32MiB\"",
            Self::Duration => "a duration string like \"15s\"",
            Self::List => "an array of strings",
            Self::Addr | Self::Path | Self::Text | Self::Frame | Self::Choice(_) => "a string",
        }
    }

    /// Placeholder shown in `--help`.
    pub(crate) fn value_name(self) -> &'static str {
        match self {
            Self::Duration => "DURATION",
            Self::Size => "SIZE",
            Self::Bool => "BOOL",
            Self::Int => "N",
            Self::Addr => "ADDR",
            Self::Path => "FILE",
            Self::Text => "TEXT",
            Self::Frame => "FRAME",
            Self::List => "LIST",
            Self::Choice(_) => "NAME",
        }
    }
}

/// A value as written (flag, env or file), before typed parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Raw {
    One(String),
    /// A TOML array of strings.
    Many(Vec<String>),
}

impl Raw {
    /// Textual form of a TOML value whose type fits `kind`.
    pub(crate) fn from_toml(kind: Kind, value: &toml::Value) -> Option<Self> {
        use toml::Value as T;
        match (kind, value) {
            (Kind::Bool, T::Boolean(b)) => Some(Self::One(b.to_string())),
            (Kind::Int | Kind::Size, T::Integer(n)) => Some(Self::One(n.to_string())),
            (Kind::Duration, T::Integer(0)) => Some(Self::One("0".to_owned())),
            (Kind::List, T::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .map(Self::Many),
            (Kind::Bool | Kind::Int | Kind::List, _) => None,
            (_, T::String(s)) => Some(Self::One(s.clone())),
            _ => None,
        }
    }

    /// A flag's or environment variable's value.
    pub(crate) fn from_cli(kind: Kind, value: String) -> Self {
        match kind {
            Kind::Frame => Self::One(value.replace("\\n", "\n")),
            _ => Self::One(value),
        }
    }

    /// List items: the TOML array's, or the comma-separated non-empty parts.
    pub(crate) fn items(&self) -> Vec<&str> {
        match self {
            Self::One(s) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect(),
            Self::Many(items) => items.iter().map(String::as_str).collect(),
        }
    }

    /// The (already validated) value as a TOML literal.
    pub(crate) fn to_toml(&self, kind: Kind) -> String {
        match (kind, self) {
            (Kind::List, _) | (_, Self::Many(_)) => {
                let items: Vec<String> = self.items().into_iter().map(toml_string).collect();
                format!("[{}]", items.join(", "))
            }
            (Kind::Bool, Self::One(s)) => s.clone(),
            (Kind::Int | Kind::Size, Self::One(s)) => match s.parse::<i64>() {
                Ok(n) if n >= 0 => n.to_string(),
                _ => toml_string(s),
            },
            (_, Self::One(s)) => toml_string(s),
        }
    }
}

#[cfg(test)]
mod tests;
