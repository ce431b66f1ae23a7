//! The attempt log: every attempt of every delivery, newest first in cursor pages, and the
//! last hours' outcomes for the portal's chart.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::super::{Attempts, StoreError};
use super::owns;
use crate::model::webhooks::{Attempt, AttemptOutcome, DeliveryStatus};
use crate::model::{from_ms, to_ms};

/// A webhook outcome, for the portal's chart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptPoint {
    /// When the attempt started.
    pub at: DateTime<Utc>,
    /// Its latency.
    pub latency_ms: Option<i64>,
    /// Whether it succeeded.
    pub succeeded: bool,
}

fn delivery_status(text: &str) -> DeliveryStatus {
    match text {
        "SUCCEEDED" => DeliveryStatus::Succeeded,
        "FAILED" => DeliveryStatus::Failed,
        _ => DeliveryStatus::Pending,
    }
}

/// A position in the attempt log, newest first: `{startedAtMs}.{attempt}.{eventId}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptCursor {
    started_at: i64,
    attempt: u32,
    event_id: String,
}

impl AttemptCursor {
    /// Parses a cursor this API handed out.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.splitn(3, '.');
        Some(Self {
            started_at: parts.next()?.parse().ok()?,
            attempt: parts.next()?.parse().ok()?,
            event_id: parts.next().filter(|e| !e.is_empty())?.to_owned(),
        })
    }

    fn of(attempt: &Attempt) -> String {
        format!(
            "{}.{}.{}",
            to_ms(attempt.attempted_at),
            attempt.attempt,
            attempt.event_id
        )
    }
}

#[derive(sqlx::FromRow)]
struct AttemptRow {
    event_id: String,
    event_type: String,
    attempt: i64,
    started_at: i64,
    outcome: String,
    status_code: Option<i64>,
    latency_ms: Option<i64>,
    error_kind: Option<String>,
    response_excerpt: Option<String>,
    next_attempt_at: Option<i64>,
    delivery_status: String,
}

impl AttemptRow {
    fn into_attempt(self) -> Attempt {
        Attempt {
            event_id: self.event_id,
            event_type: self.event_type,
            attempt: u32::try_from(self.attempt).unwrap_or(0),
            attempted_at: from_ms(self.started_at),
            outcome: match self.outcome.as_str() {
                "SUCCEEDED" => AttemptOutcome::Succeeded,
                "FAILED" => AttemptOutcome::Failed,
                _ => AttemptOutcome::InProgress,
            },
            status_code: self.status_code.and_then(|c| u16::try_from(c).ok()),
            latency_ms: self.latency_ms.and_then(|l| u64::try_from(l).ok()),
            error_kind: self.error_kind,
            response_excerpt: self.response_excerpt,
            next_attempt_at: self.next_attempt_at.map(from_ms),
            delivery_status: delivery_status(&self.delivery_status),
        }
    }
}

impl Attempts<'_> {
    /// The attempt log of one of `partner`'s subscriptions, newest first, optionally of one
    /// event; `None` when the subscription is not `partner`'s. Returns the page and the
    /// cursor of the next one.
    pub async fn page(
        &self,
        partner: Uuid,
        id: Uuid,
        event_id: Option<&str>,
        after: Option<&AttemptCursor>,
        limit: u32,
    ) -> Result<Option<(Vec<Attempt>, Option<String>)>, StoreError> {
        let rows: Vec<AttemptRow> = on_read!(self, |c| {
            if !owns(partner, id, c).await? {
                return Ok(None);
            }
            // The cursor's attempt binds as an i64: PostgreSQL has no unsigned types.
            sqlx::query_as(
                "SELECT a.event_id, d.event_type, a.attempt, a.started_at, a.outcome, a.status_code,
                   a.latency_ms, a.error_kind, a.response_excerpt, a.next_attempt_at, d.status AS delivery_status
                 FROM webhook_attempts a
                 JOIN webhook_deliveries d ON d.subscription_id = a.subscription_id AND d.event_id = a.event_id
                 WHERE a.subscription_id = $1 AND ($2 IS NULL OR a.event_id = $2)
                   AND ($3 IS NULL OR (a.started_at, a.attempt, a.event_id) < ($3, $4, $5))
                 ORDER BY a.started_at DESC, a.attempt DESC, a.event_id DESC
                 LIMIT $6",
            )
            .bind(id.to_string())
            .bind(event_id)
            .bind(after.map(|c| c.started_at))
            .bind(after.map(|c| i64::from(c.attempt)))
            .bind(after.map(|c| c.event_id.as_str()))
            .bind(i64::from(limit) + 1)
            .fetch_all(c)
            .await?
        });
        let mut page: Vec<Attempt> = rows.into_iter().map(AttemptRow::into_attempt).collect();
        let next = if page.len() > limit as usize {
            page.truncate(limit as usize);
            page.last().map(AttemptCursor::of)
        } else {
            None
        };
        Ok(Some((page, next)))
    }

    /// The attempts of one subscription since `since`, for the latency chart.
    pub async fn points(
        &self,
        partner: Uuid,
        subscription: Uuid,
        since: DateTime<Utc>,
    ) -> Result<Vec<AttemptPoint>, StoreError> {
        let rows: Vec<(i64, Option<i64>, String)> = on_read!(self, |c| {
            sqlx::query_as(
                "SELECT a.started_at, a.latency_ms, a.outcome FROM webhook_attempts a
                 JOIN webhook_subscriptions s ON s.id = a.subscription_id
                 WHERE s.partner_id = $1 AND a.subscription_id = $2 AND a.started_at >= $3
                 ORDER BY a.started_at LIMIT 5000",
            )
            .bind(partner.to_string())
            .bind(subscription.to_string())
            .bind(to_ms(since))
            .fetch_all(c)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(at, latency_ms, outcome)| AttemptPoint {
                at: from_ms(at),
                latency_ms,
                succeeded: outcome == "SUCCEEDED",
            })
            .collect())
    }
}
