//! Listening sockets, built with socket2 so the backlog and options are ours.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};
use tokio::net::{TcpListener, TcpStream};

/// Binds `addr` with SO_REUSEADDR and the given backlog.
pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
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
pub fn tune_accepted(stream: &TcpStream, keepalive: Option<Duration>) {
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
