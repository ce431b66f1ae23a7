//! The delivery queue: test events, leased claims with their `IN_PROGRESS` attempts, the
//! recording of how attempts ended, and deliveries made due again by hand.
//!
//! On PostgreSQL several replicas claim from one queue at once, without a global lock: a
//! claim is one statement that locks the rows it takes `FOR UPDATE SKIP LOCKED` (a
//! concurrent claim passes over them instead of waiting) and moves their `next_attempt_at`
//! to the lease's end, so they are no longer due for anyone; a killed replica's claims come
//! due again when their lease ends. How an attempt ended is recorded on the delivery only
//! where the recorder still holds the lease (`lease_owner`): a replica that lost its lease
//! (it stalled past it, and another claimed the delivery) logs its attempt but leaves the
//! delivery to the new owner. Row locks are taken in one order everywhere — subscription,
//! deliveries, attempts — so claims, recordings and deletions do not deadlock.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::super::{Db, Deliveries, StoreError, json};
use super::{AttemptRecord, ClaimQuota, ClaimedDelivery, owns};
use crate::model::{from_ms, to_ms};

/// Runs `$body` with `$tx` bound to a write transaction that needs no serial lock: SQLite's
/// `BEGIN IMMEDIATE` (its one writer), or a plain PostgreSQL transaction (what the body does
/// is safe under read committed). The body commits; dropping the transaction rolls it back.
macro_rules! in_plain_tx {
    ($store:expr, |$tx:ident| $body:expr) => {
        match &$store.db {
            Db::Sqlite { .. } => {
                let mut $tx = $store.begin_write().await?;
                $body
            }
            Db::Postgres { .. } => {
                let mut $tx = $store.begin_pg().await?;
                $body
            }
        }
    };
}

/// PostgreSQL's claim, one statement (see [`Deliveries::claim`]). `$1` now, `$2` per
/// subscription, `$3` per partner, `$4` the limit, `$5`/`$6` and `$7`/`$8` what the claimer
/// has in flight per subscription and per partner, `$9` the owner, `$10` the lease's end.
///
/// The SQLite claim walks the due subscriptions in order and gives each
/// `min(its room, its partner's room left, the claim's room left)` of its oldest due rows.
/// Here the same greedy share is computed for all at once: each subscription's due rows are
/// counted up to its room (`offered`), cut to what its partner has left after the
/// subscriptions before it (`shared`), then to what the claim has left (`granted`), and only
/// then locked and taken. Only the first `partner room` subscriptions of a partner and the
/// first `limit` overall can receive anything (each due one has at least one due row), so
/// no more are counted. A row a concurrent claim holds is skipped, not waited for: this
/// claim then takes fewer (never another subscription's share). Within a subscription, rows
/// go by `next_attempt_at` in the due index's order (the index has no `event_id` to break
/// ties with, and a sort over a deep backlog would cost what the index saves; the event id
/// is random, so it ordered nothing anyway).
const CLAIM_PG: &str = "WITH busy_subscription AS (
  SELECT * FROM unnest($5::text[], $6::bigint[]) AS b(id, n)
), busy_partner AS (
  SELECT * FROM unnest($7::text[], $8::bigint[]) AS b(id, n)
), due AS (
  SELECT sub.id, sub.partner_id, oldest.due,
    LEAST($2 - COALESCE(bs.n, 0), $3 - COALESCE(bp.n, 0), $4) AS room,
    $3 - COALESCE(bp.n, 0) AS partner_room
  FROM webhook_subscriptions sub
  CROSS JOIN LATERAL (
    SELECT MIN(d.next_attempt_at) AS due FROM webhook_deliveries d
    WHERE d.subscription_id = sub.id AND d.status = 'PENDING') oldest
  LEFT JOIN busy_subscription bs ON bs.id = sub.id
  LEFT JOIN busy_partner bp ON bp.id = sub.partner_id
  WHERE sub.paused = 0 AND sub.disabled_at IS NULL AND oldest.due <= $1
), considered AS (
  SELECT id, partner_id, due, room, partner_room FROM (
    SELECT due.*, row_number() OVER (PARTITION BY partner_id ORDER BY due, id) AS nth
    FROM due WHERE room > 0) ranked
  WHERE nth <= partner_room
  ORDER BY due, id LIMIT $4
), offered AS MATERIALIZED (
  SELECT c.id, c.partner_id, c.due, c.partner_room,
    (SELECT COUNT(*) FROM (
       SELECT 1 FROM webhook_deliveries d
       WHERE d.subscription_id = c.id AND d.status = 'PENDING' AND d.next_attempt_at <= $1
       LIMIT c.room) capped) AS n
  FROM considered c
), shared AS (
  SELECT id, due, LEAST(n, GREATEST(partner_room - CAST(COALESCE(SUM(n) OVER (
      PARTITION BY partner_id ORDER BY due, id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS BIGINT), 0)) AS n
  FROM offered
), granted AS (
  SELECT id, due, LEAST(n, GREATEST($4 - CAST(COALESCE(SUM(n) OVER (
      ORDER BY due, id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS BIGINT), 0)) AS n
  FROM shared
), picked AS MATERIALIZED (
  SELECT g.id AS subscription_id, g.due, p.event_id, p.next_attempt_at
  FROM granted g
  CROSS JOIN LATERAL (
    SELECT d.event_id, d.next_attempt_at FROM webhook_deliveries d
    WHERE d.subscription_id = g.id AND d.status = 'PENDING' AND d.next_attempt_at <= $1
    ORDER BY d.next_attempt_at
    LIMIT g.n
    FOR UPDATE SKIP LOCKED) p
  WHERE g.n > 0
), claimed AS (
  UPDATE webhook_deliveries d SET lease_owner = $9, next_attempt_at = $10,
    attempts = d.attempts + 1, updated_at = $1
  FROM picked p
  WHERE d.subscription_id = p.subscription_id AND d.event_id = p.event_id
  RETURNING d.subscription_id, d.event_id, d.event_type, d.payload, d.event_created_at, d.attempts,
    d.attempts - d.ladder_start AS ladder_step, p.due, p.next_attempt_at AS was_due
), interrupted AS (
  UPDATE webhook_attempts a SET outcome = 'FAILED', error_kind = 'INTERRUPTED', finished_at = $1
  FROM claimed c
  WHERE a.subscription_id = c.subscription_id AND a.event_id = c.event_id AND a.outcome = 'IN_PROGRESS'
), started AS (
  INSERT INTO webhook_attempts (subscription_id, event_id, attempt, started_at, outcome)
  SELECT subscription_id, event_id, attempts, $1, 'IN_PROGRESS' FROM claimed
)
SELECT c.subscription_id, s.partner_id, c.event_id, c.event_type, c.payload, c.event_created_at,
  c.attempts, c.ladder_step, s.target_url, s.secret, s.previous_secret, s.previous_secret_expires_at
FROM claimed c JOIN webhook_subscriptions s ON s.id = c.subscription_id
ORDER BY c.due, c.subscription_id, c.was_due, c.event_id";

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
        let done = on_write!(self, |c| {
            sqlx::query(
                "INSERT INTO webhook_deliveries (subscription_id, event_id, event_type, payload, event_created_at,
                   status, attempts, next_attempt_at, created_at, updated_at)
                 SELECT id, $3, $4, $5, $6, 'PENDING', 0, $6, $6, $6
                 FROM webhook_subscriptions WHERE id = $1 AND partner_id = $2",
            )
            .bind(id.to_string())
            .bind(partner.to_string())
            .bind(event_id)
            .bind(event_type)
            .bind(payload)
            .bind(to_ms(now))
            .execute(c)
            .await?
            .rows_affected()
        });
        Ok(done == 1)
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
        match &self.db {
            Db::Sqlite { .. } => self.claim_sqlite(owner, now, lease_until, quota).await,
            Db::Postgres { pool } => {
                let claimed = claim_pg(pool, owner, now, lease_until, quota).await?;
                Ok(claimed.into_iter().map(|r| r.into_claimed(now)).collect())
            }
        }
    }

    /// SQLite's claim, under its one writer: one probe of the due index per active
    /// subscription, then one claim per subscription with room, then the attempts.
    async fn claim_sqlite(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        quota: ClaimQuota<'_>,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
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
             WHERE due <= $1 ORDER BY due",
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
                "UPDATE webhook_deliveries SET lease_owner = $2, next_attempt_at = $4,
                   attempts = attempts + 1, updated_at = $1
                 WHERE subscription_id = $3 AND event_id IN (
                   SELECT event_id FROM webhook_deliveries
                   WHERE subscription_id = $3 AND status = 'PENDING' AND next_attempt_at <= $1
                   ORDER BY next_attempt_at, event_id LIMIT $5)
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
            "UPDATE webhook_attempts SET outcome = 'FAILED', error_kind = 'INTERRUPTED', finished_at = $2
             WHERE outcome = 'IN_PROGRESS' AND (subscription_id, event_id) IN
               (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each($1))",
        )
        .bind(&keys)
        .bind(to_ms(now))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO webhook_attempts (subscription_id, event_id, attempt, started_at, outcome)
             SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), $2, 'IN_PROGRESS'
             FROM json_each($1)",
        )
        .bind(&keys)
        .bind(to_ms(now))
        .execute(&mut *tx)
        .await?;
        let subscriptions: Vec<TargetRow> = sqlx::query_as(
            "SELECT id, partner_id, target_url, secret, previous_secret, previous_secret_expires_at
                 FROM webhook_subscriptions
                 WHERE id IN (SELECT json_extract(value, '$[0]') FROM json_each($1))",
        )
        .bind(&keys)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let targets: HashMap<String, (String, String, Vec<String>)> = subscriptions
            .into_iter()
            .map(|t| {
                let secrets = secrets_of(
                    t.secret,
                    t.previous_secret,
                    t.previous_secret_expires_at,
                    now,
                );
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
        match &self.db {
            Db::Sqlite { .. } => self.record_sqlite(owner, records, now).await,
            Db::Postgres { .. } => self.record_pg(owner, records, now).await,
        }
    }

    /// SQLite's recording: the rows as JSON, read with `json_each`, in one transaction.
    async fn record_sqlite(
        &self,
        owner: &str,
        records: &[AttemptRecord],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
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
            "UPDATE webhook_subscriptions SET disabled_at = $2, disabled_reason = 'GONE', updated_at = $2
             WHERE disabled_at IS NULL AND id IN (SELECT value FROM json_each($1))",
        )
        .bind(&gone)
        .bind(to_ms(now))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE webhook_attempts SET outcome = r.o, finished_at = $2, status_code = r.c,
               latency_ms = r.l, error_kind = r.k, response_excerpt = r.x, next_attempt_at = r.n
             FROM (SELECT json_extract(value, '$.s') AS s, json_extract(value, '$.e') AS e,
                     json_extract(value, '$.a') AS a, json_extract(value, '$.o') AS o,
                     json_extract(value, '$.c') AS c, json_extract(value, '$.l') AS l,
                     json_extract(value, '$.k') AS k, json_extract(value, '$.x') AS x,
                     json_extract(value, '$.n') AS n
                   FROM json_each($1)) AS r
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
               lease_owner = NULL, updated_at = $2
             FROM (SELECT json_extract(value, '$.s') AS s, json_extract(value, '$.e') AS e,
                     json_extract(value, '$.d') AS d, json_extract(value, '$.n') AS n
                   FROM json_each($1)) AS r
             JOIN webhook_subscriptions sub ON sub.id = r.s
             WHERE webhook_deliveries.subscription_id = r.s AND webhook_deliveries.event_id = r.e
               AND webhook_deliveries.lease_owner = $3",
        )
        .bind(&rows)
        .bind(to_ms(now))
        .bind(owner)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE webhook_deliveries SET status = 'FAILED', next_attempt_at = NULL, updated_at = $2
             WHERE status = 'PENDING' AND lease_owner IS NULL
               AND subscription_id IN (SELECT value FROM json_each($1))",
        )
        .bind(&gone)
        .bind(to_ms(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// PostgreSQL's recording: the rows as arrays, read with `unnest`. Usually one statement
    /// (the deliveries, then the attempts); when a 410 disables subscriptions, a transaction
    /// that disables them first, so the retries of theirs being recorded fail instead, and
    /// fails what they have waiting last.
    async fn record_pg(
        &self,
        owner: &str,
        records: &[AttemptRecord],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let n = records.len();
        let mut subscription = Vec::with_capacity(n);
        let mut event = Vec::with_capacity(n);
        let mut attempt = Vec::with_capacity(n);
        let mut outcome = Vec::with_capacity(n);
        let mut status_code = Vec::with_capacity(n);
        let mut latency = Vec::with_capacity(n);
        let mut error_kind = Vec::with_capacity(n);
        let mut excerpt = Vec::with_capacity(n);
        let mut next = Vec::with_capacity(n);
        let mut status = Vec::with_capacity(n);
        for r in records {
            subscription.push(r.subscription_id.as_str());
            event.push(r.event_id.as_str());
            attempt.push(i64::from(r.attempt));
            outcome.push(if r.succeeded { "SUCCEEDED" } else { "FAILED" });
            status_code.push(r.status_code.map(i64::from));
            latency.push(i64::try_from(r.latency_ms).unwrap_or(i64::MAX));
            error_kind.push(r.error_kind);
            excerpt.push(r.response_excerpt.as_deref());
            next.push(r.next_attempt_at.map(to_ms));
            status.push(if r.succeeded {
                "SUCCEEDED"
            } else if r.next_attempt_at.is_some() {
                "PENDING"
            } else {
                "FAILED"
            });
        }
        let gone: Vec<&str> = records
            .iter()
            .filter(|r| r.gone)
            .map(|r| r.subscription_id.as_str())
            .collect();
        // The deliveries (where `owner` still holds the lease; a retry of a subscription
        // that is disabled by now fails instead: a disabled subscription keeps nothing
        // waiting), then the attempts (the CTE that the main statement does not read runs
        // after it), in the lock order of a claim.
        let record = sqlx::query(
            "WITH r AS (
               SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::bigint[],
                 $6::bigint[], $7::text[], $8::text[], $9::bigint[], $10::text[])
                 AS r(s, e, a, o, c, l, k, x, n, d)
             ), logged AS (
               UPDATE webhook_attempts SET outcome = r.o, finished_at = $11, status_code = r.c,
                 latency_ms = r.l, error_kind = r.k, response_excerpt = r.x, next_attempt_at = r.n
               FROM r
               WHERE webhook_attempts.subscription_id = r.s AND webhook_attempts.event_id = r.e
                 AND webhook_attempts.attempt = r.a
             )
             UPDATE webhook_deliveries SET
               status = CASE WHEN r.d = 'PENDING' AND sub.disabled_at IS NOT NULL THEN 'FAILED' ELSE r.d END,
               next_attempt_at = CASE WHEN sub.disabled_at IS NOT NULL THEN NULL ELSE r.n END,
               lease_owner = NULL, updated_at = $11
             FROM r JOIN webhook_subscriptions sub ON sub.id = r.s
             WHERE webhook_deliveries.subscription_id = r.s AND webhook_deliveries.event_id = r.e
               AND webhook_deliveries.lease_owner = $12",
        )
        .bind(&subscription)
        .bind(&event)
        .bind(&attempt)
        .bind(&outcome)
        .bind(&status_code)
        .bind(&latency)
        .bind(&error_kind)
        .bind(&excerpt)
        .bind(&next)
        .bind(&status)
        .bind(to_ms(now))
        .bind(owner);
        if gone.is_empty() {
            let Db::Postgres { pool } = &self.db else {
                unreachable!("record_pg runs on PostgreSQL")
            };
            record.execute(pool).await?;
            return Ok(());
        }
        let mut tx = self.begin_pg().await?;
        sqlx::query(
            "UPDATE webhook_subscriptions SET disabled_at = $2, disabled_reason = 'GONE', updated_at = $2
             WHERE disabled_at IS NULL AND id = ANY($1)",
        )
        .bind(&gone)
        .bind(to_ms(now))
        .execute(&mut *tx)
        .await?;
        record.execute(&mut *tx).await?;
        sqlx::query(
            "UPDATE webhook_deliveries SET status = 'FAILED', next_attempt_at = NULL, updated_at = $2
             WHERE status = 'PENDING' AND lease_owner IS NULL AND subscription_id = ANY($1)",
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
        // No serial lock on PostgreSQL: were the subscription deleted between the check and
        // the update, the update finds nothing, which is what a missing event reads like.
        let done = in_plain_tx!(self, |tx| {
            if !owns(partner, id, &mut *tx).await? {
                return Ok(None);
            }
            let done = sqlx::query(
                "UPDATE webhook_deliveries SET status = 'PENDING', next_attempt_at = $3, lease_owner = NULL, updated_at = $3,
                   ladder_start = attempts
                 WHERE subscription_id = $1 AND event_id = $2",
            )
            .bind(id.to_string())
            .bind(event_id)
            .bind(to_ms(now))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            done
        });
        Ok(Some(done == 1))
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
        let done = in_plain_tx!(self, |tx| {
            if !owns(partner, id, &mut *tx).await? {
                return Ok(None);
            }
            let done = sqlx::query(
                "UPDATE webhook_deliveries SET status = 'PENDING', next_attempt_at = $3, lease_owner = NULL, updated_at = $3,
                   ladder_start = attempts
                 WHERE subscription_id = $1 AND status = 'FAILED' AND event_created_at >= $2",
            )
            .bind(id.to_string())
            .bind(to_ms(since))
            .bind(to_ms(now))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            done
        });
        Ok(Some(done))
    }
}

/// The secrets that sign a delivery now, newest first: the subscription's, and the one it
/// replaced while that still signs.
fn secrets_of(
    secret: String,
    previous: Option<String>,
    previous_expires_at: Option<i64>,
    now: DateTime<Utc>,
) -> Vec<String> {
    let mut secrets = vec![secret];
    if let (Some(previous), Some(expires)) = (previous, previous_expires_at)
        && from_ms(expires) > now
    {
        secrets.push(previous);
    }
    secrets
}

/// One delivery PostgreSQL's claim took, with its subscription's target and secrets.
#[derive(sqlx::FromRow)]
struct ClaimedRow {
    subscription_id: String,
    partner_id: String,
    event_id: String,
    event_type: String,
    payload: String,
    event_created_at: i64,
    attempts: i64,
    ladder_step: i64,
    target_url: String,
    secret: String,
    previous_secret: Option<String>,
    previous_secret_expires_at: Option<i64>,
}

impl ClaimedRow {
    fn into_claimed(self, now: DateTime<Utc>) -> ClaimedDelivery {
        ClaimedDelivery {
            secrets: secrets_of(
                self.secret,
                self.previous_secret,
                self.previous_secret_expires_at,
                now,
            ),
            subscription_id: self.subscription_id,
            partner_id: self.partner_id,
            event_id: self.event_id,
            event_type: self.event_type,
            payload: self.payload,
            event_created_at: from_ms(self.event_created_at),
            attempt: u32::try_from(self.attempts).unwrap_or(u32::MAX),
            ladder_step: u32::try_from(self.ladder_step).unwrap_or(u32::MAX),
            target_url: self.target_url,
        }
    }
}

/// PostgreSQL's claim ([`CLAIM_PG`]): one statement, in a transaction of its own.
async fn claim_pg(
    pool: &sqlx::PgPool,
    owner: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    quota: ClaimQuota<'_>,
) -> Result<Vec<ClaimedRow>, StoreError> {
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let (busy_subscriptions, busy_subscription_counts): (Vec<&str>, Vec<i64>) = quota
        .in_flight
        .subscriptions
        .iter()
        .map(|(id, n)| (id.as_str(), count(*n)))
        .unzip();
    let (busy_partners, busy_partner_counts): (Vec<&str>, Vec<i64>) = quota
        .in_flight
        .partners
        .iter()
        .map(|(id, n)| (id.as_str(), count(*n)))
        .unzip();
    Ok(sqlx::query_as(CLAIM_PG)
        .bind(to_ms(now))
        .bind(count(quota.per_subscription))
        .bind(count(quota.per_partner))
        .bind(count(quota.limit))
        .bind(&busy_subscriptions)
        .bind(&busy_subscription_counts)
        .bind(&busy_partners)
        .bind(&busy_partner_counts)
        .bind(owner)
        .bind(to_ms(lease_until))
        .fetch_all(pool)
        .await?)
}
