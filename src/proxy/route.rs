//! The route table: request path -> upstream endpoints and per-route
//! settings.
//!
//! Prefixes match on path-segment boundaries (`/v1` matches `/v1` and
//! `/v1/x`, never `/v1x`); the longest matching prefix wins. Routes are
//! built once at start, each route's keys file read then ([`RouteError`]
//! if it cannot be); matching allocates nothing.

use super::cors::Cors;
use super::upstreams::{self, Upstreams};
use crate::auth::{Gate, KeysFileError};
use crate::cluster::Cluster;
use crate::config::{DialectSetting, RouteConfig, StreamConfig};
use crate::error::Error;
use crate::shutdown::Shutdown;
use crate::upstream::Pool;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

/// One route, ready to serve.
pub(crate) struct Route {
    /// Position in the configuration (metrics index).
    pub index: usize,
    pub name: Arc<str>,
    pub prefix: String,
    pub strip_prefix: bool,
    /// Where requests go: endpoint groups, balanced and failed over.
    pub upstreams: Arc<Upstreams>,
    pub dialect: DialectSetting,
    pub stream: StreamConfig,
    /// Client keys, rate limit and upstream credential (see `crate::auth`).
    pub auth: Gate,
    /// Browser access (see `super::cors`); `None`: no policy.
    pub cors: Option<Cors>,
}

/// Why the routes could not be built at start.
#[derive(Debug)]
pub enum RouteError {
    /// A route's upstream origin could not be set up.
    Origin(Error),
    /// A route's `auth_keys_file` could not be read or parsed; `index` is
    /// the route's position in the configuration (`route[index]`).
    Keys {
        index: usize,
        path: PathBuf,
        source: KeysFileError,
    },
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Origin(e) => write!(f, "{e}"),
            Self::Keys {
                index,
                path,
                source,
            } => write!(
                f,
                "invalid value for route[{index}].auth_keys_file: {:?}: {source}",
                path.display().to_string()
            ),
        }
    }
}

impl std::error::Error for RouteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Origin(e) => Some(e),
            Self::Keys { source, .. } => Some(source),
        }
    }
}

/// Routes ordered by prefix length, longest first.
pub(crate) struct RouteTable {
    routes: Vec<Route>,
    /// Some route has a CORS policy (otherwise no request looks for one).
    any_cors: bool,
}

impl RouteTable {
    /// With `cluster`, rate limits are shared in Redis.
    pub(crate) fn new(
        configs: &[RouteConfig],
        pool: &Pool,
        cluster: Option<&Arc<Cluster>>,
    ) -> Result<Self, RouteError> {
        let mut routes = Vec::with_capacity(configs.len());
        for (index, rc) in configs.iter().enumerate() {
            let ups = &rc.upstreams;
            let upstreams = Arc::new(Upstreams::new(&ups.chain, ups.context.as_ref(), pool)?);
            let name: Arc<str> = Arc::from(rc.name.as_str());
            let auth =
                Gate::new(&rc.auth, name.clone(), cluster).map_err(|source| RouteError::Keys {
                    index,
                    path: rc
                        .auth
                        .keys
                        .as_ref()
                        .map(|k| k.path.clone())
                        .unwrap_or_default(),
                    source,
                })?;
            routes.push(Route {
                index,
                auth,
                name,
                prefix: rc.prefix.trim_end_matches('/').to_owned(),
                strip_prefix: rc.strip_prefix,
                upstreams,
                dialect: rc.dialect,
                stream: rc.stream.clone(),
                cors: rc.cors.as_ref().map(|c| Cors::new(c, &rc.stream)),
            });
        }
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        let any_cors = routes.iter().any(|r| r.cors.is_some());
        Ok(Self { routes, any_cors })
    }

    /// Route names in configuration order (metrics labels).
    pub(crate) fn names_in_order(configs: &[RouteConfig]) -> Vec<String> {
        configs.iter().map(|r| r.name.clone()).collect()
    }

    /// Every route's keys-file watcher, to spawn once the relay runs; each
    /// ends when `stop` fires.
    pub(crate) fn key_watchers(
        &self,
        stop: &Shutdown,
    ) -> Vec<Pin<Box<dyn Future<Output = ()> + Send>>> {
        let boxed = |w| Box::pin(w) as Pin<Box<dyn Future<Output = ()> + Send>>;
        self.routes
            .iter()
            .filter_map(|r| r.auth.watcher(stop.clone()).map(boxed))
            .collect()
    }

    /// The shortest heartbeat of any route (sets the wheel's tick).
    pub(crate) fn shortest_heartbeat(&self) -> std::time::Duration {
        self.routes
            .iter()
            .map(|r| r.stream.heartbeat)
            .min()
            .unwrap_or(std::time::Duration::from_secs(15))
    }

    pub(crate) fn find(&self, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| prefix_matches(&r.prefix, path))
    }

    /// Appends every route's endpoint and failover metrics.
    pub(crate) fn render_metrics(&self, out: &mut String) {
        let routes = self.in_order().map(|r| (&*r.name, &*r.upstreams));
        upstreams::render_metrics(routes, out);
    }

    /// The routes in configuration order.
    pub(crate) fn in_order(&self) -> impl Iterator<Item = &Route> {
        let mut ordered: Vec<&Route> = self.routes.iter().collect();
        ordered.sort_by_key(|r| r.index);
        ordered.into_iter()
    }

    /// Whether any route has a CORS policy.
    pub(crate) fn any_cors(&self) -> bool {
        self.any_cors
    }

    /// The route at configuration position `index`.
    pub(crate) fn get(&self, index: usize) -> Option<&Route> {
        self.routes.iter().find(|r| r.index == index)
    }
}

/// `prefix` has no trailing slash; `""` is the root route.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

impl Route {
    /// The upstream request target for `path` and `query`, without the
    /// endpoint's base path.
    pub(crate) fn upstream_target(&self, path: &str, query: Option<&str>) -> String {
        let rest = if self.strip_prefix {
            &path[self.prefix.len()..]
        } else {
            path
        };
        let mut target = String::with_capacity(rest.len() + 16);
        if !rest.starts_with('/') {
            target.push('/');
        }
        target.push_str(rest);
        if let Some(q) = query {
            target.push('?');
            target.push_str(q);
        }
        target
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_matches;

    #[test]
    fn segment_aligned_prefixes() {
        assert!(prefix_matches("", "/anything"));
        assert!(prefix_matches("/v1", "/v1"));
        assert!(prefix_matches("/v1", "/v1/chat"));
        assert!(!prefix_matches("/v1", "/v1x"));
        assert!(!prefix_matches("/v1", "/v"));
    }
}
