//! Effective configuration of the relay: the types here, and how they are
//! loaded.
//!
//! Values come from four layers, highest first: command-line flag,
//! `SSE_EDGE_*` environment variable, TOML file, built-in default (see
//! [`Layers`]). Everything here is already validated: code that holds a
//! [`Config`] never re-checks a value. The exception is a keys file's
//! contents, which are auth's to read (see [`KeysFile`]).
//!
//! Files: `settings` declares every key; `load` layers them; `file` reads
//! the TOML; `value` parses single values; `build` makes the typed
//! [`Config`]; `routes`, `groups`, `route_auth` and `cors` the routes (`table`
//! reads their tables, naming keys by path); `cluster` the `[cluster]`
//! section (its URL redacted wherever it is shown); `render` the check-config
//! output; `nofile` the open-file limit. The command line
//! that drives all this sits above config, in `crate::cli`.

mod build;
mod cluster;
mod cors;
mod file;
mod groups;
mod load;
pub(crate) mod nofile;
mod render;
mod route_auth;
mod routes;
mod settings;
mod table;
#[cfg(test)]
mod tests;
mod value;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::HeaderValue;

pub use cors::{
    Allowed, AllowedOrigins, CorsConfig, DEFAULT_ALLOW_HEADERS, DEFAULT_ALLOW_METHODS,
    DEFAULT_MAX_AGE, OriginPattern, relay_exposed,
};
pub use load::{ConfigError, Layers, Loaded, Lookup};
pub use nofile::{OpenFileLimit, raise_open_file_limit};
pub(crate) use settings::flags;
pub use value::{parse_duration, parse_size};
pub(crate) use value::{parse_heartbeat, parse_socket_addr};

/// The whole relay configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address of the client-facing listener.
    pub listen: SocketAddr,
    /// Address of the admin listener (`/healthz`, `/readyz`, `/metrics`).
    pub admin: SocketAddr,
    /// Tokio worker threads.
    pub workers: usize,
    /// How long in-flight requests may run after SIGTERM/SIGINT.
    pub drain_timeout: Duration,
    pub server: ServerConfig,
    /// TLS termination; `None` serves plaintext (HTTP/1.1 and h2c).
    pub tls: Option<TlsConfig>,
    pub upstream: UpstreamConfig,
    /// Routes in match order (longest prefix wins, see `proxy::route`).
    pub routes: Vec<RouteConfig>,
    pub log: LogConfig,
    pub usage: UsageConfig,
    /// Most bytes all resume buffers hold together (`resume_memory`).
    pub resume_memory: u64,
    /// Cluster mode (`[cluster]`): state shared with the other replicas in
    /// Redis or Valkey; `None` keeps everything in-process.
    pub cluster: Option<ClusterConfig>,
}

/// `[cluster]`: the Redis or Valkey the replicas share.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `redis://` or `rediss://`, with user, password and db; checked at
    /// load. Shown only redacted.
    pub url: ClusterUrl,
    /// Deadline for connecting (and reconnecting) to Redis.
    pub connect_timeout: Duration,
    /// Deadline for one Redis round trip.
    pub command_timeout: Duration,
    /// Prefix of every key the relay writes.
    pub key_prefix: String,
    /// How much of a rate limit's tokens (in time at its rate) a replica
    /// takes at once; zero takes one per request.
    pub rate_limit_lease: Duration,
    /// PEM CA bundle that verifies a `rediss://` server (else the system's
    /// CA store); checked at load to hold at least one certificate.
    pub ca_file: Option<PathBuf>,
}

/// A Redis URL that may hold a password: `Debug` and `Display` show it
/// with the password replaced by `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterUrl(pub String);

/// What a rate-limited route does when Redis cannot decide
/// (`rate_limit_on_cluster_error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClusterErrorPolicy {
    /// Decide with the replica's own buckets (logged and counted).
    #[default]
    Open,
    /// Refuse with 503 in the dialect's shape.
    Closed,
}

impl ClusterErrorPolicy {
    pub fn name(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }
}

/// Token accounting settings.
#[derive(Debug, Clone)]
pub struct UsageConfig {
    /// Distinct `model` label values in `sse_edge_tokens_total`; later
    /// models are counted as `other`.
    pub max_models: usize,
    /// Non-streaming JSON answers up to this size are parsed for usage.
    pub max_body_size: u64,
}

/// Client-facing listener and protocol settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// listen(2) backlog.
    pub backlog: u32,
    /// TCP keepalive idle time on accepted sockets; `None` disables it.
    pub tcp_keepalive: Option<Duration>,
    /// Deadline for a complete request head (HTTP/1).
    pub header_read_timeout: Duration,
    /// Largest request body accepted (413 above it).
    pub max_request_body: u64,
    /// Accept HTTP/2 (h2c prior knowledge on plaintext, ALPN `h2` on TLS).
    pub http2: bool,
    /// HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS advertised to clients.
    pub h2_max_concurrent_streams: u32,
    /// Append to client-supplied X-Forwarded-For instead of replacing it.
    pub trust_forwarded: bool,
    /// Host names this relay answers to in absolute-form request targets.
    pub server_names: Vec<String>,
    pub limits: ServerLimits,
}

/// What one client may cost the relay.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Largest request head / HTTP/2 header list (431).
    pub max_header_size: u64,
    /// Most request header fields on HTTP/1 (431).
    pub max_headers: usize,
    /// Longest request target (414).
    pub max_uri_length: u64,
    /// Open client connections; beyond it new ones get 503 and are closed.
    pub max_connections: usize,
    /// Requests in flight, streams included; beyond it 503 + Retry-After.
    pub max_requests: usize,
    /// Longest pause between request body bytes (408).
    pub body_timeout: Duration,
    /// How long writes to a client may stay blocked (a client that stopped
    /// reading) before the connection is closed.
    pub write_timeout: Duration,
    /// HTTP/2 connections with no open request are closed after this.
    pub idle_timeout: Duration,
}

/// TLS termination settings.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// Deadline for a complete TLS handshake.
    pub handshake_timeout: Duration,
    /// How often the cert/key files are checked for changes.
    pub reload_interval: Duration,
}

/// Upstream connection pool settings, shared by all origins.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// TCP connect plus TLS and HTTP/2 handshake deadline.
    pub connect_timeout: Duration,
    /// Idle HTTP/1.1 connections older than this are closed. Keep it below
    /// the upstream's own keep-alive timeout.
    pub idle_timeout: Duration,
    /// Idle HTTP/1.1 connections kept per origin at least: the pool keeps
    /// up to the recent peak of connections in use (`upstream::pool`);
    /// 0 turns HTTP/1.1 pooling off.
    pub max_idle_per_origin: usize,
    /// Streams the relay puts on one HTTP/2 connection before it opens another.
    pub h2_max_streams_per_connection: usize,
    /// TCP keepalive idle time on upstream sockets; `None` disables it.
    pub tcp_keepalive: Option<Duration>,
    /// Which CA roots verify upstream certificates.
    pub roots: RootStore,
    /// Extra PEM CA bundle trusted for upstream TLS.
    pub ca_file: Option<PathBuf>,
}

/// Source of trusted roots for upstream TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootStore {
    /// Mozilla's set compiled into the binary.
    Webpki,
    /// The operating system's store.
    Native,
    /// Both of the above.
    Both,
    /// Only `ca_file`.
    None,
}

/// One `[[route]]`.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Name used in metrics and logs (defaults to the prefix).
    pub name: String,
    /// Path prefix matched against the request path, segment-aligned.
    pub prefix: String,
    /// Remove `prefix` from the path before forwarding.
    pub strip_prefix: bool,
    /// Where the route's requests go: its endpoint groups.
    pub upstreams: Upstreams,
    pub dialect: DialectSetting,
    /// Keepalive, early-commit, retry and timeout behaviour of streams on
    /// this route.
    pub stream: StreamConfig,
    /// Client keys and rate limit (all off by default).
    pub auth: RouteAuth,
    /// Browser access (`cors`); `None`: the upstream's own CORS headers
    /// pass through, and cross-origin requests are not committed early.
    pub cors: Option<CorsConfig>,
}

/// A route's upstream endpoints, in groups (`upstream = "URL"` is a
/// primary group of one endpoint).
#[derive(Debug, Clone)]
pub struct Upstreams {
    /// The primary group, then the fallback groups in the order tried.
    /// Never empty, and no group is empty. Group names are unique within
    /// the route (context group included), and so are endpoint names.
    pub chain: Vec<GroupConfig>,
    /// Where a request the upstream refused for exceeding its context
    /// window goes (`context_fallback = true` on a group).
    pub context: Option<GroupConfig>,
}

impl Upstreams {
    /// Every group: the chain in order, then the context group.
    pub fn groups(&self) -> impl Iterator<Item = &GroupConfig> {
        self.chain.iter().chain(self.context.as_ref())
    }
}

/// A group of equivalent endpoints, balanced among themselves.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// Name in logs, metrics and check-config (`primary` by default for
    /// the first group, `fallback<N>` for the others, `context` for the
    /// context group).
    pub name: String,
    pub endpoints: Vec<EndpointConfig>,
    /// The route's timeouts with the group's own overrides applied.
    pub timeouts: Timeouts,
}

/// One upstream endpoint.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Name in logs and metrics, unique within the route (defaults to the
    /// URL's host, IPv6 in brackets, with `:port` when the port is not the
    /// scheme's default, and `/model` when `model` is set).
    pub name: String,
    pub url: UpstreamUrl,
    /// HTTP version spoken to the endpoint (`protocol`; defaults to the
    /// route's `protocol`).
    pub protocol: UpstreamProtocol,
    /// Share of the group's requests relative to the other endpoints
    /// (1..=1000, default 1).
    pub weight: u32,
    /// Rewrites the JSON request body's top-level `model` for requests
    /// sent here.
    pub model: Option<String>,
    /// How the endpoint continues a trailing assistant message, when it
    /// declares that it can (`continuation`); `None`: it is never sent a
    /// continuation.
    pub continuation: Option<Continuation>,
    /// The relay's own key for this endpoint, replacing whatever the
    /// client sent (`key_env` / `key_header`; on the `upstream = "URL"`
    /// form, the route's `upstream_key_env` / `upstream_key_header`).
    pub key: Option<UpstreamKey>,
}

/// An endpoint's declared way of continuing a cut answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Continuation {
    /// Anthropic messages prefill: a last `assistant` message.
    Anthropic,
    /// vLLM / SGLang: `continue_final_message` with
    /// `add_generation_prompt: false`.
    Vllm,
    /// A trailing assistant message alone.
    Assistant,
}

impl Continuation {
    pub fn name(self) -> &'static str {
        match self {
            Self::Anthropic => "anthropic",
            Self::Vllm => "vllm",
            Self::Assistant => "assistant",
        }
    }
}

/// Deadlines the relay owns on an upstream answer. `None` waits forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// From sending the request to the response head
    /// (`first_byte_timeout`).
    pub first_byte: Option<Duration>,
    /// From the response head of an event stream to its first event
    /// (`first_event_timeout`); upstream comments do not count.
    pub first_event: Option<Duration>,
    /// Longest upstream silence inside a response body
    /// (`read_timeout`); relay keepalives do not count.
    pub read: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            first_byte: Some(Duration::from_secs(300)),
            first_event: Some(Duration::from_secs(300)),
            read: Some(Duration::from_secs(300)),
        }
    }
}

/// A route's edge auth (see `crate::auth`). Route-only keys; the
/// `--upstream` route has none of them.
#[derive(Debug, Clone, Default)]
pub struct RouteAuth {
    /// `auth_keys_file`: the client keys the route accepts.
    pub keys: Option<KeysFile>,
    /// `rate_limit` / `rate_limit_burst`: a token bucket per client key (or
    /// per client address when the route has no keys file).
    pub rate_limit: Option<RateLimit>,
    /// `rate_limit_on_cluster_error`: what the rate limit does when cluster
    /// mode is on and Redis cannot decide.
    pub on_cluster_error: ClusterErrorPolicy,
}

/// A route's keys file (`auth_keys_file`). Loading checks that the path
/// names a readable file; its contents are auth's format, read when the
/// routes are built at start (and by check-config).
#[derive(Debug, Clone)]
pub struct KeysFile {
    pub path: PathBuf,
    /// How often the file is checked for changes (`auth_reload_interval`).
    pub reload_interval: Duration,
}

/// The relay's credential for an upstream endpoint.
#[derive(Debug, Clone)]
pub struct UpstreamKey {
    /// Environment variable the key was read from (at start).
    pub env: String,
    pub header: UpstreamKeyHeader,
    /// The complete header value (`Bearer <key>` or the raw key).
    pub value: SecretHeader,
}

/// Which header carries the upstream key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamKeyHeader {
    /// `Authorization: Bearer <key>` (OpenAI and most others).
    Authorization,
    /// `x-api-key: <key>` (Anthropic).
    XApiKey,
}

impl UpstreamKeyHeader {
    pub fn name(self) -> &'static str {
        match self {
            Self::Authorization => "authorization",
            Self::XApiKey => "x-api-key",
        }
    }
}

/// A header value holding a secret: marked sensitive (HPACK never indexes
/// it) and never shown by `Debug`.
#[derive(Clone)]
pub struct SecretHeader(pub HeaderValue);

impl fmt::Debug for SecretHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `rate_limit = "<count>/<s|m|h>"` with `rate_limit_burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed per period.
    pub count: u32,
    pub period: RatePeriod,
    /// Bucket size: requests that may come at once (defaults to `count`).
    pub burst: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RatePeriod {
    Second,
    Minute,
    Hour,
}

impl RatePeriod {
    pub fn duration(self) -> Duration {
        Duration::from_secs(match self {
            Self::Second => 1,
            Self::Minute => 60,
            Self::Hour => 3600,
        })
    }

    pub fn suffix(self) -> &'static str {
        match self {
            Self::Second => "s",
            Self::Minute => "m",
            Self::Hour => "h",
        }
    }
}

/// Per-route stream settings. Each key also exists at the top level of the
/// file (and as a flag and env var); routes inherit those values unless
/// they set their own.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamConfig {
    /// Downstream silence after which a keepalive is injected (`heartbeat`).
    pub heartbeat: Duration,
    /// Keepalive frame used at event boundaries instead of the dialect's
    /// default (`keepalive_frame`). `{now_ms}` is replaced by the Unix time
    /// in milliseconds. Must be complete SSE lines ending in a blank line.
    pub keepalive_frame: Option<String>,
    /// Most bytes held for one upstream event (`max_event_size`); a larger
    /// event ends the stream with an error event.
    pub max_event_size: u64,
    /// Commit `200 text/event-stream` and start heartbeats when a streaming
    /// request's upstream headers take longer than `heartbeat`
    /// (`early_commit`).
    pub early_commit: bool,
    /// Send leading whitespace to keep a slow non-streaming JSON response
    /// alive (`json_keepalive`; off by default: strict clients reject it).
    pub json_keepalive: bool,
    /// Further attempts after the first, on any endpoint, before the
    /// first upstream event (`retry_attempts`; see `proxy::failover`).
    pub retry_attempts: u32,
    /// Total time spent waiting between attempts, Retry-After included
    /// (`retry_budget`).
    pub retry_budget: Duration,
    /// First backoff before retrying one endpoint; doubles per retry,
    /// capped at 8x (`retry_backoff`).
    pub retry_backoff: Duration,
    /// OpenAI chat: add `stream_options.include_usage` upstream when the
    /// client did not ask for usage, and remove the usage-only chunk from
    /// the client's stream (`include_usage`).
    pub include_usage: bool,
    /// Stream resumption (`resume_window`): how long a stream outlives its
    /// client's disconnect, buffered for a reconnect with `Last-Event-ID`.
    /// `None` turns resumption off.
    pub resume_window: Option<Duration>,
    /// Most bytes of recent events one resumable stream keeps
    /// (`resume_max_bytes`).
    pub resume_max_bytes: u64,
    /// Deadlines on upstream answers (`first_byte_timeout`,
    /// `first_event_timeout`, `read_timeout`; the top level's are
    /// `upstream.*`). A group may override them.
    pub timeouts: Timeouts,
    /// Fail over when the upstream closes or resets the connection before
    /// any response byte, even after the request was written
    /// (`retry_on_reset`; the official SDKs retry exactly this).
    pub retry_on_reset: bool,
    /// Continuations of one stream cut after its first event
    /// (`continuation_attempts`; 0 turns continuation off).
    pub continuation_attempts: u32,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(15),
            keepalive_frame: None,
            max_event_size: 8 * 1024 * 1024,
            early_commit: true,
            json_keepalive: false,
            retry_attempts: 3,
            retry_budget: Duration::from_secs(60),
            retry_backoff: Duration::from_millis(500),
            include_usage: false,
            resume_window: None,
            resume_max_bytes: 4 << 20,
            timeouts: Timeouts::default(),
            retry_on_reset: true,
            continuation_attempts: 0,
        }
    }
}

/// A parsed upstream base URL: `http(s)://host[:port][/base/path]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    pub tls: bool,
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// Path prefix to prepend, without trailing slash (`""` for none).
    pub base_path: String,
}

/// HTTP version used towards an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpstreamProtocol {
    /// ALPN picks on TLS (`h2` preferred); HTTP/1.1 on plaintext.
    Auto,
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 only: ALPN `h2` on TLS, prior knowledge (h2c) on plaintext.
    Http2,
}

/// The API shape a route speaks; picks error bodies and keepalive frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialectSetting {
    /// Decide per request path (see `proxy::dialect`).
    Auto,
    OpenAi,
    Anthropic,
    Generic,
}

/// Logging settings.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Write one JSON access-log line per request to stdout.
    pub access_log: bool,
    /// Default filter for stderr diagnostics when `RUST_LOG` is unset.
    pub level: String,
}
