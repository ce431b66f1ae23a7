//! Webhook subscriptions: a partner's targets, their event types, secrets and state.

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use super::super::{Db, StoreError, Subscriptions, json, new_id};
use super::{SubscriptionChange, owns};
use crate::model::webhooks::{Subscription, SubscriptionStatus};
use crate::model::{from_ms, to_ms};

#[derive(sqlx::FromRow)]
struct SubscriptionRow {
    id: String,
    target_url: String,
    event_types: String,
    paused: i64,
    disabled_at: Option<i64>,
    disabled_reason: Option<String>,
    previous_secret_expires_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

const SUBSCRIPTION_COLUMNS: &str = "id, target_url, event_types, paused, disabled_at, disabled_reason, previous_secret_expires_at, created_at, updated_at";

impl SubscriptionRow {
    fn into_subscription(self, now: DateTime<Utc>) -> Option<Subscription> {
        Some(Subscription {
            subscription_id: Uuid::parse_str(&self.id).ok()?,
            target_url: self.target_url,
            event_types: serde_json::from_str(&self.event_types).ok()?,
            status: if self.disabled_at.is_some() {
                SubscriptionStatus::Disabled
            } else if self.paused != 0 {
                SubscriptionStatus::Paused
            } else {
                SubscriptionStatus::Active
            },
            disabled_reason: self.disabled_reason,
            previous_secret_expires_at: self
                .previous_secret_expires_at
                .map(from_ms)
                .filter(|at| *at > now),
            created_at: from_ms(self.created_at),
            updated_at: from_ms(self.updated_at),
        })
    }
}

impl Subscriptions<'_> {
    /// A new active subscription, unless `partner` holds `cap` already (then `None`).
    pub async fn create(
        &self,
        partner: Uuid,
        target_url: &str,
        event_types: &[String],
        secret: &str,
        now: DateTime<Utc>,
        cap: u32,
    ) -> Result<Option<Subscription>, StoreError> {
        let id = new_id();
        let types = json(&event_types)?;
        // The count and the insert are one statement, so concurrent creations cannot pass
        // the cap together: on SQLite's one writer by itself; on PostgreSQL under the serial
        // lock (under read committed, two creations could each count the other's out).
        let inserted = in_tx!(self, |tx| {
            let inserted = sqlx::query(
                "INSERT INTO webhook_subscriptions (id, partner_id, target_url, event_types, secret, created_at, updated_at)
                 SELECT $1, $2, $3, $4, $5, $6, $6
                 WHERE (SELECT COUNT(*) FROM webhook_subscriptions WHERE partner_id = $2) < $7",
            )
            .bind(id.to_string())
            .bind(partner.to_string())
            .bind(target_url)
            .bind(&types)
            .bind(secret)
            .bind(to_ms(now))
            .bind(i64::from(cap))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            inserted
        });
        if inserted == 0 {
            return Ok(None);
        }
        Ok(Some(Subscription {
            subscription_id: id,
            target_url: target_url.to_owned(),
            event_types: event_types.to_vec(),
            status: SubscriptionStatus::Active,
            disabled_reason: None,
            previous_secret_expires_at: None,
            created_at: now,
            updated_at: now,
        }))
    }

    /// `partner`'s subscriptions, oldest first.
    pub async fn list(
        &self,
        partner: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Vec<Subscription>, StoreError> {
        let sql = format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions WHERE partner_id = $1 ORDER BY created_at, id"
        );
        let rows: Vec<SubscriptionRow> = on_read!(self, |c| {
            sqlx::query_as(&sql)
                .bind(partner.to_string())
                .fetch_all(c)
                .await?
        });
        Ok(rows
            .into_iter()
            .filter_map(|r| r.into_subscription(now))
            .collect())
    }

    /// One of `partner`'s subscriptions.
    pub async fn get(
        &self,
        partner: Uuid,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<Subscription>, StoreError> {
        let sql = format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions WHERE id = $1 AND partner_id = $2"
        );
        let row: Option<SubscriptionRow> = on_read!(self, |c| {
            sqlx::query_as(&sql)
                .bind(id.to_string())
                .bind(partner.to_string())
                .fetch_optional(c)
                .await?
        });
        Ok(row.and_then(|r| r.into_subscription(now)))
    }

    /// Applies `change`; `None` when the subscription is not `partner`'s.
    pub async fn update(
        &self,
        partner: Uuid,
        id: Uuid,
        change: &SubscriptionChange,
        now: DateTime<Utc>,
    ) -> Result<Option<Subscription>, StoreError> {
        let types = change.event_types.as_ref().map(json).transpose()?;
        let sql = format!(
            "UPDATE webhook_subscriptions SET
               target_url = COALESCE($3, target_url),
               event_types = COALESCE($4, event_types),
               paused = COALESCE($5, paused),
               disabled_at = CASE WHEN $5 = 0 THEN NULL ELSE disabled_at END,
               disabled_reason = CASE WHEN $5 = 0 THEN NULL ELSE disabled_reason END,
               updated_at = $6
             WHERE id = $1 AND partner_id = $2
             RETURNING {SUBSCRIPTION_COLUMNS}"
        );
        let row: Option<SubscriptionRow> = on_write!(self, |c| {
            sqlx::query_as(&sql)
                .bind(id.to_string())
                .bind(partner.to_string())
                .bind(change.target_url.as_deref())
                .bind(types.as_deref())
                .bind(change.paused.map(i64::from))
                .bind(to_ms(now))
                .fetch_optional(c)
                .await?
        });
        Ok(row.and_then(|r| r.into_subscription(now)))
    }

    /// Deletes a subscription with its deliveries and attempts; whether it existed.
    pub async fn delete(&self, partner: Uuid, id: Uuid) -> Result<bool, StoreError> {
        match &self.db {
            Db::Sqlite { .. } => {
                let mut tx = self.begin_write().await?;
                if !owns(partner, id, &mut *tx).await? {
                    return Ok(false);
                }
                for sql in [
                    "DELETE FROM webhook_attempts WHERE subscription_id = $1",
                    "DELETE FROM webhook_deliveries WHERE subscription_id = $1",
                    "DELETE FROM webhook_subscriptions WHERE id = $1",
                ] {
                    sqlx::query(sql)
                        .bind(id.to_string())
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(true)
            }
            // One statement: the schema's cascades take the deliveries and their attempts.
            // It locks the subscription, then its deliveries, then their attempts: the order
            // in which a claim (deliveries, attempts) and a recording (subscription,
            // deliveries, attempts) lock them too, so none of them deadlock.
            Db::Postgres { pool } => {
                let deleted = sqlx::query(
                    "DELETE FROM webhook_subscriptions WHERE id = $1 AND partner_id = $2",
                )
                .bind(id.to_string())
                .bind(partner.to_string())
                .execute(pool)
                .await?
                .rows_affected();
                Ok(deleted == 1)
            }
        }
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
        let sql = format!(
            "UPDATE webhook_subscriptions SET previous_secret = secret, secret = $3,
               previous_secret_expires_at = $4, updated_at = $5
             WHERE id = $1 AND partner_id = $2
             RETURNING {SUBSCRIPTION_COLUMNS}"
        );
        let row: Option<SubscriptionRow> = on_write!(self, |c| {
            sqlx::query_as(&sql)
                .bind(id.to_string())
                .bind(partner.to_string())
                .bind(secret)
                .bind(to_ms(now + overlap))
                .bind(to_ms(now))
                .fetch_optional(c)
                .await?
        });
        Ok(row.and_then(|r| r.into_subscription(now)))
    }
}
