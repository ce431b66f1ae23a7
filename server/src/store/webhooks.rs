//! Webhook subscriptions, the delivery queue and the attempt log. Deliveries are created by
//! a trigger on `events` (see `0005_webhooks.sql`), in the event's own transaction. Every
//! query a partner reaches is scoped to that partner.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use super::{Store, StoreError, new_id};
use crate::model::{from_ms, to_ms};
use crate::webhooks::model::{
    Attempt, AttemptOutcome, DeliveryStatus, Subscription, SubscriptionStatus,
};

/// What `PATCH` may change; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct SubscriptionChange {
    /// A new target (already checked by the SSRF guard).
    pub target_url: Option<String>,
    /// New event types (already validated).
    pub event_types: Option<Vec<String>>,
    /// Pause or resume; resuming also re-enables a subscription disabled by a 410.
    pub paused: Option<bool>,
}

/// A delivery claimed for one attempt, with what signing and sending it needs.
#[derive(Clone, Debug)]
pub struct ClaimedDelivery {
    /// The subscription.
    pub subscription_id: String,
    /// The event (and delivery) id.
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// The event's JSON payload.
    pub payload: String,
    /// When the event was committed (the body's `timestamp`).
    pub event_created_at: DateTime<Utc>,
    /// This attempt's number, 1-based.
    pub attempt: u32,
    /// Its place on the retry ladder, 1-based (attempts since the last redeliver or recover).
    pub ladder_step: u32,
    /// Where to send it.
    pub target_url: String,
    /// The secrets that sign it, newest first (two during a rotation).
    pub secrets: Vec<String>,
}

/// How one attempt ended, and what follows for its delivery.
#[derive(Clone, Debug)]
pub struct AttemptRecord {
    /// The subscription.
    pub subscription_id: String,
    /// The event.
    pub event_id: String,
    /// The attempt's number.
    pub attempt: u32,
    /// Whether a 2xx acknowledged it.
    pub succeeded: bool,
    /// The receiver's status, when it answered.
    pub status_code: Option<u16>,
    /// Milliseconds from the request to the answer or the failure.
    pub latency_ms: u64,
    /// Why it failed.
    pub error_kind: Option<&'static str>,
    /// The start of the answer's body.
    pub response_excerpt: Option<String>,
    /// When to try again; `None` ends the delivery (succeeded, or failed for good).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The receiver answered 410 Gone: disable the subscription.
    pub gone: bool,
}

type SubscriptionRow = (
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<String>,
    Option<i64>,
    i64,
    i64,
);

const SUBSCRIPTION_COLUMNS: &str = "id, target_url, event_types, paused, disabled_at, disabled_reason, previous_secret_expires_at, created_at, updated_at";

fn subscription_from_row(row: SubscriptionRow, now: DateTime<Utc>) -> Option<Subscription> {
    let (
        id,
        target_url,
        types,
        paused,
        disabled_at,
        disabled_reason,
        previous_expires,
        created,
        updated,
    ) = row;
    Some(Subscription {
        subscription_id: Uuid::parse_str(&id).ok()?,
        target_url,
        event_types: serde_json::from_str(&types).ok()?,
        status: if disabled_at.is_some() {
            SubscriptionStatus::Disabled
        } else if paused != 0 {
            SubscriptionStatus::Paused
        } else {
            SubscriptionStatus::Active
        },
        disabled_reason,
        previous_secret_expires_at: previous_expires.map(from_ms).filter(|at| *at > now),
        created_at: from_ms(created),
        updated_at: from_ms(updated),
    })
}

/// Whether subscription `id` exists and is `partner`'s: another partner's reads as missing.
async fn owns<'e, E>(partner: Uuid, id: Uuid, executor: E) -> Result<bool, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT 1 FROM webhook_subscriptions WHERE id = ?1 AND partner_id = ?2")
            .bind(id.to_string())
            .bind(partner.to_string())
            .fetch_optional(executor)
            .await?;
    Ok(row.is_some())
}

fn encode<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Encoding(e.to_string()))
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

impl Store {
    /// Creates a subscription of `partner`.
    pub async fn create_subscription(
        &self,
        partner: Uuid,
        target_url: &str,
        event_types: &[String],
        secret: &str,
        now: DateTime<Utc>,
    ) -> Result<Subscription, StoreError> {
        let id = new_id();
        sqlx::query(
            "INSERT INTO webhook_subscriptions (id, partner_id, target_url, event_types, secret, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        )
        .bind(id.to_string())
        .bind(partner.to_string())
        .bind(target_url)
        .bind(encode(&event_types)?)
        .bind(secret)
        .bind(to_ms(now))
        .execute(&self.write)
        .await?;
        Ok(Subscription {
            subscription_id: id,
            target_url: target_url.to_owned(),
            event_types: event_types.to_vec(),
            status: SubscriptionStatus::Active,
            disabled_reason: None,
            previous_secret_expires_at: None,
            created_at: now,
            updated_at: now,
        })
    }

    /// `partner`'s subscriptions, oldest first.
    pub async fn subscriptions(
        &self,
        partner: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Vec<Subscription>, StoreError> {
        let rows: Vec<SubscriptionRow> = sqlx::query_as(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions WHERE partner_id = ?1 ORDER BY created_at, id"
        ))
        .bind(partner.to_string())
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| subscription_from_row(r, now))
            .collect())
    }

    /// One of `partner`'s subscriptions.
    pub async fn subscription(
        &self,
        partner: Uuid,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<Subscription>, StoreError> {
        let row: Option<SubscriptionRow> = sqlx::query_as(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions WHERE id = ?1 AND partner_id = ?2"
        ))
        .bind(id.to_string())
        .bind(partner.to_string())
        .fetch_optional(&self.read)
        .await?;
        Ok(row.and_then(|r| subscription_from_row(r, now)))
    }

    /// Applies `change`; `None` when the subscription is not `partner`'s.
    pub async fn update_subscription(
        &self,
        partner: Uuid,
        id: Uuid,
        change: &SubscriptionChange,
        now: DateTime<Utc>,
    ) -> Result<Option<Subscription>, StoreError> {
        let types = change.event_types.as_ref().map(encode).transpose()?;
        let row: Option<SubscriptionRow> = sqlx::query_as(&format!(
            "UPDATE webhook_subscriptions SET
               target_url = COALESCE(?3, target_url),
               event_types = COALESCE(?4, event_types),
               paused = COALESCE(?5, paused),
               disabled_at = CASE WHEN ?5 = 0 THEN NULL ELSE disabled_at END,
               disabled_reason = CASE WHEN ?5 = 0 THEN NULL ELSE disabled_reason END,
               updated_at = ?6
             WHERE id = ?1 AND partner_id = ?2
             RETURNING {SUBSCRIPTION_COLUMNS}"
        ))
        .bind(id.to_string())
        .bind(partner.to_string())
        .bind(change.target_url.as_deref())
        .bind(types)
        .bind(change.paused.map(i64::from))
        .bind(to_ms(now))
        .fetch_optional(&self.write)
        .await?;
        Ok(row.and_then(|r| subscription_from_row(r, now)))
    }

    /// Deletes a subscription with its deliveries and attempts; whether it existed.
    pub async fn delete_subscription(&self, partner: Uuid, id: Uuid) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        if !owns(partner, id, &mut *tx).await? {
            return Ok(false);
        }
        for sql in [
            "DELETE FROM webhook_attempts WHERE subscription_id = ?1",
            "DELETE FROM webhook_deliveries WHERE subscription_id = ?1",
            "DELETE FROM webhook_subscriptions WHERE id = ?1",
        ] {
            sqlx::query(sql)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Makes `secret` the signing secret; the one it replaces keeps signing until
    /// `now + overlap`.
    pub async fn rotate_secret(
        &self,
        partner: Uuid,
        id: Uuid,
        secret: &str,
        overlap: TimeDelta,
        now: DateTime<Utc>,
    ) -> Result<Option<Subscription>, StoreError> {
        let row: Option<SubscriptionRow> = sqlx::query_as(&format!(
            "UPDATE webhook_subscriptions SET previous_secret = secret, secret = ?3,
               previous_secret_expires_at = ?4, updated_at = ?5
             WHERE id = ?1 AND partner_id = ?2
             RETURNING {SUBSCRIPTION_COLUMNS}"
        ))
        .bind(id.to_string())
        .bind(partner.to_string())
        .bind(secret)
        .bind(to_ms(now + overlap))
        .bind(to_ms(now))
        .fetch_optional(&self.write)
        .await?;
        Ok(row.and_then(|r| subscription_from_row(r, now)))
    }

    /// Queues a delivery of an event that is not in the event log (a test event); whether
    /// the subscription is `partner`'s.
    pub async fn enqueue_test_event(
        &self,
        partner: Uuid,
        id: Uuid,
        event_id: &str,
        event_type: &str,
        payload: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO webhook_deliveries (subscription_id, event_id, event_type, payload, event_created_at,
               status, attempts, next_attempt_at, created_at, updated_at)
             SELECT id, ?3, ?4, ?5, ?6, 'PENDING', 0, ?6, ?6, ?6
             FROM webhook_subscriptions WHERE id = ?1 AND partner_id = ?2",
        )
        .bind(id.to_string())
        .bind(partner.to_string())
        .bind(event_id)
        .bind(event_type)
        .bind(payload)
        .bind(to_ms(now))
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Claims due deliveries for one attempt each: at most `limit` in all, and per
    /// subscription at most `per_subscription` minus what `in_flight` says it already has,
    /// so that a slow receiver cannot take every slot. Each claim holds until `lease_until`;
    /// its attempt is logged as `IN_PROGRESS` now, so that one cut off by a crash stays
    /// accounted for.
    pub async fn claim_deliveries(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: usize,
        per_subscription: usize,
        in_flight: &HashMap<String, usize>,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut tx = self.begin_write().await?;
        let rows: Vec<(String, String, String, String, i64, i64, i64)> = sqlx::query_as(
            "WITH busy AS (SELECT key AS s, value AS n FROM json_each(?4)),
             due AS (
               SELECT d.subscription_id AS s, d.event_id AS e, d.next_attempt_at AS t,
                 ROW_NUMBER() OVER (PARTITION BY d.subscription_id ORDER BY d.next_attempt_at, d.event_id) AS n
               FROM webhook_subscriptions sub
               JOIN webhook_deliveries d ON d.subscription_id = sub.id
                 AND d.status = 'PENDING' AND d.next_attempt_at <= ?1
               WHERE sub.paused = 0 AND sub.disabled_at IS NULL
                 AND sub.id NOT IN (SELECT s FROM busy WHERE n >= ?5)
             ),
             picked AS (
               SELECT s, e FROM due
               WHERE n + COALESCE((SELECT n FROM busy WHERE busy.s = due.s), 0) <= ?5
               ORDER BY t LIMIT ?3
             )
             UPDATE webhook_deliveries SET lease_owner = ?2, next_attempt_at = ?6,
               attempts = attempts + 1, updated_at = ?1
             WHERE (subscription_id, event_id) IN (SELECT s, e FROM picked)
             RETURNING subscription_id, event_id, event_type, payload, event_created_at, attempts, attempts - ladder_start",
        )
        .bind(to_ms(now))
        .bind(owner)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(encode(in_flight)?)
        .bind(i64::try_from(per_subscription).unwrap_or(i64::MAX))
        .bind(to_ms(lease_until))
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            tx.rollback().await?;
            return Ok(Vec::new());
        }
        let keys = encode(
            &rows
                .iter()
                .map(|(s, e, _, _, _, attempt, _)| (s, e, attempt))
                .collect::<Vec<_>>(),
        )?;
        sqlx::query(
            "UPDATE webhook_attempts SET outcome = 'FAILED', error_kind = 'INTERRUPTED', finished_at = ?2
             WHERE outcome = 'IN_PROGRESS' AND (subscription_id, event_id) IN
               (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?1))",
        )
        .bind(&keys)
        .bind(to_ms(now))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO webhook_attempts (subscription_id, event_id, attempt, started_at, outcome)
             SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), ?2, 'IN_PROGRESS'
             FROM json_each(?1)",
        )
        .bind(&keys)
        .bind(to_ms(now))
        .execute(&mut *tx)
        .await?;
        type Target = (String, String, String, Option<String>, Option<i64>);
        let subscriptions: Vec<Target> = sqlx::query_as(
            "SELECT id, target_url, secret, previous_secret, previous_secret_expires_at
                 FROM webhook_subscriptions
                 WHERE id IN (SELECT json_extract(value, '$[0]') FROM json_each(?1))",
        )
        .bind(&keys)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let targets: HashMap<String, (String, Vec<String>)> = subscriptions
            .into_iter()
            .map(|(id, url, secret, previous, expires)| {
                let mut secrets = vec![secret];
                if let (Some(previous), Some(expires)) = (previous, expires)
                    && from_ms(expires) > now
                {
                    secrets.push(previous);
                }
                (id, (url, secrets))
            })
            .collect();
        Ok(rows
            .into_iter()
            .filter_map(
                |(subscription_id, event_id, event_type, payload, created, attempt, step)| {
                    let (target_url, secrets) = targets.get(&subscription_id)?.clone();
                    Some(ClaimedDelivery {
                        subscription_id,
                        event_id,
                        event_type,
                        payload,
                        event_created_at: from_ms(created),
                        attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
                        ladder_step: u32::try_from(step).unwrap_or(u32::MAX),
                        target_url,
                        secrets,
                    })
                },
            )
            .collect())
    }

    /// Records how attempts ended, all in one transaction: the attempt rows, their
    /// deliveries (only where `owner` still holds the claim), and the subscriptions a 410
    /// disables (whose waiting deliveries then fail).
    pub async fn record_attempts(
        &self,
        owner: &str,
        records: &[AttemptRecord],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let rows = encode(
            &records
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "s": r.subscription_id, "e": r.event_id, "a": r.attempt,
                        "o": if r.succeeded { "SUCCEEDED" } else { "FAILED" },
                        "c": r.status_code, "l": r.latency_ms, "k": r.error_kind,
                        "x": r.response_excerpt, "n": r.next_attempt_at.map(to_ms),
                        "d": if r.succeeded { "SUCCEEDED" } else if r.next_attempt_at.is_some() { "PENDING" } else { "FAILED" },
                    })
                })
                .collect::<Vec<_>>(),
        )?;
        let gone = encode(
            &records
                .iter()
                .filter(|r| r.gone)
                .map(|r| &r.subscription_id)
                .collect::<Vec<_>>(),
        )?;
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE webhook_subscriptions SET disabled_at = ?2, disabled_reason = 'GONE', updated_at = ?2
             WHERE disabled_at IS NULL AND id IN (SELECT value FROM json_each(?1))",
        )
        .bind(&gone)
        .bind(to_ms(now))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE webhook_attempts SET outcome = r.o, finished_at = ?2, status_code = r.c,
               latency_ms = r.l, error_kind = r.k, response_excerpt = r.x, next_attempt_at = r.n
             FROM (SELECT json_extract(value, '$.s') AS s, json_extract(value, '$.e') AS e,
                     json_extract(value, '$.a') AS a, json_extract(value, '$.o') AS o,
                     json_extract(value, '$.c') AS c, json_extract(value, '$.l') AS l,
                     json_extract(value, '$.k') AS k, json_extract(value, '$.x') AS x,
                     json_extract(value, '$.n') AS n
                   FROM json_each(?1)) AS r
             WHERE webhook_attempts.subscription_id = r.s AND webhook_attempts.event_id = r.e
               AND webhook_attempts.attempt = r.a",
        )
        .bind(&rows)
        .bind(to_ms(now))
        .execute(&mut *tx)
        .await?;
        // A retry of a subscription that is disabled by now fails instead: a disabled
        // subscription keeps nothing waiting.
        sqlx::query(
            "UPDATE webhook_deliveries SET
               status = CASE WHEN r.d = 'PENDING' AND sub.disabled_at IS NOT NULL THEN 'FAILED' ELSE r.d END,
               next_attempt_at = CASE WHEN sub.disabled_at IS NOT NULL THEN NULL ELSE r.n END,
               lease_owner = NULL, updated_at = ?2
             FROM (SELECT json_extract(value, '$.s') AS s, json_extract(value, '$.e') AS e,
                     json_extract(value, '$.d') AS d, json_extract(value, '$.n') AS n
                   FROM json_each(?1)) AS r
             JOIN webhook_subscriptions sub ON sub.id = r.s
             WHERE webhook_deliveries.subscription_id = r.s AND webhook_deliveries.event_id = r.e
               AND webhook_deliveries.lease_owner = ?3",
        )
        .bind(&rows)
        .bind(to_ms(now))
        .bind(owner)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE webhook_deliveries SET status = 'FAILED', next_attempt_at = NULL, updated_at = ?2
             WHERE status = 'PENDING' AND lease_owner IS NULL
               AND subscription_id IN (SELECT value FROM json_each(?1))",
        )
        .bind(&gone)
        .bind(to_ms(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The attempt log of one of `partner`'s subscriptions, newest first, optionally of one
    /// event; `None` when the subscription is not `partner`'s. Returns the page and the
    /// cursor of the next one.
    pub async fn attempts(
        &self,
        partner: Uuid,
        id: Uuid,
        event_id: Option<&str>,
        after: Option<&AttemptCursor>,
        limit: u32,
    ) -> Result<Option<(Vec<Attempt>, Option<String>)>, StoreError> {
        if !owns(partner, id, &self.read).await? {
            return Ok(None);
        }
        type Row = (
            String,
            String,
            i64,
            i64,
            String,
            Option<i64>,
            Option<i64>,
            Option<String>,
            Option<String>,
            Option<i64>,
            String,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT a.event_id, d.event_type, a.attempt, a.started_at, a.outcome, a.status_code,
               a.latency_ms, a.error_kind, a.response_excerpt, a.next_attempt_at, d.status
             FROM webhook_attempts a
             JOIN webhook_deliveries d ON d.subscription_id = a.subscription_id AND d.event_id = a.event_id
             WHERE a.subscription_id = ?1 AND (?2 IS NULL OR a.event_id = ?2)
               AND (?3 IS NULL OR (a.started_at, a.attempt, a.event_id) < (?3, ?4, ?5))
             ORDER BY a.started_at DESC, a.attempt DESC, a.event_id DESC
             LIMIT ?6",
        )
        .bind(id.to_string())
        .bind(event_id)
        .bind(after.map(|c| c.started_at))
        .bind(after.map(|c| c.attempt))
        .bind(after.map(|c| c.event_id.as_str()))
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.read)
        .await?;
        let mut page: Vec<Attempt> = rows
            .into_iter()
            .map(
                |(
                    event_id,
                    event_type,
                    attempt,
                    started,
                    outcome,
                    code,
                    latency,
                    kind,
                    excerpt,
                    next,
                    status,
                )| {
                    Attempt {
                        event_id,
                        event_type,
                        attempt: u32::try_from(attempt).unwrap_or(0),
                        attempted_at: from_ms(started),
                        outcome: match outcome.as_str() {
                            "SUCCEEDED" => AttemptOutcome::Succeeded,
                            "FAILED" => AttemptOutcome::Failed,
                            _ => AttemptOutcome::InProgress,
                        },
                        status_code: code.and_then(|c| u16::try_from(c).ok()),
                        latency_ms: latency.and_then(|l| u64::try_from(l).ok()),
                        error_kind: kind,
                        response_excerpt: excerpt,
                        next_attempt_at: next.map(from_ms),
                        delivery_status: delivery_status(&status),
                    }
                },
            )
            .collect();
        let next = if page.len() > limit as usize {
            page.truncate(limit as usize);
            page.last().map(AttemptCursor::of)
        } else {
            None
        };
        Ok(Some((page, next)))
    }

    /// Makes one delivery due now, whatever its state. `None`: not `partner`'s
    /// subscription; `Some(false)`: no such event for it.
    pub async fn redeliver(
        &self,
        partner: Uuid,
        id: Uuid,
        event_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<bool>, StoreError> {
        let mut tx = self.begin_write().await?;
        if !owns(partner, id, &mut *tx).await? {
            return Ok(None);
        }
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET status = 'PENDING', next_attempt_at = ?3, lease_owner = NULL, updated_at = ?3,
               ladder_start = attempts
             WHERE subscription_id = ?1 AND event_id = ?2",
        )
        .bind(id.to_string())
        .bind(event_id)
        .bind(to_ms(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(done.rows_affected() == 1))
    }

    /// Makes every failed delivery of events since `since` due now; how many, or `None`
    /// when the subscription is not `partner`'s.
    pub async fn recover(
        &self,
        partner: Uuid,
        id: Uuid,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<u64>, StoreError> {
        let mut tx = self.begin_write().await?;
        if !owns(partner, id, &mut *tx).await? {
            return Ok(None);
        }
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET status = 'PENDING', next_attempt_at = ?3, lease_owner = NULL, updated_at = ?3,
               ladder_start = attempts
             WHERE subscription_id = ?1 AND status = 'FAILED' AND event_created_at >= ?2",
        )
        .bind(id.to_string())
        .bind(to_ms(since))
        .bind(to_ms(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(done.rows_affected()))
    }
}
