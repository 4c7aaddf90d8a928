//! sse-edge: a TLS edge relay that keeps streaming model-API responses
//! alive.
//!
//! The modules follow a request's way through the relay:
//! [`server`] (listener, TLS, hyper connections) -> [`proxy`] (admit,
//! route, rewrite) -> [`upstream`] (pool, connect) -> [`body`] (frames back
//! to the client) -> [`telemetry`] (metrics, access log). [`auth`] admits
//! clients per route (keys, rate limits) and sets the upstream credential.
//! [`config`] and
//! [`app`] build it; [`admin`] reports on it. [`demo`] runs it in front of
//! a simulated slow model API.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod auth;
pub mod body;
pub mod config;
pub mod demo;
pub mod dialect;
pub mod error;
mod json;
pub mod proxy;
pub mod resume;
pub mod server;
pub mod shutdown;
pub mod sse;
pub mod telemetry;
pub mod timer;
pub mod upstream;
pub mod usage;

pub use app::{Running, StartError, start};
pub use error::Error;
