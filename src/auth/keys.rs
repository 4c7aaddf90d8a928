//! Client keys: the `auth_keys_file` format, lookup and reload.
//!
//! The file holds SHA-256 digests, never keys: one lowercase or uppercase
//! 64-digit hex digest per line, optionally followed by a label for the
//! access log (`<digest> <label>`). Blank lines and lines starting with `#`
//! are skipped, and a `#` token after the digest or label starts a
//! comment. A file with a malformed line, a repeated digest or no digest at
//! all is refused as a whole (an empty file is more likely a half-written
//! one than a wish to lock every client out).
//!
//! The set in service sits behind a lock that a request holds only for the
//! lookup. The watcher re-reads the file every `auth_reload_interval` and
//! swaps the set when the contents changed and parse; a bad or unreadable
//! file keeps the old set and logs an error once. (Kubernetes swaps a
//! Secret's files through a symlink, so content comparison is the reliable
//! change test, not mtime.)
//!
//! The configuration holds only the file's path ([`KeysFile`]); the file is
//! first read when the routes are built at start ([`Keys::load`]), and a
//! file that cannot be read or parsed then stops the start.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http::HeaderMap;
use http::header::AUTHORIZATION;

use crate::config::KeysFile;
use crate::shutdown::Shutdown;

/// SHA-256 of a client key.
pub(crate) type Digest = [u8; 32];

/// The SHA-256 digest of `key`.
pub fn digest(key: &[u8]) -> Digest {
    let d = ring::digest::digest(&ring::digest::SHA256, key);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// The accepted digests of one keys file, each with its log label.
pub(crate) struct KeySet {
    labels: HashMap<Digest, Arc<str>>,
    /// The file contents it was parsed from (the watcher's change test).
    raw: Vec<u8>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("keys", &self.labels.len())
            .finish()
    }
}

impl KeySet {
    /// Reads and parses a keys file.
    pub(crate) fn load(path: &Path) -> Result<Self, KeysFileError> {
        let raw = std::fs::read(path).map_err(KeysFileError::Read)?;
        Self::parse(raw).map_err(KeysFileError::Invalid)
    }

    /// Parses the contents of a keys file; the error is one line naming
    /// the line number (never its text, which could be a pasted key).
    pub(crate) fn parse(raw: Vec<u8>) -> Result<Self, String> {
        let text = std::str::from_utf8(&raw).map_err(|_| "the file is not UTF-8".to_owned())?;
        let mut labels = HashMap::new();
        let mut first_line: HashMap<Digest, usize> = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let Some((d, label)) = parse_line(line).map_err(|why| format!("line {n}: {why}"))?
            else {
                continue;
            };
            if let Some(m) = first_line.insert(d, n) {
                return Err(format!("line {n}: digest already given on line {m}"));
            }
            let label = label.map_or_else(|| hex(&d[..4]), str::to_owned);
            labels.insert(d, Arc::from(label));
        }
        if labels.is_empty() {
            return Err("no key digests in the file".to_owned());
        }
        Ok(Self { labels, raw })
    }

    pub(crate) fn len(&self) -> usize {
        self.labels.len()
    }

    /// The label of an accepted digest.
    pub(crate) fn label(&self, d: &Digest) -> Option<&Arc<str>> {
        self.labels.get(d)
    }
}

/// Why a keys file was refused; one line, never a line's text.
#[derive(Debug)]
pub enum KeysFileError {
    /// The file could not be read.
    Read(io::Error),
    /// The file is not a keys file: names the line and what is wrong.
    Invalid(String),
}

impl fmt::Display for KeysFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read(e) => write!(f, "cannot read file: {e}"),
            Self::Invalid(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for KeysFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Read(e) => Some(e),
            Self::Invalid(_) => None,
        }
    }
}

/// One line: `None` for blank and comment lines.
fn parse_line(line: &str) -> Result<Option<(Digest, Option<&str>)>, String> {
    let mut tokens = line.split_whitespace().take_while(|t| !t.starts_with('#'));
    let Some(first) = tokens.next() else {
        return Ok(None);
    };
    let d = parse_hex_digest(first).ok_or_else(|| {
        "expected a 64-digit hex SHA-256 digest (see sse-edge hash-key)".to_owned()
    })?;
    let label = tokens.next();
    if tokens.next().is_some() {
        return Err("expected `<digest> [label]`: labels cannot contain spaces".to_owned());
    }
    if let Some(l) = label {
        if l.len() > 64 || l.chars().any(char::is_control) {
            return Err("a label is at most 64 characters, none of them control characters".into());
        }
    }
    Ok(Some((d, label)))
}

fn parse_hex_digest(s: &str) -> Option<Digest> {
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let nibble = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|v| u8::try_from(v).ok())
    };
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        *o = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

/// Why a request's key was refused (the 401's cause; never the key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Neither `Authorization: Bearer` nor `x-api-key` was given.
    Missing,
    /// A key was given but its digest is not in the file.
    Unknown,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Missing => "no API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`",
            Self::Unknown => "the API key is not valid",
        })
    }
}

impl std::error::Error for Refusal {}

/// A route's keys file in service, swapped by [`Keys::watch`].
pub(crate) struct Keys {
    path: PathBuf,
    interval: Duration,
    route: Arc<str>,
    current: RwLock<Arc<KeySet>>,
}

impl Keys {
    /// Reads the route's keys file for the first time.
    pub(crate) fn load(file: &KeysFile, route: Arc<str>) -> Result<Self, KeysFileError> {
        let set = KeySet::load(&file.path)?;
        Ok(Self::with_set(file, route, set))
    }

    fn with_set(file: &KeysFile, route: Arc<str>, set: KeySet) -> Self {
        Self {
            path: file.path.clone(),
            interval: file.reload_interval,
            route,
            current: RwLock::new(Arc::new(set)),
        }
    }

    fn current(&self) -> Arc<KeySet> {
        self.current
            .read()
            .map_or_else(|p| p.into_inner().clone(), |g| g.clone())
    }

    /// The accepted key among those the request presents, as its digest
    /// and label.
    pub(crate) fn identify(&self, headers: &HeaderMap) -> Result<(Digest, Arc<str>), Refusal> {
        let set = self.current();
        let mut presented = false;
        for key in presented_keys(headers) {
            presented = true;
            let d = digest(key);
            if let Some(label) = set.label(&d) {
                return Ok((d, label.clone()));
            }
        }
        Err(if presented {
            Refusal::Unknown
        } else {
            Refusal::Missing
        })
    }

    /// Re-reads the file every `reload_interval` until `stop` fires.
    pub(crate) async fn watch(self: Arc<Self>, stop: Shutdown) {
        let mut last = self.current().raw.clone();
        let start = tokio::time::Instant::now() + self.interval;
        let mut tick = tokio::time::interval_at(start, self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut read_failed = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.wait() => return,
            }
            let raw = match tokio::fs::read(&self.path).await {
                Ok(raw) => raw,
                Err(e) => {
                    if !read_failed {
                        self.log_refused(&format!("cannot read file: {e}"));
                    }
                    read_failed = true;
                    continue;
                }
            };
            read_failed = false;
            if raw != last {
                last.clone_from(&raw);
                self.apply(raw);
            }
        }
    }

    fn apply(&self, raw: Vec<u8>) {
        match KeySet::parse(raw) {
            Ok(set) => {
                let n = set.len();
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
                tracing::info!(
                    route = &*self.route,
                    "client keys reloaded from {}: {n} key(s)",
                    self.path.display()
                );
            }
            Err(why) => self.log_refused(&why),
        }
    }

    fn log_refused(&self, why: &str) {
        tracing::error!(
            route = &*self.route,
            "client keys file {} refused, keeping the old keys: {why}",
            self.path.display()
        );
    }
}

/// The keys a request presents: `x-api-key`, then a Bearer token in
/// `Authorization` (scheme case-insensitive, RFC 9110 §11.1).
fn presented_keys(h: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    let api_key = h.get("x-api-key").map(|v| v.as_bytes().trim_ascii());
    let bearer = h.get(AUTHORIZATION).and_then(|v| {
        let v = v.as_bytes().trim_ascii();
        let (scheme, token) = v.split_at(v.iter().position(|&b| b == b' ')?);
        scheme
            .eq_ignore_ascii_case(b"bearer")
            .then(|| token.trim_ascii())
    });
    api_key.into_iter().chain(bearer).filter(|k| !k.is_empty())
}

#[cfg(test)]
mod tests;
