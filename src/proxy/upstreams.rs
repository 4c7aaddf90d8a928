//! A route's upstream endpoints, ready to serve: groups of endpoints, each
//! with its origin (connection pool), request rewriting (base path,
//! `model`, credential) and health.
//!
//! Built once at start from [`crate::config::Upstreams`]; the failover
//! loop (`failover.rs`) walks them per request.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use super::route::RouteError;
use crate::auth::Credential;
use crate::config::{Continuation, EndpointConfig, GroupConfig, Timeouts};
use crate::dialect::continuation::Mechanism;
use crate::telemetry::{metric_header, metric_label as label_value};
use crate::upstream::{Failure, Health, Origin, OriginKey, Pool};

/// One endpoint of a group.
pub(crate) struct Endpoint {
    /// Name in logs and metrics.
    pub name: Arc<str>,
    pub origin: Arc<Origin>,
    /// Path prefix on the endpoint, without trailing slash.
    pub base_path: String,
    /// The request body's `model` becomes this.
    pub model: Option<Arc<str>>,
    pub credential: Option<Credential>,
    pub health: Arc<Health>,
    /// How it continues a cut answer, when it declared it can.
    pub continuation: Option<Mechanism>,
}

/// Endpoints balanced among themselves.
pub(crate) struct Group {
    pub name: Arc<str>,
    pub endpoints: Vec<Endpoint>,
    pub timeouts: Timeouts,
}

/// A route's groups: the chain (primary first) and the context group.
pub(crate) struct Upstreams {
    pub chain: Vec<Group>,
    pub context: Option<Group>,
    /// `failovers_total` by (from, to, reason); failovers are rare, so a
    /// lock is fine.
    failovers: Mutex<BTreeMap<FailoverKey, u64>>,
    /// `continuations_total` by (from, to, reason).
    continuations: Mutex<BTreeMap<FailoverKey, u64>>,
}

/// A `failovers_total` series: from, to, reason.
type FailoverKey = (Arc<str>, Arc<str>, &'static str);

/// Which group: an index into the chain, or the context group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupId {
    Chain(usize),
    Context,
}

impl Upstreams {
    pub(crate) fn new(
        chain: &[GroupConfig],
        context: Option<&GroupConfig>,
        pool: &Pool,
    ) -> Result<Self, RouteError> {
        let chain = chain
            .iter()
            .map(|g| Group::new(g, pool))
            .collect::<Result<_, _>>()?;
        let context = context.map(|g| Group::new(g, pool)).transpose()?;
        Ok(Self {
            chain,
            context,
            failovers: Mutex::default(),
            continuations: Mutex::default(),
        })
    }

    pub(crate) fn group(&self, id: GroupId) -> Option<&Group> {
        match id {
            GroupId::Chain(i) => self.chain.get(i),
            GroupId::Context => self.context.as_ref(),
        }
    }

    /// Every group, the chain in order then the context group.
    fn groups(&self) -> impl Iterator<Item = &Group> {
        self.chain.iter().chain(self.context.as_ref())
    }

    pub(crate) fn count_continuation(&self, from: &Arc<str>, to: &Arc<str>, reason: &'static str) {
        let mut map = self.continuations.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry((from.clone(), to.clone(), reason)).or_default() += 1;
    }

    /// Whether any endpoint declared how it continues `dialect`'s answers.
    pub(crate) fn continues(&self, dialect: crate::dialect::Dialect) -> bool {
        self.groups()
            .flat_map(|g| &g.endpoints)
            .any(|e| e.continuation.is_some_and(|m| m.fits(dialect)))
    }

    pub(crate) fn count_failover(&self, from: &Arc<str>, to: &Arc<str>, reason: &'static str) {
        let mut map = self.failovers.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry((from.clone(), to.clone(), reason)).or_default() += 1;
    }

    /// Appends this route's endpoint and failover series (Prometheus text,
    /// without the HELP/TYPE lines, which [`render_metrics`] writes once).
    fn render(&self, route: &str, out: &mut Series) {
        let now = Instant::now();
        let route = label_value(route);
        for g in self.groups() {
            let group = label_value(&g.name);
            for e in &g.endpoints {
                let labels = format!(
                    "route=\"{route}\",group=\"{group}\",endpoint=\"{}\"",
                    label_value(&e.name)
                );
                let h = &e.health;
                let state = h.state(now) as u8;
                let _ = writeln!(
                    out.state,
                    "sse_edge_endpoint_circuit_state{{{labels}}} {state}"
                );
                let _ = writeln!(
                    out.outstanding,
                    "sse_edge_endpoint_outstanding{{{labels}}} {}",
                    h.outstanding()
                );
                let _ = writeln!(
                    out.requests,
                    "sse_edge_endpoint_requests_total{{{labels}}} {}",
                    h.requests()
                );
                let _ = writeln!(
                    out.ejections,
                    "sse_edge_endpoint_ejections_total{{{labels}}} {}",
                    h.ejections()
                );
                for f in Failure::ALL {
                    let n = h.failures(f);
                    if n > 0 {
                        let _ = writeln!(
                            out.failures,
                            "sse_edge_endpoint_failures_total{{{labels},class=\"{}\"}} {n}",
                            f.as_str()
                        );
                    }
                }
            }
        }
        let map = self.failovers.lock().unwrap_or_else(|e| e.into_inner());
        for ((from, to, reason), n) in map.iter() {
            let _ = writeln!(
                out.failovers,
                "sse_edge_failovers_total{{route=\"{route}\",from=\"{}\",to=\"{}\",reason=\"{reason}\"}} {n}",
                label_value(from),
                label_value(to)
            );
        }
        drop(map);
        let map = self.continuations.lock().unwrap_or_else(|e| e.into_inner());
        for ((from, to, reason), n) in map.iter() {
            let _ = writeln!(
                out.continuations,
                "sse_edge_continuations_total{{route=\"{route}\",from=\"{}\",to=\"{}\",reason=\"{reason}\"}} {n}",
                label_value(from),
                label_value(to)
            );
        }
    }
}

/// The series of every route, gathered per metric family.
#[derive(Default)]
struct Series {
    state: String,
    outstanding: String,
    requests: String,
    ejections: String,
    failures: String,
    failovers: String,
    continuations: String,
}

/// Appends the endpoint and failover metric families of `routes` (name,
/// upstreams) to `out`.
pub(crate) fn render_metrics<'a>(
    routes: impl Iterator<Item = (&'a str, &'a Upstreams)>,
    out: &mut String,
) {
    let mut s = Series::default();
    for (name, ups) in routes {
        ups.render(name, &mut s);
    }
    let families = [
        (
            "sse_edge_endpoint_circuit_state",
            "gauge",
            "Circuit breaker state per endpoint: 0 closed, 1 open (ejected), 2 half-open (probe due or out)",
            &s.state,
        ),
        (
            "sse_edge_endpoint_outstanding",
            "gauge",
            "Requests outstanding per endpoint (a stream counts until it ends)",
            &s.outstanding,
        ),
        (
            "sse_edge_endpoint_requests_total",
            "counter",
            "Attempts sent to each endpoint",
            &s.requests,
        ),
        (
            "sse_edge_endpoint_ejections_total",
            "counter",
            "Times each endpoint's circuit opened",
            &s.ejections,
        ),
        (
            "sse_edge_endpoint_failures_total",
            "counter",
            "Failed attempts per endpoint by failover class",
            &s.failures,
        ),
        (
            "sse_edge_failovers_total",
            "counter",
            "Requests moved from one endpoint to another before their first event, by reason",
            &s.failovers,
        ),
        (
            "sse_edge_continuations_total",
            "counter",
            "Answers cut after their first event and continued on another endpoint, by reason",
            &s.continuations,
        ),
    ];
    for (name, kind, help, body) in families {
        metric_header(out, name, kind, help);
        out.push_str(body);
    }
}

impl Group {
    fn new(cfg: &GroupConfig, pool: &Pool) -> Result<Self, RouteError> {
        let endpoints = cfg
            .endpoints
            .iter()
            .map(|e| Endpoint::new(e, pool))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            name: Arc::from(cfg.name.as_str()),
            endpoints,
            timeouts: cfg.timeouts,
        })
    }
}

impl Endpoint {
    fn new(cfg: &EndpointConfig, pool: &Pool) -> Result<Self, RouteError> {
        let origin = pool
            .origin(OriginKey {
                tls: cfg.url.tls,
                host: cfg.url.host.clone(),
                port: cfg.url.port,
                protocol: cfg.protocol,
            })
            .map_err(RouteError::Origin)?;
        Ok(Self {
            name: Arc::from(cfg.name.as_str()),
            origin,
            base_path: cfg.url.base_path.trim_end_matches('/').to_owned(),
            model: cfg.model.as_deref().map(Arc::from),
            credential: cfg.key.as_ref().map(Credential::new),
            health: Arc::new(Health::new(cfg.weight)),
            continuation: cfg.continuation.map(|c| match c {
                Continuation::Anthropic => Mechanism::AnthropicPrefill,
                Continuation::Vllm => Mechanism::ContinueFinalMessage,
                Continuation::Assistant => Mechanism::AssistantMessage,
            }),
        })
    }
}
