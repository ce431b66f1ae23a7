//! The delivery queue: test events, leased claims with their `IN_PROGRESS` attempts, the
//! recording of how attempts ended, and deliveries made due again by hand.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::super::{Deliveries, StoreError, json};
use super::{AttemptRecord, ClaimQuota, ClaimedDelivery, owns};
use crate::model::{from_ms, to_ms};

#[derive(sqlx::FromRow)]
struct ClaimRow {
    subscription_id: String,
    event_id: String,
    event_type: String,
    payload: String,
    event_created_at: i64,
    attempts: i64,
    ladder_step: i64,
}

#[derive(sqlx::FromRow)]
struct TargetRow {
    id: String,
    partner_id: String,
    target_url: String,
    secret: String,
    previous_secret: Option<String>,
    previous_secret_expires_at: Option<i64>,
}

impl Deliveries<'_> {
    /// Queues a delivery of an event that is not in the event log (a test event); whether
    /// the subscription is `partner`'s.
    pub async fn enqueue_test(
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

    /// Claims due deliveries for one attempt each: at most `quota.limit` in all, and per
    /// subscription and per partner at most their share minus what the claimer has in
    /// flight for them already — so that a slow receiver, or one partner's many slow
    /// receivers, cannot take every slot. Each claim holds until `lease_until`; its attempt
    /// is logged as `IN_PROGRESS` now, so that one cut off by a crash stays accounted for.
    /// Its cost does not grow with the backlog: one probe of the due index per active
    /// subscription with something due (the longest-waiting first), then one claim of the
    /// oldest due rows of each that has room, read off the same index.
    pub async fn claim(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        quota: ClaimQuota<'_>,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        if quota.limit == 0 {
            return Ok(Vec::new());
        }
        let mut tx = self.begin_write().await?;
        // The active subscriptions with something due, the longest-waiting first: one probe
        // of the due index each (its oldest row), whatever the backlog behind it.
        let subscriptions: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, partner_id FROM (
               SELECT sub.id, sub.partner_id,
                 (SELECT MIN(d.next_attempt_at) FROM webhook_deliveries d
                  WHERE d.subscription_id = sub.id AND d.status = 'PENDING') AS due
               FROM webhook_subscriptions sub
               WHERE sub.paused = 0 AND sub.disabled_at IS NULL)
             WHERE due <= ?1 ORDER BY due",
        )
        .bind(to_ms(now))
        .fetch_all(&mut *tx)
        .await?;
        let mut left = quota.limit;
        let mut taken_by_partner: HashMap<&str, usize> = HashMap::new();
        let mut rows: Vec<ClaimRow> = Vec::new();
        for (subscription, partner) in &subscriptions {
            let busy = |map: &HashMap<String, usize>, key: &str| map.get(key).copied().unwrap_or(0);
            let taken = taken_by_partner.get(partner.as_str()).copied().unwrap_or(0);
            let room = quota
                .per_subscription
                .saturating_sub(busy(&quota.in_flight.subscriptions, subscription))
                .min(
                    quota
                        .per_partner
                        .saturating_sub(busy(&quota.in_flight.partners, partner) + taken),
                )
                .min(left);
            if room == 0 {
                continue;
            }
            // Its `room` oldest due deliveries, read off the due index in order.
            let claimed: Vec<ClaimRow> = sqlx::query_as(
                "UPDATE webhook_deliveries SET lease_owner = ?2, next_attempt_at = ?4,
                   attempts = attempts + 1, updated_at = ?1
                 WHERE subscription_id = ?3 AND event_id IN (
                   SELECT event_id FROM webhook_deliveries
                   WHERE subscription_id = ?3 AND status = 'PENDING' AND next_attempt_at <= ?1
                   ORDER BY next_attempt_at, event_id LIMIT ?5)
                 RETURNING subscription_id, event_id, event_type, payload, event_created_at, attempts,
                   attempts - ladder_start AS ladder_step",
            )
            .bind(to_ms(now))
            .bind(owner)
            .bind(subscription)
            .bind(to_ms(lease_until))
            .bind(i64::try_from(room).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await?;
            left -= claimed.len().min(left);
            *taken_by_partner.entry(partner.as_str()).or_default() += claimed.len();
            rows.extend(claimed);
            if left == 0 {
                break;
            }
        }
        if rows.is_empty() {
            tx.rollback().await?;
            return Ok(Vec::new());
        }
        let keys = json(
            &rows
                .iter()
                .map(|r| (&r.subscription_id, &r.event_id, r.attempts))
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
        let subscriptions: Vec<TargetRow> = sqlx::query_as(
            "SELECT id, partner_id, target_url, secret, previous_secret, previous_secret_expires_at
                 FROM webhook_subscriptions
                 WHERE id IN (SELECT json_extract(value, '$[0]') FROM json_each(?1))",
        )
        .bind(&keys)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let targets: HashMap<String, (String, String, Vec<String>)> = subscriptions
            .into_iter()
            .map(|t| {
                let mut secrets = vec![t.secret];
                if let (Some(previous), Some(expires)) =
                    (t.previous_secret, t.previous_secret_expires_at)
                    && from_ms(expires) > now
                {
                    secrets.push(previous);
                }
                (t.id, (t.partner_id, t.target_url, secrets))
            })
            .collect();
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let (partner_id, target_url, secrets) = targets.get(&r.subscription_id)?.clone();
                Some(ClaimedDelivery {
                    subscription_id: r.subscription_id,
                    partner_id,
                    event_id: r.event_id,
                    event_type: r.event_type,
                    payload: r.payload,
                    event_created_at: from_ms(r.event_created_at),
                    attempt: u32::try_from(r.attempts).unwrap_or(u32::MAX),
                    ladder_step: u32::try_from(r.ladder_step).unwrap_or(u32::MAX),
                    target_url,
                    secrets,
                })
            })
            .collect())
    }

    /// Records how attempts ended, all in one transaction: the attempt rows, their
    /// deliveries (only where `owner` still holds the claim), and the subscriptions a 410
    /// disables (whose waiting deliveries then fail).
    pub async fn record(
        &self,
        owner: &str,
        records: &[AttemptRecord],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let rows = json(
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
        let gone = json(
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
