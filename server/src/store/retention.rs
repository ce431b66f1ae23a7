//! Deleting what is past its retention, in batches (see `crate::retention`).

use chrono::{DateTime, Utc};

use super::{Store, StoreError};
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
    async fn delete_in_batches(&self, statements: &[&str], before: i64) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
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
        // statement's count is the batch's.
        let deliveries = self
            .delete_in_batches(
                &[
                    "DELETE FROM webhook_attempts WHERE (subscription_id, event_id) IN (
                       SELECT subscription_id, event_id FROM webhook_deliveries
                       WHERE status != 'PENDING' AND event_created_at < ?1 LIMIT ?2)",
                    "DELETE FROM webhook_deliveries WHERE (subscription_id, event_id) IN (
                       SELECT subscription_id, event_id FROM webhook_deliveries
                       WHERE status != 'PENDING' AND event_created_at < ?1 LIMIT ?2)",
                ],
                to_ms(events_before),
            )
            .await?;
        let events = self
            .delete_in_batches(
                &["DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE created_at < ?1 LIMIT ?2)"],
                to_ms(events_before),
            )
            .await?;
        let idempotency_keys = self
            .delete_in_batches(
                &["DELETE FROM idempotency_keys WHERE (partner_id, key) IN (
                     SELECT partner_id, key FROM idempotency_keys WHERE created_at < ?1 LIMIT ?2)"],
                to_ms(keys_before),
            )
            .await?;
        let sessions = self
            .delete_in_batches(
                &["DELETE FROM portal_sessions WHERE token_hash IN (
                     SELECT token_hash FROM portal_sessions WHERE expires_at <= ?1 LIMIT ?2)"],
                to_ms(now),
            )
            .await?;
        Ok(Pruned {
            events,
            deliveries,
            idempotency_keys,
            sessions,
        })
    }
}
