//! Route files with endpoint groups (`[[route.group]]`), written from a
//! small builder, and a relay started from one with its access log
//! captured and an explicit environment (for endpoints' `key_env`).
//!
//! ```text
//! route_file(vec![
//!     group("primary", [Endpoint::from(&a), Endpoint::from(&b).weight(2)])
//!         .set("first_byte_timeout", "1s"),
//!     group("backup", [Endpoint::from(&c).model("fallback-model").continuation("vllm")]),
//! ])
//! .set("retry_backoff", "50ms")
//! .set("continuation_attempts", "1")
//! ```
//!
//! Values are written as TOML strings unless they are `true`, `false` or
//! all digits, so durations need no quotes.

use sse_edge::Running;

use super::{CapturedLog, FaultyUpstream, TempDir, relay_config_env, start_with_log};

/// One `{ url = ..., ... }` entry of a group's `endpoints`.
#[derive(Debug, Clone)]
pub struct Endpoint {
    url: String,
    name: Option<String>,
    weight: Option<u32>,
    model: Option<String>,
    key_env: Option<String>,
    key_header: Option<String>,
    continuation: Option<String>,
}

impl Endpoint {
    /// An endpoint at `url` with the relay's default name.
    pub fn url(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            name: None,
            weight: None,
            model: None,
            key_env: None,
            key_header: None,
            continuation: None,
        }
    }

    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    pub fn weight(mut self, w: u32) -> Self {
        self.weight = Some(w);
        self
    }

    /// Requests sent here get this top-level `model`.
    pub fn model(mut self, m: &str) -> Self {
        self.model = Some(m.to_owned());
        self
    }

    /// The relay's key for this endpoint, from `env` (sent as `header`, or
    /// the relay's default header when `None`).
    pub fn key(mut self, env: &str, header: Option<&str>) -> Self {
        self.key_env = Some(env.to_owned());
        self.key_header = header.map(str::to_owned);
        self
    }

    /// How it continues a cut answer (`anthropic`, `vllm`, `assistant`).
    pub fn continuation(mut self, mechanism: &str) -> Self {
        self.continuation = Some(mechanism.to_owned());
        self
    }

    fn toml(&self) -> String {
        let mut fields = vec![format!("url = {}", quoted(&self.url))];
        let strings = [
            ("name", &self.name),
            ("model", &self.model),
            ("key_env", &self.key_env),
            ("key_header", &self.key_header),
            ("continuation", &self.continuation),
        ];
        for (k, v) in strings {
            if let Some(v) = v {
                fields.push(format!("{k} = {}", quoted(v)));
            }
        }
        if let Some(w) = self.weight {
            fields.push(format!("weight = {w}"));
        }
        format!("{{ {} }}", fields.join(", "))
    }
}

/// A faulty instance as an endpoint named after it.
impl From<&FaultyUpstream> for Endpoint {
    fn from(up: &FaultyUpstream) -> Self {
        Endpoint::url(&up.url()).named(&up.name)
    }
}

/// One `[[route.group]]`.
#[derive(Debug, Clone)]
pub struct Group {
    settings: Vec<(String, String)>,
    endpoints: Vec<Endpoint>,
}

/// A group named `name` of `endpoints`.
pub fn group(name: &str, endpoints: impl IntoIterator<Item = Endpoint>) -> Group {
    Group {
        settings: vec![("name".to_owned(), name.to_owned())],
        endpoints: endpoints.into_iter().collect(),
    }
}

impl Group {
    /// A group key (`first_byte_timeout`, ...).
    pub fn set(mut self, key: &str, value: &str) -> Self {
        self.settings.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Where a context-window overflow goes.
    pub fn context_fallback(self) -> Self {
        self.set("context_fallback", "true")
    }
}

/// A config file with one catch-all route (`name = "failover"`) made of
/// groups, the first the primary.
#[derive(Debug, Clone)]
pub struct RouteFile {
    top: Vec<(String, String)>,
    route: Vec<(String, String)>,
    groups: Vec<Group>,
}

/// The route's name in metrics and the access log.
pub const ROUTE: &str = "failover";

pub fn route_file(groups: Vec<Group>) -> RouteFile {
    RouteFile {
        top: Vec::new(),
        route: vec![
            ("name".to_owned(), ROUTE.to_owned()),
            ("prefix".to_owned(), "/".to_owned()),
        ],
        groups,
    }
}

impl RouteFile {
    /// A route key (`retry_attempts`, `first_event_timeout`, ...).
    pub fn set(mut self, key: &str, value: &str) -> Self {
        self.route.push((key.to_owned(), value.to_owned()));
        self
    }

    /// A top-level key, dotted for a table (`upstream.first_byte_timeout`).
    pub fn top(mut self, key: &str, value: &str) -> Self {
        self.top.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn toml(&self) -> String {
        let mut out = String::new();
        let line = |out: &mut String, (k, v): &(String, String)| {
            out.push_str(&format!("{k} = {}\n", value(v)));
        };
        for kv in &self.top {
            line(&mut out, kv);
        }
        out.push_str("\n[[route]]\n");
        for kv in &self.route {
            line(&mut out, kv);
        }
        for g in &self.groups {
            out.push_str("\n[[route.group]]\n");
            for kv in &g.settings {
                line(&mut out, kv);
            }
            let eps: Vec<String> = g.endpoints.iter().map(Endpoint::toml).collect();
            out.push_str(&format!("endpoints = [\n  {},\n]\n", eps.join(",\n  ")));
        }
        out
    }
}

fn quoted(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

fn value(v: &str) -> String {
    let raw =
        v == "true" || v == "false" || (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()));
    if raw { v.to_owned() } else { quoted(v) }
}

/// Starts the relay from `file` (on port 0, access log captured) with the
/// environment `env`.
pub async fn start_route_file(file: &RouteFile, env: &[(&str, &str)]) -> (Running, CapturedLog) {
    let dir = TempDir::new("route-file");
    let text = file.toml();
    let path = dir.write("sse-edge.toml", text.as_bytes());
    // The file is read here, while the arguments are parsed.
    let config = relay_config_env(&["--config", path.to_str().unwrap()], env)
        .unwrap_or_else(|e| panic!("{e}\n--- config file:\n{text}"));
    start_with_log(config).await
}
