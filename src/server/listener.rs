//! Listening sockets, built with socket2 so the backlog and options are
//! ours, and what both accept loops (client and admin) do when `accept`
//! fails.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// Binds `addr` with SO_REUSEADDR and the given backlog.
pub(crate) fn bind(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false).ok();
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    TcpListener::from_std(socket.into())
}

/// Options on an accepted client socket: TCP_NODELAY (SSE events are small
/// and must not wait for Nagle) and TCP keepalive.
pub(super) fn tune_accepted(stream: &TcpStream, keepalive: Option<Duration>) {
    let sock = SockRef::from(stream);
    if let Err(e) = sock.set_tcp_nodelay(true) {
        tracing::debug!("TCP_NODELAY: {e}");
    }
    if let Some(idle) = keepalive {
        let ka = TcpKeepalive::new()
            .with_time(idle)
            .with_interval(Duration::from_secs(15));
        if let Err(e) = sock.set_tcp_keepalive(&ka) {
            tracing::debug!("SO_KEEPALIVE: {e}");
        }
    }
}

/// What an accept loop does after a failed `accept`.
///
/// A pending connection the process has no descriptor for (EMFILE, ENFILE)
/// stays in the backlog and keeps the listener readable, so retrying at
/// once would spin a core; each failure pauses the loop for [`Self::PAUSE`]
/// instead (the loop's other work waits too: connections ending are what
/// frees descriptors). The warning goes out at most once per
/// [`Self::REPORT_EVERY`], with how many failures it stands for.
#[derive(Debug)]
pub(crate) struct AcceptBackoff {
    /// The listener, for the log line (`client`, `admin`).
    listener: &'static str,
    /// Failures not reported yet.
    failures: u64,
    /// When the last warning went out.
    reported: Option<Instant>,
}

impl AcceptBackoff {
    pub(crate) const PAUSE: Duration = Duration::from_millis(50);
    pub(crate) const REPORT_EVERY: Duration = Duration::from_secs(10);

    pub(crate) fn new(listener: &'static str) -> Self {
        Self {
            listener,
            failures: 0,
            reported: None,
        }
    }

    /// Reports `e` when a warning is due, then pauses.
    pub(crate) async fn failed(&mut self, e: &io::Error) {
        let listener = self.listener;
        match self.record(Instant::now()) {
            Some(1) => tracing::warn!(
                "{listener} listener: accept failed: {e} (retrying every {}ms; repeats \
                 are counted and reported every {}s at most)",
                Self::PAUSE.as_millis(),
                Self::REPORT_EVERY.as_secs()
            ),
            Some(n) => tracing::warn!(
                "{listener} listener: accept failed {n} times since the last report: {e}"
            ),
            None => {}
        }
        tokio::time::sleep(Self::PAUSE).await;
    }

    /// Counts a failure at `now`; `Some(failures)` when a warning is due,
    /// which then covers every failure since the last one.
    fn record(&mut self, now: Instant) -> Option<u64> {
        self.failures += 1;
        let due = self
            .reported
            .is_none_or(|at| now.saturating_duration_since(at) >= Self::REPORT_EVERY);
        if !due {
            return None;
        }
        self.reported = Some(now);
        Some(std::mem::take(&mut self.failures))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_failures_are_reported_once_per_period_with_a_count() {
        let mut b = AcceptBackoff::new("client");
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(b.record(at(0)), Some(1));
        // A failure every PAUSE for one period: nothing more is logged ...
        let pause = u64::try_from(AcceptBackoff::PAUSE.as_millis()).unwrap();
        let period = u64::try_from(AcceptBackoff::REPORT_EVERY.as_millis()).unwrap();
        let quiet = (1..period / pause).filter(|i| b.record(at(i * pause)).is_some());
        assert_eq!(quiet.count(), 0);
        // ... until the period is over; that line counts them all.
        assert_eq!(b.record(at(period)), Some(period / pause));
        assert_eq!(b.record(at(period + 1)), None);
        // After a quiet spell the next failure is reported at once.
        assert_eq!(b.record(at(10 * period)), Some(2));
    }
}
