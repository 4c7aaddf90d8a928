//! What the relay tells operators: Prometheus metrics and the JSON access
//! log, both fed by the per-request [`Exchange`] record.

mod access;
mod activity;
mod exchange;
mod histogram;
mod metrics;
mod time;
mod tokens;

pub use access::AccessLog;
pub(crate) use activity::Activity;
pub(crate) use exchange::{Attempts, Exchange, Outcome, Sinks, StreamEnd, UsageSource};
pub(crate) use histogram::Histogram;
pub(crate) use metrics::{Metrics, ResumeResult};
pub(crate) use metrics::{header as metric_header, label as metric_label};
