//! A route's edge-auth keys (route-only, see `crate::auth`):
//! `auth_keys_file`, `upstream_key_env`, `upstream_key_header`,
//! `rate_limit`, `rate_limit_burst`, `rate_limit_on_cluster_error`; and the upstream key of one endpoint
//! (`upstream_key_*` on the `upstream = "URL"` form, an endpoint's
//! `key_env` / `key_header` in a group).
//!
//! Checked when the configuration loads: the keys file's path (a
//! readable file; its contents are auth's format, read by auth when the
//! routes are built at start, and by check-config through
//! [`Loaded::check_keys_files`](super::Loaded::check_keys_files)), and the
//! upstream key, read from its environment variable now. Errors name
//! `route[i].key` and never a key.

use std::time::Duration;

use http::HeaderValue;

use super::load::{ConfigError, Lookup};
use super::table::FileTable;
use super::value::{parse_number, parse_readable_file};
use super::{
    ClusterErrorPolicy, KeysFile, RateLimit, RatePeriod, RouteAuth, SecretHeader, UpstreamKey,
    UpstreamKeyHeader,
};

/// The route's auth, and its `upstream_key_env` key (which belongs to the
/// endpoint of the `upstream = "URL"` form).
pub(super) fn route_auth(
    t: &FileTable<'_>,
    env: Lookup<'_>,
    reload: Duration,
) -> Result<(RouteAuth, Option<UpstreamKey>), ConfigError> {
    let keys = t
        .string("auth_keys_file", parse_readable_file)?
        .map(|path| KeysFile {
            path,
            reload_interval: reload,
        });
    let upstream_key = upstream_key(t, env, "upstream_key_env", "upstream_key_header")?;
    let burst = t.integer("rate_limit_burst", 1, MAX_RATE)?;
    let rate_limit = match t.string("rate_limit", parse_rate_limit)? {
        Some((count, period)) => Some(RateLimit {
            count,
            period,
            burst: burst.unwrap_or(count),
        }),
        None if burst.is_some() => return Err(t.needs("rate_limit_burst", "rate_limit")),
        None => None,
    };
    let on_cluster_error = t.string("rate_limit_on_cluster_error", parse_cluster_error)?;
    if on_cluster_error.is_some() && rate_limit.is_none() {
        return Err(t.needs("rate_limit_on_cluster_error", "rate_limit"));
    }
    let auth = RouteAuth {
        keys,
        rate_limit,
        on_cluster_error: on_cluster_error.unwrap_or_default(),
    };
    Ok((auth, upstream_key))
}

/// The relay's key from the variable `env_key` names and the header
/// `header_key` names (`authorization` by default), read from the
/// environment now; `None` when `env_key` is not set. Errors name the
/// variable, never its value.
pub(super) fn upstream_key(
    t: &FileTable<'_>,
    env: Lookup<'_>,
    env_key: &str,
    header_key: &str,
) -> Result<Option<UpstreamKey>, ConfigError> {
    let header = t.string(header_key, parse_key_header)?;
    let Some(name) = t.string(env_key, parse_env_name)? else {
        return match header {
            Some(_) => Err(t.needs(header_key, env_key)),
            None => Ok(None),
        };
    };
    let key = t.key(env_key);
    let refuse = |why: &str| ConfigError(format!("{key}: environment variable {name} {why}"));
    let secret = env(&name).unwrap_or_default();
    let secret = secret.trim();
    if secret.is_empty() {
        return Err(refuse(
            "is not set or empty: the upstream key is read from it at start",
        ));
    }
    let header = header.unwrap_or(UpstreamKeyHeader::Authorization);
    let text = match header {
        UpstreamKeyHeader::Authorization => format!("Bearer {secret}"),
        UpstreamKeyHeader::XApiKey => secret.to_owned(),
    };
    let mut value = HeaderValue::from_str(&text)
        .map_err(|_| refuse("holds characters an HTTP header cannot carry"))?;
    value.set_sensitive(true);
    Ok(Some(UpstreamKey {
        env: name,
        header,
        value: SecretHeader(value),
    }))
}

/// Largest `rate_limit` count and `rate_limit_burst`.
const MAX_RATE: u32 = 1_000_000;

fn parse_cluster_error(s: &str) -> Result<ClusterErrorPolicy, String> {
    match s {
        "open" => Ok(ClusterErrorPolicy::Open),
        "closed" => Ok(ClusterErrorPolicy::Closed),
        _ => Err("expected open (local limits) or closed (503)".to_owned()),
    }
}

fn parse_key_header(s: &str) -> Result<UpstreamKeyHeader, String> {
    match s.to_ascii_lowercase().as_str() {
        "authorization" => Ok(UpstreamKeyHeader::Authorization),
        "x-api-key" => Ok(UpstreamKeyHeader::XApiKey),
        _ => Err("expected authorization or x-api-key".to_owned()),
    }
}

fn parse_env_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    ok.then(|| s.to_owned())
        .ok_or_else(|| "expected an environment variable name (letters, digits, _)".to_owned())
}

/// `<count>/<s|m|h>`, e.g. `60/m`.
pub(super) fn parse_rate_limit(s: &str) -> Result<(u32, RatePeriod), String> {
    let hint =
        || format!("expected <count>/s, /m or /h with a count from 1 to {MAX_RATE}, e.g. 60/m");
    let (count, unit) = s.split_once('/').ok_or_else(hint)?;
    let count = parse_number(count.trim(), 1, MAX_RATE.into()).map_err(|_| hint())?;
    let period = match unit.trim() {
        "s" => RatePeriod::Second,
        "m" => RatePeriod::Minute,
        "h" => RatePeriod::Hour,
        _ => return Err(hint()),
    };
    Ok((count, period))
}
