//! The typed [`Config`] from the layered values: each setting parsed with
//! its value parser, plus the checks that span settings (TLS cert and key
//! together, a CA source for upstream TLS, `server.max_connections` within
//! the open-file limit).

use super::load::{ConfigError, Source, Values, invalid};
use super::nofile;
use super::value::{
    parse_bool, parse_duration, parse_log_level, parse_number, parse_optional_duration,
    parse_positive_duration, parse_readable_file, parse_root_store, parse_server_name, parse_size,
    parse_size_in, parse_socket_addr,
};
use super::{
    Config, LogConfig, RootStore, RouteConfig, ServerConfig, ServerLimits, TlsConfig,
    UpstreamConfig, UsageConfig,
};

pub(super) fn build_config(v: &Values, routes: Vec<RouteConfig>) -> Result<Config, ConfigError> {
    Ok(Config {
        listen: v.get("listen", parse_socket_addr)?,
        admin: v.get("admin", parse_socket_addr)?,
        workers: v.get("workers", |s| parse_number(s, 1, 1024))?,
        drain_timeout: v.get("drain_timeout", parse_duration)?,
        server: build_server(v)?,
        tls: build_tls(v)?,
        upstream: build_upstream(v)?,
        routes,
        log: LogConfig {
            access_log: v.get("log.access_log", parse_bool)?,
            level: v.get("log.level", parse_log_level)?,
        },
        usage: UsageConfig {
            max_models: v.get("usage.max_models", |s| parse_number(s, 1, 10_000))?,
            max_body_size: v.get("usage.max_body_size", parse_size)?,
        },
        resume_memory: v.get("resume_memory", parse_size)?,
        cluster: super::cluster::build_cluster(v)?,
    })
}

fn build_server(v: &Values) -> Result<ServerConfig, ConfigError> {
    Ok(ServerConfig {
        backlog: v.get("server.backlog", |s| parse_number(s, 1, 65535))?,
        tcp_keepalive: v.get("server.tcp_keepalive", parse_optional_duration)?,
        header_read_timeout: v.get("server.header_read_timeout", parse_positive_duration)?,
        max_request_body: v.get("server.max_request_body", parse_size)?,
        http2: v.get("server.http2", parse_bool)?,
        h2_max_concurrent_streams: v.get("server.h2_max_concurrent_streams", |s| {
            parse_number(s, 1, 65535)
        })?,
        trust_forwarded: v.get("server.trust_forwarded", parse_bool)?,
        server_names: v.list("server.server_names", parse_server_name)?,
        limits: ServerLimits {
            max_header_size: v.get("server.max_header_size", |s| {
                parse_size_in(s, 8 << 10, 1 << 20)
            })?,
            max_headers: v.get("server.max_headers", |s| parse_number(s, 1, 1000))?,
            max_uri_length: v.get("server.max_uri_length", |s| parse_size_in(s, 256, 1 << 20))?,
            max_connections: max_connections(v)?,
            max_requests: v.get("server.max_requests", |s| parse_number(s, 1, 1_000_000))?,
            body_timeout: v.get("server.body_timeout", parse_positive_duration)?,
            write_timeout: v.get("server.write_timeout", parse_positive_duration)?,
            idle_timeout: v.get("server.idle_timeout", parse_positive_duration)?,
        },
    })
}

/// `server.max_connections`, refused when the open-file limit has no room
/// for that many connections (see [`super::nofile`]).
fn max_connections(v: &Values) -> Result<usize, ConfigError> {
    const KEY: &str = "server.max_connections";
    let n: u64 = v.get(KEY, |s| parse_number(s, 1, nofile::MAX_CONNECTIONS))?;
    let too_many = nofile::soft_limit().and_then(|limit| nofile::too_many(n, limit));
    if let (Some(why), Some(entry)) = (too_many, v.find(KEY)?) {
        return Err(invalid(KEY, &entry.source, &n.to_string(), &why));
    }
    usize::try_from(n).map_err(|_| ConfigError(format!("{KEY} {n} is too large")))
}

fn build_tls(v: &Values) -> Result<Option<TlsConfig>, ConfigError> {
    let handshake_timeout = v.get("tls.handshake_timeout", parse_positive_duration)?;
    let reload_interval = v.get("tls.reload_interval", parse_positive_duration)?;
    match (v.source("tls.cert"), v.source("tls.key")) {
        (None, None) => return Ok(None),
        (Some(from), None) => return Err(half_pair("tls.cert", from, "tls.key")),
        (None, Some(from)) => return Err(half_pair("tls.key", from, "tls.cert")),
        (Some(_), Some(_)) => {}
    }
    Ok(Some(TlsConfig {
        cert: v.get("tls.cert", parse_readable_file)?,
        key: v.get("tls.key", parse_readable_file)?,
        handshake_timeout,
        reload_interval,
    }))
}

fn half_pair(given: &str, from: &Source, missing: &str) -> ConfigError {
    ConfigError(format!(
        "{given} is set (from {from}) but {missing} is not: give both tls.cert and tls.key, or neither"
    ))
}

fn build_upstream(v: &Values) -> Result<UpstreamConfig, ConfigError> {
    let roots = v.get("upstream.roots", parse_root_store)?;
    let ca_file = v.opt("upstream.ca_file", parse_readable_file)?;
    if roots == RootStore::None && ca_file.is_none() {
        let from = v
            .source("upstream.roots")
            .cloned()
            .unwrap_or(Source::Default);
        return Err(ConfigError(format!(
            "upstream.roots is none (from {from}) but upstream.ca_file is not set: \
             give a CA file or choose webpki, native or both"
        )));
    }
    Ok(UpstreamConfig {
        connect_timeout: v.get("upstream.connect_timeout", parse_positive_duration)?,
        idle_timeout: v.get("upstream.idle_timeout", parse_positive_duration)?,
        max_idle_per_origin: v.get("upstream.max_idle_per_origin", |s| {
            parse_number(s, 0, 65535)
        })?,
        h2_max_streams_per_connection: v.get("upstream.h2_max_streams_per_connection", |s| {
            parse_number(s, 1, u32::MAX.into())
        })?,
        tcp_keepalive: v.get("upstream.tcp_keepalive", parse_optional_duration)?,
        roots,
        ca_file,
    })
}
