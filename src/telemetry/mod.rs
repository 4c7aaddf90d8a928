//! What the relay tells operators: Prometheus metrics and the JSON access
//! log, both fed by the per-request [`Exchange`] record.

mod access;
mod activity;
mod exchange;
mod histogram;
mod json;
mod metrics;
mod time;
mod tokens;

pub use access::AccessLog;
pub use activity::{ActiveRequest, Activity};
pub use exchange::{Exchange, Outcome, Sinks, UsageSource};
pub use json::escape_into as json_escape_into;
pub use metrics::{Metrics, ResumeResult, UpstreamClass};
