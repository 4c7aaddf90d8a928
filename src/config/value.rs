//! Typed parsers (and their inverse formatters) for single config values.
//!
//! Every parser takes the value as text, whether it came from a flag, an
//! environment variable or the TOML file, and returns an error that says
//! what is allowed; [`super::load`] adds the key and the source around it.

use std::net::{Ipv6Addr, SocketAddr};
use std::time::Duration;

use super::{DialectSetting, RootStore, UpstreamProtocol, UpstreamUrl};

const DURATION_HINT: &str = "expected a duration like 250ms, 15s, 2m or 1h";
const URL_HINT: &str = "expected an http:// or https:// URL like https://api.openai.com/v1";

/// Parses `250ms`, `15s`, `2m`, `1h`, concatenations in descending unit
/// order such as `1m30s`, and `0`.
///
/// # Errors
///
/// A message saying which forms are allowed.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(DURATION_HINT.to_owned());
    }
    let mut rest = s;
    let mut total_ms: u64 = 0;
    let mut last_unit = u64::MAX;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let (number, tail) = rest.split_at(digits);
        let letters = tail.len()
            - tail
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        let (unit, tail) = tail.split_at(letters);
        let unit_ms = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return Err(DURATION_HINT.to_owned()),
        };
        if number.is_empty() || unit_ms >= last_unit {
            return Err(DURATION_HINT.to_owned());
        }
        let n: u64 = number.parse().map_err(|_| DURATION_HINT.to_owned())?;
        total_ms = n
            .checked_mul(unit_ms)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| "duration is too large".to_owned())?;
        last_unit = unit_ms;
        rest = tail;
    }
    Ok(Duration::from_millis(total_ms))
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

/// Parses a byte count: `1024`, `64KiB`, `32MiB`, `1GiB`, `500KB`, `2MB`, `1GB`.
///
/// # Errors
///
/// A message saying which forms are allowed, or that the size overflows.
pub fn parse_size(s: &str) -> Result<u64, String> {
    const HINT: &str =
        "expected a size like 1024, 64KiB, 32MiB or 1GiB (units: KiB, MiB, GiB, KB, MB, GB)";
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let factor: u64 = match unit {
        "" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(HINT.to_owned()),
    };
    if number.is_empty() {
        return Err(HINT.to_owned());
    }
    let n: u64 = number.parse().map_err(|_| "size is too large".to_owned())?;
    n.checked_mul(factor)
        .ok_or_else(|| "size is too large".to_owned())
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

/// Parses `http(s)://host[:port][/base/path]`.
pub(crate) fn parse_upstream_url(s: &str) -> Result<UpstreamUrl, String> {
    let (tls, rest) = split_scheme(s).ok_or_else(|| URL_HINT.to_owned())?;
    if rest.contains(['?', '#']) {
        return Err("query and fragment are not allowed in an upstream URL".to_owned());
    }
    if rest.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err("spaces and control characters are not allowed in an upstream URL".into());
    }
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.contains('@') {
        return Err("user info (user@host) is not allowed in an upstream URL".to_owned());
    }
    let (host, port) = split_host_port(authority)?;
    let port = match port {
        None => {
            if tls {
                443
            } else {
                80
            }
        }
        Some(p) => parse_number(p, 1, 65535).map_err(|_| format!("bad port {p:?}; {URL_HINT}"))?,
    };
    Ok(UpstreamUrl {
        tls,
        host,
        port,
        base_path: path.trim_end_matches('/').to_owned(),
    })
}

fn split_scheme(s: &str) -> Option<(bool, &str)> {
    let (scheme, rest) = s.split_once("://")?;
    if scheme.eq_ignore_ascii_case("https") {
        Some((true, rest))
    } else if scheme.eq_ignore_ascii_case("http") {
        Some((false, rest))
    } else {
        None
    }
}

/// Splits `host[:port]` / `[v6][:port]`; the host comes back in lower case
/// and without brackets.
fn split_host_port(authority: &str) -> Result<(String, Option<&str>), String> {
    let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
        let (v6, after) = inner.split_once(']').ok_or_else(|| URL_HINT.to_owned())?;
        v6.parse::<Ipv6Addr>()
            .map_err(|_| format!("bad IPv6 address {v6:?}; {URL_HINT}"))?;
        match after {
            "" => (v6, None),
            _ => (
                v6,
                Some(after.strip_prefix(':').ok_or_else(|| URL_HINT.to_owned())?),
            ),
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let host_ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':');
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
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("250ms"), Ok(ms(250)));
        assert_eq!(parse_duration("15s"), Ok(ms(15_000)));
        assert_eq!(parse_duration("2m"), Ok(ms(120_000)));
        assert_eq!(parse_duration("1h"), Ok(ms(3_600_000)));
        assert_eq!(parse_duration("1m30s"), Ok(ms(90_000)));
        assert_eq!(parse_duration("1h2m3s4ms"), Ok(ms(3_723_004)));
        for bad in [
            "", "5", "5x", "1.5s", "-1s", "s", "30s1m", "1s1s", " 1s", "1 s", "1S",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_duration("99999999999999999999h").is_err());
        assert!(parse_duration("18446744073709551615h").is_err());
        assert_eq!(parse_duration("5x"), Err(DURATION_HINT.to_owned()));
    }

    #[test]
    fn duration_variants_and_format() {
        assert!(parse_positive_duration("0").is_err());
        assert!(parse_positive_duration("0s").is_err());
        assert_eq!(parse_optional_duration("0"), Ok(None));
        assert_eq!(
            parse_optional_duration("2s"),
            Ok(Some(Duration::from_secs(2)))
        );
        let min = Duration::from_millis(100);
        assert!(parse_duration_at_least("99ms", min).is_err());
        assert!(parse_duration_at_least("100ms", min).is_ok());
        for s in ["0", "250ms", "15s", "1m30s", "1h2m3s4ms"] {
            assert_eq!(parse_duration(s).map(format_duration).as_deref(), Ok(s));
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("64KiB"), Ok(64 * 1024));
        assert_eq!(parse_size("32MiB"), Ok(32 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("2KB"), Ok(2_000));
        assert_eq!(parse_size("3MB"), Ok(3_000_000));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        for bad in ["", "KiB", "1kib", "1 KiB", "1.5MiB", "-1", "1TiB", "1k"] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_size("18446744073709551615").is_ok());
        assert!(parse_size("18446744073709551616").is_err());
        assert!(parse_size("17179869184GiB").is_err());
        for (n, shown) in [
            (0, "0"),
            (1500, "1500"),
            (8 << 20, "8MiB"),
            (3 << 30, "3GiB"),
            (500_000, "500KB"),
            (2_000_000, "2MB"),
            (1_024_000, "1000KiB"),
            (512_000_000, "512MB"),
            (3_000_000_000, "3GB"),
        ] {
            assert_eq!(format_size(n), shown);
            assert_eq!(parse_size(shown), Ok(n));
        }
    }

    #[test]
    fn stream_values() {
        assert_eq!(parse_heartbeat("100ms"), Ok(Duration::from_millis(100)));
        assert!(parse_heartbeat("99ms").is_err());
        assert_eq!(parse_size_in("1KiB", 1 << 10, 1 << 30), Ok(1024));
        assert_eq!(
            parse_size_in("1023", 1 << 10, 1 << 30),
            Err("must be from 1KiB to 1GiB".to_owned())
        );
        assert!(parse_size_in("1025MiB", 1 << 10, 1 << 30).is_err());
        for (n, s) in [
            (0, "0"),
            (1500, "1500"),
            (8 << 20, "8MiB"),
            (3 << 30, "3GiB"),
        ] {
            assert_eq!(format_size(n), s);
            assert_eq!(parse_size(s), Ok(n));
        }
        for good in [": ping\n\n", "event: hb\ndata: {\"t\": {now_ms}}\n\n"] {
            assert_eq!(parse_keepalive_frame(good).as_deref(), Ok(good));
        }
        let bad = [
            "",
            "\n",
            "\n\n",
            ": a\n",
            ": a\n\n\n",
            "a\n\nb\n\n",
            "a\r\n\r\n",
        ];
        for frame in bad {
            let why = parse_keepalive_frame(frame).unwrap_err();
            assert!(why.ends_with(FRAME_HINT), "{frame:?}: {why}");
        }
        assert!(
            FRAME_HINT.contains(r#"like "event: heartbeat\ndata: {\"timestamp\": {now_ms}}\n\n""#)
        );
        assert_eq!(
            Raw::from_cli(Kind::Frame, r": a\n\n".to_owned()),
            Raw::One(": a\n\n".to_owned())
        );
        assert_eq!(
            Raw::from_cli(Kind::Text, r"a\n".to_owned()),
            Raw::One(r"a\n".to_owned())
        );
    }

    #[test]
    fn bools_numbers_addrs() {
        assert_eq!(parse_bool("true"), Ok(true));
        assert_eq!(parse_bool("false"), Ok(false));
        assert!(parse_bool("yes").is_err());
        assert_eq!(parse_number::<u32>("5", 1, 10), Ok(5));
        assert!(parse_number::<u32>("0", 1, 10).is_err());
        assert!(parse_number::<u32>("11", 1, 10).is_err());
        assert!(parse_number::<u32>("+5", 1, 10).is_err());
        assert!(parse_number::<u8>("300", 0, 1000).is_err());
        assert!(parse_socket_addr("127.0.0.1:8080").is_ok());
        assert!(parse_socket_addr("[::1]:8080").is_ok());
        assert!(parse_socket_addr("localhost:8080").is_err());
        assert!(parse_socket_addr("127.0.0.1").is_err());
    }

    #[test]
    fn upstream_urls() {
        let u = parse_upstream_url("https://API.openai.com/v1/").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port),
            (true, "api.openai.com", 443)
        );
        assert_eq!(u.base_path, "/v1");
        let u = parse_upstream_url("http://10.0.0.1:8000").unwrap();
        assert_eq!((u.tls, u.port, u.base_path.as_str()), (false, 8000, ""));
        let u = parse_upstream_url("http://[::1]:9000/a/b").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 9000));
        assert_eq!(format_upstream_url(&u), "http://[::1]:9000/a/b");
        assert_eq!(parse_upstream_url("http://[fe80::1]").unwrap().port, 80);
        let bad = [
            "ftp://x",
            "api.openai.com",
            "https://",
            "https://:443",
            "https://u:p@host",
            "https://host/v1?x=1",
            "https://host#f",
            "https://host:0",
            "https://host:70000",
            "https://host:",
            "https://::1/",
            "https://[::1",
            "https://[nope]:80",
            "https://ho st",
        ];
        for s in bad {
            assert!(parse_upstream_url(s).is_err(), "{s:?} accepted");
        }
    }

    #[test]
    fn prefixes_names_enums() {
        assert_eq!(parse_route_prefix("/"), Ok("/".to_owned()));
        assert_eq!(parse_route_prefix("/v1/"), Ok("/v1".to_owned()));
        assert!(parse_route_prefix("v1").is_err());
        assert!(parse_route_prefix("/v1?x").is_err());
        assert_eq!(
            parse_server_name("Relay.Example"),
            Ok("relay.example".to_owned())
        );
        assert!(parse_server_name("").is_err());
        assert_eq!(parse_root_store("none"), Ok(RootStore::None));
        assert_eq!(
            parse_root_store("all"),
            Err("expected one of webpki, native, both, none".to_owned())
        );
        assert_eq!(parse_protocol("http2"), Ok(UpstreamProtocol::Http2));
        assert_eq!(parse_dialect("openai"), Ok(DialectSetting::OpenAi));
        assert!(parse_dialect("OpenAI").is_err());
        assert_eq!(dialect_name(DialectSetting::Anthropic), "anthropic");
        assert_eq!(protocol_name(UpstreamProtocol::Http1), "http1");
        assert!(parse_log_level(" ").is_err());
    }

    #[test]
    fn files_and_toml_strings() {
        let path = std::env::temp_dir().join(format!("sse-edge-value-{}", std::process::id()));
        std::fs::write(&path, "x").unwrap();
        assert!(parse_readable_file(path.to_str().unwrap()).is_ok());
        std::fs::remove_file(&path).unwrap();
        assert!(parse_readable_file(path.to_str().unwrap()).is_err());
        assert!(parse_readable_file(std::env::temp_dir().to_str().unwrap()).is_err());
        assert_eq!(toml_string("a\"b\\c\n\t"), r#""a\"b\\c\n\u0009""#);
    }

    #[test]
    fn raw_values() {
        let one = |s: &str| Raw::One(s.to_owned());
        let t = |src: &str| src.parse::<toml::Table>().unwrap().remove("v").unwrap();
        assert_eq!(
            Raw::from_toml(Kind::Bool, &t("v = true")),
            Some(one("true"))
        );
        assert_eq!(Raw::from_toml(Kind::Bool, &t("v = \"true\"")), None);
        assert_eq!(
            Raw::from_toml(Kind::Size, &t("v = 1024")),
            Some(one("1024"))
        );
        assert_eq!(
            Raw::from_toml(Kind::Size, &t("v = \"1KiB\"")),
            Some(one("1KiB"))
        );
        assert_eq!(Raw::from_toml(Kind::Duration, &t("v = 0")), Some(one("0")));
        assert_eq!(Raw::from_toml(Kind::Duration, &t("v = 5")), None);
        assert_eq!(Raw::from_toml(Kind::Text, &t("v = 1.5")), None);
        assert_eq!(Raw::from_toml(Kind::List, &t("v = [\"a\", 1]")), None);
        let list = Raw::from_toml(Kind::List, &t("v = [\"a\", \"b\"]")).unwrap();
        assert_eq!(list.to_toml(Kind::List), r#"["a", "b"]"#);
        assert_eq!(one(" a, ,b ").items(), ["a", "b"]);
        assert_eq!(one("").to_toml(Kind::List), "[]");
        assert_eq!(one("0100").to_toml(Kind::Int), "100");
        assert_eq!(
            one("18446744073709551615").to_toml(Kind::Size),
            "\"18446744073709551615\""
        );
        assert_eq!(one("15s").to_toml(Kind::Duration), "\"15s\"");
    }
}
