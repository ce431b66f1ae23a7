//! Reading the event log (the outbox), in commit order, per partner.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Store, StoreError};
use crate::model::from_ms;

/// One event of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    /// Its position in the log: the SSE `id:`.
    pub seq: i64,
    /// Its `eventId`.
    pub id: String,
    /// `v1.account_transactions.on_demand_refresh.succeeded`, ...
    pub event_type: String,
    /// The JSON payload.
    pub payload: String,
    /// When it was committed.
    pub created_at: DateTime<Utc>,
}

impl Store {
    /// The position of `partner`'s newest event (0 when none): where a new stream starts.
    pub async fn last_event_seq(&self, partner: Uuid) -> Result<i64, StoreError> {
        let (seq,): (Option<i64>,) =
            sqlx::query_as("SELECT MAX(seq) FROM events WHERE partner_id = ?1")
                .bind(partner.to_string())
                .fetch_one(&self.read)
                .await?;
        Ok(seq.unwrap_or(0))
    }

    /// `partner`'s events after position `after`, oldest first, at most `limit`.
    pub async fn events_after(
        &self,
        partner: Uuid,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows: Vec<(i64, String, String, String, i64)> = sqlx::query_as(
            "SELECT seq, id, type, payload, created_at FROM events WHERE partner_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )
        .bind(partner.to_string())
        .bind(after)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(seq, id, event_type, payload, created_at)| StoredEvent {
                seq,
                id,
                event_type,
                payload,
                created_at: from_ms(created_at),
            })
            .collect())
    }
}
