//! sse-edge: a TLS edge relay that keeps streaming model-API responses
//! alive.
//!
//! A request's way through the relay: [`server`] (listener, TLS, hyper
//! connections) -> `proxy` (admit, route, rewrite, answer) -> `auth`
//! (client keys, rate limits) -> `upstream` (pool, connect, the HTTP/1.1
//! codec) and back: `body` (the SSE engine: keepalives, honest endings) or
//! `resume` (a stream's producer and replay log) -> `telemetry` (metrics,
//! access log). `cluster` holds what replicas share in Redis (rate limits,
//! and the bus over which `resume::remote` serves a reconnect from the
//! replica producing its stream, in cluster mode). `usage`, `dialect`, `sse` and `timer` are the pieces the
//! bodies are made of. [`app`] builds it from a [`config`], `admin`
//! reports on it, and `demo` runs it in front of a simulated slow model
//! API. `cli` reads the command line for all of them.
//!
//! # Layers
//! Imports run down this list, never up or sideways (`tests/layering.rs`
//! checks every `crate::` path in `src/` against it):
//!
//! ```text
//! cli
//! demo
//! app
//! admin
//! server
//! proxy
//! auth, resume
//! body
//! upstream
//! cluster
//! telemetry
//! usage
//! dialect
//! sse, timer
//! config
//! error, json, shutdown
//! ```
//! A piece two layers share lives below both (the failure class in `error`,
//! the event-id stamp in `sse`); a lower layer that must reach a higher
//! one is handed a value or a callback instead.
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub(crate) mod admin;
pub(crate) mod app;
pub(crate) mod auth;
pub(crate) mod body;
pub mod cli;
pub(crate) mod cluster;
pub mod config;
pub(crate) mod demo;
pub(crate) mod dialect;
pub(crate) mod error;
mod json;
pub(crate) mod proxy;
pub(crate) mod resume;
pub(crate) mod server;
pub(crate) mod shutdown;
pub(crate) mod sse;
pub(crate) mod telemetry;
pub(crate) mod timer;
pub(crate) mod upstream;
pub(crate) mod usage;

pub use app::{Running, StartError, start};
pub use auth::{digest as key_digest, hex as key_hex};
pub use demo::{DemoOptions, run as run_demo};
pub use error::Error;
pub use telemetry::AccessLog;

/// Hooks for the integration tests, benches and fuzz targets: the parts
/// they drive directly (the scanner, the codec, the pool, the timer
/// wheel, ...). Not part of the API: names here may change at any time.
#[doc(hidden)]
pub mod internals {
    pub use crate::body::Heartbeat;
    pub use crate::demo::{ANTHROPIC_ANSWER, OPENAI_ANSWER};
    pub use crate::dialect::Dialect;
    pub use crate::dialect::stream::{Ending, ending};
    pub use crate::resume::{Log, Token};
    pub use crate::shutdown::Shutdown;
    #[cfg(feature = "internals")]
    pub use crate::sse::whatwg;
    pub use crate::sse::{Event, Keepalive, ParsedEvent, Scanner, Stamp};
    pub use crate::timer::Wheel;
    pub use crate::upstream::{Origin, OriginKey, Pool, RequestBody, h1};
    #[cfg(feature = "internals")]
    pub use crate::usage::oracle as json_walk;
    pub use crate::usage::{Seen, StreamUsage};
}
