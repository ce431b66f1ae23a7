//! What the portal's operations page reads: a partner's ended fetches and webhook attempts
//! of the last day, as rows the services layer turns into hours and percentiles.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Store, StoreError};
use crate::model::to_ms;

/// One ended fetch (a job item).
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct EndedFetch {
    /// When it ended (milliseconds since the epoch).
    pub finished_ms: i64,
    /// `SUCCEEDED` or `FAILED`.
    pub state: String,
    /// The account's bank.
    pub bank_id: String,
    /// How long it ran, when it was started by a worker (milliseconds).
    pub duration_ms: Option<i64>,
}

/// One ended webhook attempt.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct EndedAttempt {
    /// When it started (milliseconds since the epoch).
    pub started_ms: i64,
    /// Whether it succeeded.
    pub succeeded: bool,
    /// How long the receiver took, when it answered.
    pub latency_ms: Option<i64>,
}

/// The partner's last day, as rows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartnerDay {
    /// Ended fetches since the start.
    pub fetches: Vec<EndedFetch>,
    /// Ended attempts since the start.
    pub attempts: Vec<EndedAttempt>,
}

impl Store {
    /// `partner`'s fetches and attempts that ended at or after `since`. Jobs are found by
    /// their creation (a job created up to a day before `since` may still end in the window).
    pub async fn partner_day(
        &self,
        partner: Uuid,
        since: DateTime<Utc>,
    ) -> Result<PartnerDay, StoreError> {
        let since_ms = to_ms(since);
        // Shared by both dialects: `$2 - 86400000` is bigint arithmetic in PostgreSQL too
        // (`$2` is bound as an i64), and `succeeded` decodes as a bool from SQLite's 0/1 and
        // from PostgreSQL's boolean alike.
        let fetches: Vec<EndedFetch> = on_read!(self, |c| {
            sqlx::query_as(
                "SELECT i.finished_at AS finished_ms, i.state, a.bank_id,
                        CASE WHEN i.started_at IS NOT NULL THEN i.finished_at - i.started_at END AS duration_ms
                 FROM refresh_jobs j
                 JOIN refresh_job_items i ON i.job_id = j.id
                 JOIN accounts a ON a.id = i.account_id
                 WHERE j.partner_id = $1 AND j.created_at >= $2 - 86400000
                   AND i.state IN ('SUCCEEDED', 'FAILED') AND i.finished_at >= $2",
            )
            .bind(partner.to_string())
            .bind(since_ms)
            .fetch_all(c)
            .await?
        });
        let attempts: Vec<EndedAttempt> = on_read!(self, |c| {
            sqlx::query_as(
                "SELECT a.started_at AS started_ms, a.outcome = 'SUCCEEDED' AS succeeded, a.latency_ms
                 FROM webhook_subscriptions s
                 JOIN webhook_attempts a ON a.subscription_id = s.id
                 WHERE s.partner_id = $1 AND a.started_at >= $2 AND a.outcome != 'IN_PROGRESS'",
            )
            .bind(partner.to_string())
            .bind(since_ms)
            .fetch_all(c)
            .await?
        });
        Ok(PartnerDay { fetches, attempts })
    }
}
