//! The `freshet` server: configuration, the HTTP router, and the services behind it.

pub mod clock;
pub mod config;
pub mod http;
pub mod portal;

pub use http::{AppState, router};
