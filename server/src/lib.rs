//! The `freshet` server: configuration, the HTTP router, and the services behind it.
#![recursion_limit = "256"]

pub mod api;
pub mod bank;
pub mod clock;
pub mod config;
pub mod demo;
pub mod http;
pub mod journey;
pub mod model;
pub mod ops;
pub mod portal;
pub mod random;
pub mod retention;
pub mod scheduler;
pub mod secrets;
pub mod services;
pub mod sse;
pub mod store;
pub mod tls;
pub mod webhooks;
pub mod worker;

pub use http::{AppState, router};
