//! Assembling and running the relay.
//!
//! [`start`] builds every part from a [`Config`], binds both listeners and
//! spawns the tasks; [`Running`] is the handle to drain and wait for them.
//! Lifecycle: `start` -> ready -> `drain()` (readyz 503, stop accepting,
//! graceful close) -> connections done or `drain_timeout` -> the stop
//! signal ends the admin listener, the pool's connections and reaper, the
//! resumable streams' producers and the certificate and client-key
//! watchers -> `wait()` returns. No task outlives `wait()`.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::admin::Admin;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::proxy::{Relay, RouteError, RouteTable};
use crate::resume::Hub;
use crate::resume::remote::Remote;
use crate::server::{self, Server, Terminator};
use crate::shutdown::Shutdown;
use crate::telemetry::{AccessLog, Metrics, Sinks};
use crate::upstream::Pool;

/// Why the relay could not start.
#[derive(Debug)]
pub enum StartError {
    /// Binding a listener failed.
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: io::Error,
    },
    /// TLS files or upstream CA roots could not be loaded.
    Tls(io::Error),
    /// A route's upstream or keys file could not be set up.
    Route(RouteError),
    /// The `[cluster]` client could not be made.
    Cluster(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Bind { what, addr, source } => {
                write!(f, "cannot bind {what} {addr}: {source}")
            }
            StartError::Tls(e) => write!(f, "TLS setup: {e}"),
            StartError::Route(e) => write!(f, "route setup: {e}"),
            StartError::Cluster(e) => write!(f, "cluster setup: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// A started relay.
pub struct Running {
    /// The client listener's bound address (useful with port 0).
    pub listen: SocketAddr,
    /// The admin listener's bound address.
    pub admin: SocketAddr,
    relay: Arc<Relay>,
    drain: Shutdown,
    supervisor: JoinHandle<()>,
}

impl Running {
    /// Starts draining: readyz turns 503, listeners stop, connections close
    /// gracefully. Idempotent.
    pub fn drain(&self) {
        self.relay.start_draining();
        self.drain.signal();
    }

    /// Waits until every task has ended.
    pub async fn wait(self) {
        if let Err(e) = self.supervisor.await {
            tracing::error!("relay supervisor failed: {e}");
        }
    }
}

/// Builds and starts the relay.
pub async fn start(config: Config, access: AccessLog) -> Result<Running, StartError> {
    let stop = Shutdown::new();
    let drain = Shutdown::new();
    let pool = Arc::new(Pool::new(&config.upstream, stop.clone()).map_err(StartError::Tls)?);
    let cluster = match &config.cluster {
        Some(c) => {
            Some(Arc::new(Cluster::new(c).map_err(|e| {
                StartError::Cluster(format!("{:?}", e.kind()))
            })?))
        }
        None => None,
    };
    let routes =
        RouteTable::new(&config.routes, &pool, cluster.as_ref()).map_err(StartError::Route)?;
    let key_watchers = routes.key_watchers(&stop);
    let metrics = Arc::new(Metrics::new(
        RouteTable::names_in_order(&config.routes),
        config.usage.max_models,
    ));
    let sinks = Arc::new(Sinks {
        metrics: metrics.clone(),
        access,
    });
    let hub = Arc::new(Hub::new(
        config.resume_memory,
        metrics.clone(),
        drain.clone(),
        stop.clone(),
    ));
    // Cluster mode: reconnects may land on any replica (`resume::remote`).
    let mut bus_tasks = Vec::new();
    if let Some(c) = &cluster {
        if let Some((remote, tasks)) = Remote::start(c.clone(), Arc::downgrade(&hub), &stop) {
            hub.join(remote);
            bus_tasks = tasks;
        }
    }
    let relay = Arc::new(Relay::new(&config, routes, sinks, hub.clone()));
    let tls = match &config.tls {
        Some(t) => Some(Arc::new(
            Terminator::new(t, config.server.http2).map_err(StartError::Tls)?,
        )),
        None => None,
    };
    let bind = |what, addr, backlog| {
        server::bind(addr, backlog).map_err(|source| StartError::Bind { what, addr, source })
    };
    let listener = bind("listen", config.listen, config.server.backlog)?;
    let admin_listener = bind("admin", config.admin, 128)?;
    let local = |l: &tokio::net::TcpListener, addr| l.local_addr().unwrap_or(addr);
    let (listen, admin_addr) = (
        local(&listener, config.listen),
        local(&admin_listener, config.admin),
    );

    let admin = Arc::new(Admin {
        metrics: metrics.clone(),
        pool: pool.clone(),
        relay: relay.clone(),
        cluster,
        ready: AtomicBool::new(false),
    });
    let mut helpers = vec![
        tokio::spawn(admin.clone().run(admin_listener, stop.clone())),
        tokio::spawn({
            let (pool, stop) = (pool.clone(), stop.clone());
            async move { pool.reap_idle(stop).await }
        }),
    ];
    helpers.extend(key_watchers.into_iter().map(tokio::spawn));
    helpers.extend(bus_tasks);
    if let Some(t) = &tls {
        helpers.push(tokio::spawn(t.clone().watch(metrics.clone(), stop.clone())));
    }
    let server = Arc::new(Server::new(&config.server, relay.clone(), tls, metrics));
    let drain_timeout = config.drain_timeout;
    let run = server.run(listener, drain.clone(), drain_timeout);
    let drain_started = {
        let drain = drain.clone();
        async move {
            drain.wait().await;
            Instant::now()
        }
    };
    let supervisor = tokio::spawn(async move {
        let (_, drain_started) = tokio::join!(run, drain_started);
        // Readers on other replicas get the drain's time as clients here do.
        let _ = tokio::time::timeout_at(drain_started + drain_timeout, hub.wait_forwarders()).await;
        stop.signal();
        hub.wait_idle().await;
        for h in helpers {
            let _ = h.await;
        }
    });
    admin.ready.store(true, Ordering::Release);
    Ok(Running {
        listen,
        admin: admin_addr,
        relay,
        drain,
        supervisor,
    })
}
