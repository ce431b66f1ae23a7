//! Readiness: whether this server should be sent traffic. `/healthz` says only that the
//! process answers; `/readyz` also says that the database takes writes, that its migrations
//! are this binary's, that the background loops (workers, deliverer, scheduler, retention)
//! still run, and that the server is not shutting down — or which of these fails.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::store::Store;

/// The server's liveness parts, shared by the router and `main`.
#[derive(Clone, Debug, Default)]
pub struct Health(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    stopping: AtomicBool,
    loops: Mutex<Vec<(&'static str, tokio::task::JoinHandle<()>)>>,
}

impl Health {
    /// Watches a background loop: once its task ends (it never should: a panic or a bug),
    /// the server is not ready.
    pub fn watch(&self, name: &'static str, task: tokio::task::JoinHandle<()>) {
        self.0
            .loops
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((name, task));
    }

    /// The server is shutting down: load balancers should stop sending it requests.
    pub fn stopping(&self) {
        self.0.stopping.store(true, Ordering::Release);
    }

    /// Why the server is not ready; empty when it is.
    pub async fn problems(&self, store: &Store) -> Vec<String> {
        let mut problems = Vec::new();
        if self.0.stopping.load(Ordering::Acquire) {
            problems.push("shutting down".to_owned());
        }
        for (name, task) in self
            .0
            .loops
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            if task.is_finished() {
                problems.push(format!("{name}: stopped"));
            }
        }
        if let Err(e) = store.readiness().await {
            problems.push(format!("database: {e}"));
        }
        problems
    }
}
