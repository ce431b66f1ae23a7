//! What an operator of freshet sees: readiness (`/readyz`), Prometheus metrics (`/metrics`)
//! and the logs (text or JSON, every line of a request carrying its id).

pub mod health;
pub mod logging;
pub mod metrics;
pub mod routes;

pub use health::Health;
