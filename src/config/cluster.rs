//! The `[cluster]` section: where replicas share state (Redis or Valkey).
//!
//! `cluster.url` is `redis://[user:password@]host[:port][/db]` or
//! `rediss://...` (TLS). It is parsed here, at load, by the client crate's
//! own parser, so a URL the relay accepts is one the client can use. The
//! password never leaves this module in text: errors and the check-config
//! rendering show the URL through [`redact`], and [`ClusterUrl`]'s `Debug`
//! does the same.

use std::fmt;

use std::path::Path;

use redis::IntoConnectionInfo;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::load::{ConfigError, Values};
use super::value::{parse_positive_duration, parse_readable_file};
use super::{ClusterConfig, ClusterUrl};

const URL: &str = "cluster.url";

/// `[cluster]`, or `None` when `cluster.url` is not set (everything stays
/// in-process).
pub(super) fn build_cluster(v: &Values) -> Result<Option<ClusterConfig>, ConfigError> {
    let Some(entry) = v.find(URL)? else {
        return Ok(None);
    };
    let text = super::load::single(URL, &entry.raw)?.trim().to_owned();
    if let Err(why) = check_url(&text) {
        return Err(ConfigError(format!(
            "invalid value for {URL} (from {}): {:?}: {why}",
            entry.source,
            redact(&text)
        )));
    }
    let key_prefix = v.get("cluster.key_prefix", |s| Ok(s.to_owned()))?;
    if key_prefix.len() > 64 {
        return Err(ConfigError(format!(
            "invalid value for cluster.key_prefix: {key_prefix:?}: at most 64 bytes"
        )));
    }
    let ca_file = v.opt("cluster.ca_file", parse_readable_file)?;
    if let Some(path) = &ca_file {
        if !text.to_ascii_lowercase().starts_with("rediss://") {
            return Err(ConfigError(
                "cluster.ca_file is set but cluster.url is not rediss:// (TLS): \
                 the CA would verify nothing"
                    .to_owned(),
            ));
        }
        check_ca(path).map_err(|why| {
            ConfigError(format!(
                "invalid value for cluster.ca_file: {}: {why}",
                path.display()
            ))
        })?;
    }
    Ok(Some(ClusterConfig {
        url: ClusterUrl(text),
        connect_timeout: v.get("cluster.connect_timeout", parse_positive_duration)?,
        command_timeout: v.get("cluster.command_timeout", parse_positive_duration)?,
        key_prefix,
        rate_limit_lease: v.get("cluster.rate_limit_lease", super::value::parse_duration)?,
        ca_file,
    }))
}

/// The file holds PEM certificates, at least one.
fn check_ca(path: &Path) -> Result<(), String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no PEM certificates in it".to_owned());
    }
    Ok(())
}

/// The URL is one the client accepts, with a scheme cluster mode supports.
fn check_url(text: &str) -> Result<(), String> {
    let scheme = text.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    if !matches!(scheme.as_deref(), Some("redis" | "rediss")) {
        return Err("expected redis://[user:password@]host[:port][/db] or rediss://...".to_owned());
    }
    // The client's own parser; its message is kept only when it cannot
    // hold the password (it never quotes the URL back).
    text.into_connection_info()
        .map(|_| ())
        .map_err(|e| format!("not a Redis URL the client accepts ({:?})", e.kind()))
}

/// The URL with its password replaced by `***` (user names are kept).
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
    let shown = if userinfo.contains(':') || user.is_empty() {
        format!("{user}:***")
    } else {
        // `redis://secret@host`: a lone userinfo is the password.
        "***".to_owned()
    };
    format!("{scheme}://{shown}@{host}{tail}")
}

impl fmt::Debug for ClusterUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

impl fmt::Display for ClusterUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_passwords_only() {
        let cases = [
            ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
            ("redis://:pw@h:1/2", "redis://:***@h:1/2"),
            ("rediss://user:p%40ss@h/3", "rediss://user:***@h/3"),
            ("redis://pw@h", "redis://***@h"),
            ("redis://u:a@b@h/1", "redis://u:***@h/1"),
        ];
        for (url, shown) in cases {
            assert_eq!(redact(url), shown, "{url}");
        }
    }

    #[test]
    fn urls_are_checked() {
        assert!(check_url("redis://127.0.0.1:6379/1").is_ok());
        assert!(check_url("rediss://u:pw@cache.example:6380/0").is_ok());
        assert!(check_url("http://127.0.0.1:6379").is_err());
        assert!(check_url("redis://h:notaport").is_err());
        assert!(check_url("redis://h/notadb").is_err());
    }
}
