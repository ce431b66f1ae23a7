//! Retention: the contract keeps events seven days (`shared/spec/api.md`, Server-sent events),
//! `Idempotency-Key` answers 24 hours, sessions until they expire. Webhook deliveries that
//! ended go with their event (with their attempts); those still being retried stay until
//! they end. Pruned hourly, in small batches, so the single writer is never held for long.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;

use crate::clock::Clock;
use crate::store::{Pruned, Store, StoreError};

/// How long events (and the deliveries of theirs that ended) are kept.
pub const EVENTS: TimeDelta = TimeDelta::days(7);
/// How long an `Idempotency-Key` answer is kept (it is replayed for 24 hours).
pub const IDEMPOTENCY: TimeDelta = TimeDelta::hours(24);

/// Prunes what is past its retention now.
pub async fn run_once(store: &Store, clock: &Clock) -> Result<Pruned, StoreError> {
    let now = clock.now();
    store.prune(now - EVENTS, now - IDEMPOTENCY, now).await
}

/// Prunes every hour of real time, on one replica at a time (the others try for the lead
/// every minute).
pub fn spawn(store: Store, clock: Arc<Clock>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lead = store.leadership(crate::store::Role::Retention);
        loop {
            if !lead.held().await {
                tokio::time::sleep(Duration::from_secs(60)).await;
                continue;
            }
            match run_once(&store, &clock).await {
                Ok(p) if p == Pruned::default() => {}
                Ok(p) => tracing::info!(?p, "pruned past retention"),
                Err(e) => tracing::error!(error = %e, "pruning failed"),
            }
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    })
}
