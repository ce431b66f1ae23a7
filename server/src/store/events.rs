//! The event log (the outbox): appending, and reading in commit order per partner or per job.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Events, StoreError};
use crate::model::{from_ms, to_ms};

#[derive(sqlx::FromRow)]
struct EventRow {
    seq: i64,
    id: String,
    #[sqlx(rename = "type")]
    event_type: String,
    payload: String,
    created_at: i64,
}

impl From<EventRow> for StoredEvent {
    fn from(r: EventRow) -> Self {
        Self {
            seq: r.seq,
            id: r.id,
            event_type: r.event_type,
            payload: r.payload,
            created_at: from_ms(r.created_at),
        }
    }
}

/// An event of a job, with how its webhook deliveries went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobEvent {
    /// The event.
    pub event: StoredEvent,
    /// Its account.
    pub account_id: String,
    /// Each delivery: (subscription, status, attempts).
    pub deliveries: Vec<(String, String, i64)>,
}

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

/// Appends one event inside the caller's transaction (its webhook deliveries are created in
/// the same commit, by the fan-out trigger): the one INSERT of an event that rides with other
/// writes. The caller wakes the streams after its commit.
pub(super) async fn insert(
    conn: &mut sqlx::SqliteConnection,
    partner: &str,
    event_type: &str,
    payload: &serde_json::Value,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO events (id, partner_id, type, payload, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .bind(Uuid::new_v4().to_string())
    .bind(partner)
    .bind(event_type)
    .bind(payload.to_string())
    .bind(to_ms(now))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl Events<'_> {
    /// Appends one event in a transaction of its own (its webhook deliveries are created in
    /// the same commit, by the fan-out trigger) and wakes the streams and the deliverer.
    /// The engine appends its events inside its own transactions; this is for events
    /// that stand alone.
    pub async fn append(
        &self,
        partner: Uuid,
        event_type: &str,
        payload: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<StoredEvent, StoreError> {
        let id = Uuid::new_v4().to_string();
        let payload = payload.to_string();
        let (seq,): (i64,) = sqlx::query_as(
            "INSERT INTO events (id, partner_id, type, payload, created_at) VALUES (?1, ?2, ?3, ?4, ?5) RETURNING seq",
        )
        .bind(&id)
        .bind(partner.to_string())
        .bind(event_type)
        .bind(&payload)
        .bind(to_ms(now))
        .fetch_one(&self.write)
        .await?;
        self.events_committed();
        Ok(StoredEvent {
            seq,
            id,
            event_type: event_type.to_owned(),
            payload,
            created_at: now,
        })
    }

    /// The position of `partner`'s newest event (0 when none): where a new stream starts.
    pub async fn last_seq(&self, partner: Uuid) -> Result<i64, StoreError> {
        let (seq,): (Option<i64>,) =
            sqlx::query_as("SELECT MAX(seq) FROM events WHERE partner_id = ?1")
                .bind(partner.to_string())
                .fetch_one(&self.read)
                .await?;
        Ok(seq.unwrap_or(0))
    }

    /// `partner`'s events after position `after`, oldest first, at most `limit`.
    pub async fn after(
        &self,
        partner: Uuid,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows: Vec<EventRow> = sqlx::query_as(
            "SELECT seq, id, type, payload, created_at FROM events WHERE partner_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )
        .bind(partner.to_string())
        .bind(after)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.into_iter().map(StoredEvent::from).collect())
    }

    /// The events of one of `partner`'s jobs, in commit order, with their deliveries.
    pub async fn of_job(&self, partner: Uuid, job: Uuid) -> Result<Vec<JobEvent>, StoreError> {
        let rows: Vec<EventRow> = sqlx::query_as(
            "SELECT seq, id, type, payload, created_at FROM events
             WHERE partner_id = ?1 AND json_extract(payload, '$.jobId') = ?2 ORDER BY seq",
        )
        .bind(partner.to_string())
        .bind(job.to_string())
        .fetch_all(&self.read)
        .await?;
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            let deliveries: Vec<(String, String, i64)> = sqlx::query_as(
                "SELECT subscription_id, status, attempts FROM webhook_deliveries WHERE event_id = ?1 ORDER BY subscription_id",
            )
            .bind(&row.id)
            .fetch_all(&self.read)
            .await?;
            let event = StoredEvent::from(row);
            let account_id = serde_json::from_str::<serde_json::Value>(&event.payload)
                .ok()
                .and_then(|p| p["accountId"].as_str().map(str::to_owned))
                .unwrap_or_default();
            events.push(JobEvent {
                event,
                account_id,
                deliveries,
            });
        }
        Ok(events)
    }
}
