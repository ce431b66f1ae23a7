//! Deleting what is past its retention, in batches (see `crate::retention`).
//!
//! The batches are key-based (`WHERE key IN (SELECT key ... LIMIT n)`), which both dialects
//! read. On PostgreSQL each batch is one statement committing on its own (no serial lock:
//! nothing else deletes these rows, and a second replica pruning at once only finds fewer),
//! and a delivery's attempts go with it by the schema's cascade.

use chrono::{DateTime, Utc};

use super::{Db, Store, StoreError};
use crate::model::to_ms;

const BATCH: i64 = 2000;

/// How many rows of each kind a prune deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Events.
    pub events: u64,
    /// Ended webhook deliveries (their attempts went with them).
    pub deliveries: u64,
    /// `Idempotency-Key` answers.
    pub idempotency_keys: u64,
    /// Expired portal sessions.
    pub sessions: u64,
}

impl Store {
    /// Runs `statements` (SQLite's) or `pg` (PostgreSQL's: one statement) batch after batch
    /// until a batch deletes fewer than [`BATCH`] rows; how many the last statement deleted
    /// in all.
    async fn delete_in_batches(
        &self,
        statements: &[&str],
        pg: &str,
        before: i64,
    ) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let last = match &self.db {
                Db::Sqlite { .. } => {
                    let mut tx = self.begin_write().await?;
                    let mut last = 0;
                    for sql in statements {
                        last = sqlx::query(sql)
                            .bind(before)
                            .bind(BATCH)
                            .execute(&mut *tx)
                            .await?
                            .rows_affected();
                    }
                    tx.commit().await?;
                    last
                }
                Db::Postgres { pool } => sqlx::query(pg)
                    .bind(before)
                    .bind(BATCH)
                    .execute(pool)
                    .await?
                    .rows_affected(),
            };
            total += last;
            if last < BATCH as u64 {
                return Ok(total);
            }
        }
    }

    /// Deletes events committed before `events_before` with their ended deliveries,
    /// `Idempotency-Key` answers older than `keys_before`, and sessions expired at `now`.
    pub async fn prune(
        &self,
        events_before: DateTime<Utc>,
        keys_before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Pruned, StoreError> {
        // Attempts first (their foreign key), then the deliveries they belong to: the last
        // statement's count is the batch's. PostgreSQL: the deliveries alone (the attempts
        // cascade); `status` is asked again outside the subquery, so that a delivery made
        // due by hand while the batch waited for its row is kept (the subquery's answer is
        // not checked again after a wait, the statement's own condition is).
        let deliveries = self
            .delete_in_batches(
                &[
                    "DELETE FROM webhook_attempts WHERE (subscription_id, event_id) IN (
                       SELECT subscription_id, event_id FROM webhook_deliveries
                       WHERE status != 'PENDING' AND event_created_at < $1 LIMIT $2)",
                    "DELETE FROM webhook_deliveries WHERE (subscription_id, event_id) IN (
                       SELECT subscription_id, event_id FROM webhook_deliveries
                       WHERE status != 'PENDING' AND event_created_at < $1 LIMIT $2)",
                ],
                "DELETE FROM webhook_deliveries WHERE (subscription_id, event_id) IN (
                   SELECT subscription_id, event_id FROM webhook_deliveries
                   WHERE status != 'PENDING' AND event_created_at < $1 LIMIT $2)
                 AND status != 'PENDING'",
                to_ms(events_before),
            )
            .await?;
        let events_sql = "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE created_at < $1 LIMIT $2)";
        let events = self
            .delete_in_batches(&[events_sql], events_sql, to_ms(events_before))
            .await?;
        let keys_sql = "DELETE FROM idempotency_keys WHERE (partner_id, key) IN (
                     SELECT partner_id, key FROM idempotency_keys WHERE created_at < $1 LIMIT $2)";
        let idempotency_keys = self
            .delete_in_batches(&[keys_sql], keys_sql, to_ms(keys_before))
            .await?;
        let sessions_sql = "DELETE FROM portal_sessions WHERE token_hash IN (
                     SELECT token_hash FROM portal_sessions WHERE expires_at <= $1 LIMIT $2)";
        let sessions = self
            .delete_in_batches(&[sessions_sql], sessions_sql, to_ms(now))
            .await?;
        Ok(Pruned {
            events,
            deliveries,
            idempotency_keys,
            sessions,
        })
    }
}
