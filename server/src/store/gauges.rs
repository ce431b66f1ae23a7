//! What `/metrics` reads from the database at each scrape: the queues' depths, which no
//! counter in one process can know (another process, or a restart, changes them).

use chrono::{DateTime, Utc};

use super::{Store, StoreError};
use crate::model::to_ms;

/// The queues, now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Job items waiting for a worker.
    pub items_queued: i64,
    /// Job items a worker holds.
    pub items_running: i64,
    /// Webhook deliveries due now (not waiting for a retry's time, not paused or disabled).
    pub deliveries_due: i64,
    /// How long the oldest due delivery has been due, in milliseconds (0 when none is).
    pub oldest_due_ms: i64,
}

impl Store {
    /// The queues' depths at `now`; each read walks a partial index of open rows only.
    pub async fn gauges(&self, now: DateTime<Utc>) -> Result<Gauges, StoreError> {
        // A comparison is an integer in SQLite, a boolean (which SUM refuses) in PostgreSQL.
        let items_sql = match self.backend() {
            super::Backend::Sqlite => {
                "SELECT COALESCE(SUM(state = 'QUEUED'), 0), COALESCE(SUM(state = 'RUNNING'), 0)
             FROM refresh_job_items WHERE state IN ('QUEUED', 'RUNNING')"
            }
            super::Backend::Postgres => {
                "SELECT COUNT(*) FILTER (WHERE state = 'QUEUED'), COUNT(*) FILTER (WHERE state = 'RUNNING')
             FROM refresh_job_items WHERE state IN ('QUEUED', 'RUNNING')"
            }
        };
        let (items_queued, items_running): (i64, i64) =
            on_read!(self, |c| sqlx::query_as(items_sql).fetch_one(c).await?);
        let now = to_ms(now);
        let (deliveries_due, oldest): (i64, Option<i64>) = on_read!(self, |c| {
            sqlx::query_as(
                "SELECT COUNT(*), MIN(d.next_attempt_at) FROM webhook_deliveries d
                 JOIN webhook_subscriptions s ON s.id = d.subscription_id
                 WHERE d.status = 'PENDING' AND d.next_attempt_at <= $1
                   AND s.paused = 0 AND s.disabled_at IS NULL",
            )
            .bind(now)
            .fetch_one(c)
            .await?
        });
        Ok(Gauges {
            items_queued,
            items_running,
            deliveries_due,
            oldest_due_ms: oldest.map_or(0, |at| (now - at).max(0)),
        })
    }
}
