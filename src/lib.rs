//! sse-edge: a TLS edge relay that keeps streaming model-API responses
//! alive.
//!
//! A request's way through the relay: [`server`] (listener, TLS, hyper
//! connections) -> `proxy` (admit, route, rewrite, answer) -> `auth`
//! (client keys, rate limits) -> `upstream` (pool, connect, the HTTP/1.1
//! codec) and back: `body` (the SSE engine: keepalives, honest endings) or
//! `resume` (a stream's producer and replay log) -> `telemetry` (metrics,
//! access log). `usage`, `dialect`, `sse` and `timer` are the pieces the
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

pub mod admin;
pub mod app;
pub mod auth;
pub mod body;
pub mod cli;
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
