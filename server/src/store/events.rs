//! The event log (the outbox): appending, and reading in commit order per partner or per job.
//!
//! Readers resume from a position: an SSE stream asks for `seq > last seen`. That is only
//! safe if no event with a lower `seq` can become visible after one with a higher `seq` was
//! read — the trap of sequence ids under concurrent writers (a writer draws seq 10 and
//! commits late, another draws 11 and commits first; a reader that saw 11 never sees 10).
//!
//! The design is a serialized append. SQLite has it by construction: one writer, so seqs are
//! drawn and committed in order. On PostgreSQL every transaction that inserts into `events`
//! takes the advisory lock [`EVENT_LOG_LOCK`] in the same statement as its insert, before
//! the identity draws the seq, and holds it to its commit (`pg_advisory_xact_lock`;
//! PostgreSQL makes a commit visible before it releases the transaction's locks). So a
//! later seq is only drawn after every earlier one committed or rolled back: whatever a
//! reader sees, it sees every lower seq that will ever exist, and `seq > last` never skips.
//! Rolled-back appends leave gaps, which nobody waits for. The lock is taken as late as the
//! transaction allows (with its first event, not at its start), so appends from replicas
//! queue only for the end of each other's transactions, not for their whole work.
//!
//! Every append in the store goes through [`insert`] or [`Events::append`] (or, in the
//! engine's commit, takes the same lock the same way), and is followed by
//! `Store::events_committed` after its commit, which wakes the streams.

use std::future::Future;

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Sqlite, Transaction};
use uuid::Uuid;

use super::{Db, EVENT_LOG_LOCK, Events, StoreError};
use crate::model::{from_ms, to_ms};

/// PostgreSQL's append: the event log's lock (`$6`, [`EVENT_LOG_LOCK`]) in the same
/// statement, before the insert. The CTE is `MATERIALIZED` (a volatile one is anyway), so
/// it runs to the lock before the insert's row, and with it its seq, is made.
const INSERT_PG: &str = "WITH event_log AS MATERIALIZED (SELECT pg_advisory_xact_lock($6))
     INSERT INTO events (id, partner_id, type, payload, created_at)
     SELECT $1, $2, $3, $4, $5 FROM event_log";

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
/// writes. `conn` is the transaction (or its connection) of either backend; on PostgreSQL
/// the insert takes [`EVENT_LOG_LOCK`], held to the caller's commit (see the module's
/// doc). The caller wakes the streams after its commit.
pub(super) async fn insert<C: AppendEvent + ?Sized>(
    conn: &mut C,
    partner: &str,
    event_type: &str,
    payload: &serde_json::Value,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    conn.append_event(NewEvent {
        id: Uuid::new_v4().to_string(),
        partner,
        event_type,
        payload: payload.to_string(),
        created_at: to_ms(now),
    })
    .await
}

/// An event to append.
pub(super) struct NewEvent<'a> {
    id: String,
    partner: &'a str,
    event_type: &'a str,
    payload: String,
    created_at: i64,
}

/// A write transaction, or its connection, that [`insert`] appends an event on: SQLite's
/// or PostgreSQL's (which takes the event log's lock with the insert).
pub(super) trait AppendEvent {
    /// Inserts `event` into `events`.
    fn append_event<'a>(
        &'a mut self,
        event: NewEvent<'a>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'a;
}

impl AppendEvent for sqlx::SqliteConnection {
    async fn append_event<'a>(&'a mut self, e: NewEvent<'a>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO events (id, partner_id, type, payload, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(e.id)
        .bind(e.partner)
        .bind(e.event_type)
        .bind(e.payload)
        .bind(e.created_at)
        .execute(&mut *self)
        .await?;
        Ok(())
    }
}

impl AppendEvent for sqlx::PgConnection {
    async fn append_event<'a>(&'a mut self, e: NewEvent<'a>) -> Result<(), StoreError> {
        sqlx::query(INSERT_PG)
            .bind(e.id)
            .bind(e.partner)
            .bind(e.event_type)
            .bind(e.payload)
            .bind(e.created_at)
            .bind(EVENT_LOG_LOCK)
            .execute(&mut *self)
            .await?;
        Ok(())
    }
}

impl AppendEvent for Transaction<'_, Sqlite> {
    fn append_event<'a>(
        &'a mut self,
        event: NewEvent<'a>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'a {
        (**self).append_event(event)
    }
}

impl AppendEvent for Transaction<'_, Postgres> {
    fn append_event<'a>(
        &'a mut self,
        event: NewEvent<'a>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'a {
        (**self).append_event(event)
    }
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
        let (seq,): (i64,) = match &self.db {
            Db::Sqlite { write, .. } => {
                sqlx::query_as(
                    "INSERT INTO events (id, partner_id, type, payload, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING seq",
                )
                .bind(&id)
                .bind(partner.to_string())
                .bind(event_type)
                .bind(&payload)
                .bind(to_ms(now))
                .fetch_one(write)
                .await?
            }
            // One statement in a transaction of its own: the lock is held to its commit.
            Db::Postgres { pool } => {
                sqlx::query_as(&format!("{INSERT_PG} RETURNING seq"))
                    .bind(&id)
                    .bind(partner.to_string())
                    .bind(event_type)
                    .bind(&payload)
                    .bind(to_ms(now))
                    .bind(EVENT_LOG_LOCK)
                    .fetch_one(pool)
                    .await?
            }
        };
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
        let (seq,): (Option<i64>,) = on_read!(self, |c| {
            sqlx::query_as("SELECT MAX(seq) FROM events WHERE partner_id = $1")
                .bind(partner.to_string())
                .fetch_one(c)
                .await?
        });
        Ok(seq.unwrap_or(0))
    }

    /// `partner`'s events after position `after`, oldest first, at most `limit`. Never
    /// skips one that commits later (see the module's doc): a stream resumes from the last
    /// `seq` it read.
    pub async fn after(
        &self,
        partner: Uuid,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows: Vec<EventRow> = on_read!(self, |c| {
            sqlx::query_as(
                "SELECT seq, id, type, payload, created_at FROM events WHERE partner_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            )
            .bind(partner.to_string())
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(c)
            .await?
        });
        Ok(rows.into_iter().map(StoredEvent::from).collect())
    }

    /// The events of one of `partner`'s jobs, in commit order, with their deliveries.
    pub async fn of_job(&self, partner: Uuid, job: Uuid) -> Result<Vec<JobEvent>, StoreError> {
        let sql = match self.backend() {
            super::Backend::Sqlite => {
                "SELECT seq, id, type, payload, created_at FROM events
                 WHERE partner_id = $1 AND json_extract(payload, '$.jobId') = $2 ORDER BY seq"
            }
            // The payload is JSON text in both; PostgreSQL reads it through jsonb.
            super::Backend::Postgres => {
                "SELECT seq, id, type, payload, created_at FROM events
                 WHERE partner_id = $1 AND payload::jsonb ->> 'jobId' = $2 ORDER BY seq"
            }
        };
        let rows: Vec<EventRow> = on_read!(self, |c| {
            sqlx::query_as(sql)
                .bind(partner.to_string())
                .bind(job.to_string())
                .fetch_all(c)
                .await?
        });
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            let deliveries: Vec<(String, String, i64)> = on_read!(self, |c| {
                sqlx::query_as(
                    "SELECT subscription_id, status, attempts FROM webhook_deliveries WHERE event_id = $1 ORDER BY subscription_id",
                )
                .bind(&row.id)
                .fetch_all(c)
                .await?
            });
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
