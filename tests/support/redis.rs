//! A real `redis-server` on a free loopback port, for the cluster-mode
//! tests. The binary comes from Debian's `redis-server` package, which
//! `.ci/run` installs; a missing binary fails the test, naming the fix.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{TempDir, free_port, test_ca};

/// A running `redis-server`, killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    /// With TLS: its port, and the files of its certificate (signed by the
    /// test CA, for `localhost`).
    tls: Option<(u16, TempDir)>,
}

impl RedisServer {
    /// Starts one on a free port and waits until it answers PING.
    pub fn start() -> RedisServer {
        let mut server = RedisServer {
            port: free_port(),
            child: None,
            tls: None,
        };
        server.restart();
        server
    }

    /// Like [`RedisServer::start`], also listening with TLS on another
    /// port (see [`RedisServer::tls_url`]), with a certificate the test CA
    /// signed.
    pub fn start_tls() -> RedisServer {
        let dir = TempDir::new("redis-tls");
        let leaf = test_ca().leaf("redis");
        dir.write("cert.pem", leaf.cert_pem.as_bytes());
        dir.write("key.pem", leaf.key_pem.as_bytes());
        dir.write("ca.pem", test_ca().cert_pem.as_bytes());
        let mut server = RedisServer {
            port: free_port(),
            child: None,
            tls: Some((free_port(), dir)),
        };
        server.restart();
        server
    }

    /// `rediss://localhost:<tls port>/0`.
    pub fn tls_url(&self) -> String {
        let (port, _) = self.tls.as_ref().expect("started with start_tls");
        format!("rediss://localhost:{port}/0")
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts it again on the same port (empty: nothing is persisted).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "redis-server already running");
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"]);
        if let Some((port, dir)) = &self.tls {
            let file = |name: &str| dir.path.join(name).to_string_lossy().into_owned();
            cmd.args(["--tls-port", &port.to_string()])
                .args(["--tls-cert-file", &file("cert.pem")])
                .args(["--tls-key-file", &file("key.pem")])
                .args(["--tls-ca-cert-file", &file("ca.pem")])
                .args(["--tls-auth-clients", "no"]);
        }
        let spawned = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn();
        let child = spawned.unwrap_or_else(|e| {
            panic!(
                "cannot run redis-server ({e}): the cluster tests need Debian's \
                 redis-server package (`apt-get install -y redis-server`; .ci/run installs it)"
            )
        });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.ping() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills it (SIGKILL) and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) it: connections stay open and
    /// nothing answers, the way a hung or partitioned server looks.
    pub fn freeze(&self, frozen: bool) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let sig = if frozen { "-STOP" } else { "-CONT" };
        let ok = Command::new("kill").args([sig, &pid]).status();
        assert!(ok.is_ok_and(|s| s.success()), "kill {sig} {pid}");
    }

    fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.freeze(false);
        }
        self.kill();
    }
}
