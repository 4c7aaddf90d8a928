//! The open-file limit, and the client connections it leaves room for.
//!
//! A relayed stream holds two descriptors: the client's socket and the
//! upstream's. The process needs some more besides: the standard streams,
//! both listeners, the runtime's epoll and eventfd, the signal pipe, idle
//! pooled upstream connections, the certificate, key and keys files while
//! they are re-read, DNS lookups, and a refused client's socket while it
//! gets its 503. [`RESERVE`] descriptors (a quarter of the limit when that
//! is less) are kept for those, so `server.max_connections` may be at most
//! `(limit - reserve) / 2`: its default is that, and a larger configured
//! value is refused. Past it the relay would run out of descriptors before
//! it refused anyone: new clients would wait in the listen backlog and
//! upstream connects fail with EMFILE instead of the documented 503.
//!
//! The limit is the soft `RLIMIT_NOFILE`. [`raise_open_file_limit`] lifts
//! it to the hard limit first (as nginx's `worker_rlimit_nofile` and
//! HAProxy do); the binary calls it before loading the configuration, so
//! `check-config` shows what a relay started the same way gets.
//!
//! Not counted: an HTTP/2 client multiplexing many streams to an HTTP/1.1
//! upstream holds one client descriptor but an upstream socket per stream;
//! `server.max_requests` bounds those.

use std::io;

/// Descriptors kept for everything but client connections and their
/// upstream sockets (a quarter of the limit when that is less).
pub(crate) const RESERVE: u64 = 256;

/// The most `server.max_connections` accepts, whatever the limit.
pub(crate) const MAX_CONNECTIONS: u64 = 1_000_000;

/// The soft open-file limit before and after [`raise_open_file_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFileLimit {
    pub before: u64,
    pub now: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (on macOS at most
/// `kern.maxfilesperproc`).
///
/// # Errors
///
/// When the limit cannot be read or set; it is then left as it was.
pub fn raise_open_file_limit() -> io::Result<OpenFileLimit> {
    let (before, _) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    let now = rlimit::increase_nofile_limit(u64::MAX)?;
    Ok(OpenFileLimit { before, now })
}

/// The soft open-file limit now; `None` when it cannot be read.
pub(crate) fn soft_limit() -> Option<u64> {
    rlimit::getrlimit(rlimit::Resource::NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}

/// Descriptors kept out of `limit` for the rest of the process.
pub(crate) fn reserve(limit: u64) -> u64 {
    RESERVE.min(limit / 4)
}

/// The client connections `limit` leaves room for: `(limit - reserve) / 2`,
/// at most [`MAX_CONNECTIONS`].
pub(crate) fn room(limit: u64) -> u64 {
    ((limit - reserve(limit)) / 2).min(MAX_CONNECTIONS)
}

/// How [`room`] came out for `limit`, for check-config and errors.
pub(super) fn describe(limit: u64) -> String {
    let shown = shown(limit);
    let reserve = reserve(limit);
    let capped = if room(limit) == MAX_CONNECTIONS {
        format!(", at most {MAX_CONNECTIONS}")
    } else {
        String::new()
    };
    format!("(open-file limit {shown} - reserve {reserve}) / 2{capped}")
}

/// `limit` as a number, or `unlimited`.
pub(super) fn shown(limit: u64) -> String {
    if limit == rlimit::INFINITY {
        "unlimited".to_owned()
    } else {
        limit.to_string()
    }
}

/// Why `value` connections do not fit in `limit`, or `None` when they do.
pub(super) fn too_many(value: u64, limit: u64) -> Option<String> {
    let room = room(limit);
    (value > room).then(|| {
        format!(
            "the open-file limit ({}) leaves room for {room} client connections \
             (2 descriptors each, {} kept in reserve): lower it, or raise the limit \
             (ulimit -n, systemd LimitNOFILE, docker --ulimit nofile)",
            shown(limit),
            reserve(limit)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_half_the_limit_after_the_reserve() {
        assert_eq!(reserve(20_000), 256);
        assert_eq!(room(20_000), 9_872);
        assert_eq!(room(1_048_576), 524_160);
        // Small limits keep a quarter of themselves.
        assert_eq!((reserve(256), room(256)), (64, 96));
        assert_eq!((reserve(3), room(3)), (0, 1));
        assert_eq!(room(0), 0);
        assert_eq!(room(rlimit::INFINITY), MAX_CONNECTIONS);
        // Two descriptors per connection plus the reserve always fit.
        for limit in [0, 1, 7, 64, 1023, 1024, 1025, 20_000, 65_536] {
            assert!(2 * room(limit) + reserve(limit) <= limit, "limit {limit}");
        }
    }

    #[test]
    fn description_and_refusal_name_the_numbers() {
        assert_eq!(
            describe(20_000),
            "(open-file limit 20000 - reserve 256) / 2"
        );
        assert_eq!(
            describe(rlimit::INFINITY),
            "(open-file limit unlimited - reserve 256) / 2, at most 1000000"
        );
        assert_eq!(too_many(9_872, 20_000), None);
        let why = too_many(9_873, 20_000).unwrap_or_default();
        assert!(
            why.starts_with("the open-file limit (20000) leaves room for 9872 client connections"),
            "{why}"
        );
    }
}
