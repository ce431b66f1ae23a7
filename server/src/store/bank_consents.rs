//! Users' consents at banks and their sealed OAuth tokens. This module sees the tokens only
//! sealed; the connector opens them when it fetches.

use chrono::{DateTime, Utc};

use super::{BankConsents, StoreError};
use crate::model::{from_ms, to_ms};

/// A consent's tokens, sealed.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedTokens {
    /// The access token, sealed.
    pub access_token: String,
    /// When the access token stops working.
    pub access_expires_at: DateTime<Utc>,
    /// The refresh token, sealed, if the bank gave one.
    pub refresh_token: Option<String>,
}

impl std::fmt::Debug for SealedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedTokens")
            .field("access_expires_at", &self.access_expires_at)
            .finish_non_exhaustive()
    }
}

/// A user's consent at a bank.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BankConsent {
    /// The bank.
    pub bank_id: String,
    /// The bank's id for the consent.
    pub bank_consent_id: String,
    /// Whose.
    pub user_id: String,
    /// Its tokens.
    pub tokens: SealedTokens,
    /// When the consent ends at the bank.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it ended early (revoked, refused), if it did.
    pub ended_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct Row {
    bank_id: String,
    bank_consent_id: String,
    user_id: String,
    access_token: String,
    access_expires_at: i64,
    refresh_token: Option<String>,
    expires_at: Option<i64>,
    ended_at: Option<i64>,
}

impl From<Row> for BankConsent {
    fn from(r: Row) -> Self {
        Self {
            bank_id: r.bank_id,
            bank_consent_id: r.bank_consent_id,
            user_id: r.user_id,
            tokens: SealedTokens {
                access_token: r.access_token,
                access_expires_at: from_ms(r.access_expires_at),
                refresh_token: r.refresh_token,
            },
            expires_at: r.expires_at.map(from_ms),
            ended_at: r.ended_at.map(from_ms),
        }
    }
}

/// The ids of the accounts linked to consent `bank_consent_id` at `bank_id`, on either
/// backend (a transaction's connection, or a reader's).
async fn linked_accounts(
    conn: impl Into<super::Conn<'_>>,
    bank_id: &str,
    bank_consent_id: &str,
) -> Result<Vec<String>, StoreError> {
    let rows: Vec<(String,)> = on_conn!(conn.into(), |c| {
        sqlx::query_as(
            "SELECT id FROM accounts WHERE bank_id = $1 AND bank_consent_id = $2 ORDER BY id",
        )
        .bind(bank_id)
        .bind(bank_consent_id)
        .fetch_all(c)
        .await?
    });
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// The partner whose user `user_id` is, inside the caller's transaction.
async fn partner_of(conn: impl Into<super::Conn<'_>>, user_id: &str) -> Result<String, StoreError> {
    let (partner_id,): (String,) = on_conn!(conn.into(), |c| {
        sqlx::query_as("SELECT partner_id FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_one(c)
            .await?
    });
    Ok(partner_id)
}

/// An event to append, once the transaction's row writes are done: (partner, type, payload).
type PendingEvent = (String, &'static str, serde_json::Value);

impl BankConsents<'_> {
    /// Stores (or replaces, on a renewal) a consent and its tokens: one upsert, atomic on
    /// both backends.
    pub async fn save(&self, consent: &BankConsent, now: DateTime<Utc>) -> Result<(), StoreError> {
        on_write!(self, |c| {
            sqlx::query(
                "INSERT INTO bank_consents (bank_id, bank_consent_id, user_id, access_token, access_expires_at,
               refresh_token, expires_at, ended_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8, $8)
             ON CONFLICT (bank_id, bank_consent_id) DO UPDATE SET access_token = excluded.access_token,
               access_expires_at = excluded.access_expires_at, refresh_token = excluded.refresh_token,
               expires_at = excluded.expires_at, ended_at = NULL, updated_at = excluded.updated_at",
            )
            .bind(&consent.bank_id)
            .bind(&consent.bank_consent_id)
            .bind(&consent.user_id)
            .bind(&consent.tokens.access_token)
            .bind(to_ms(consent.tokens.access_expires_at))
            .bind(&consent.tokens.refresh_token)
            .bind(consent.expires_at.map(to_ms))
            .bind(to_ms(now))
            .execute(c)
            .await?;
        });
        Ok(())
    }

    /// The consent `bank_consent_id` at `bank_id`.
    pub async fn get(
        &self,
        bank_id: &str,
        bank_consent_id: &str,
    ) -> Result<Option<BankConsent>, StoreError> {
        let row: Option<Row> = on_read!(self, |c| {
            sqlx::query_as(
                "SELECT bank_id, bank_consent_id, user_id, access_token, access_expires_at, refresh_token,
               expires_at, ended_at FROM bank_consents WHERE bank_id = $1 AND bank_consent_id = $2",
            )
            .bind(bank_id)
            .bind(bank_consent_id)
            .fetch_optional(c)
            .await?
        });
        Ok(row.map(BankConsent::from))
    }

    /// New tokens after a refresh (the refresh token too when the bank rotated it).
    pub async fn refreshed(
        &self,
        bank_id: &str,
        bank_consent_id: &str,
        tokens: &SealedTokens,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_write!(self, |c| {
            sqlx::query(
                "UPDATE bank_consents SET access_token = $3, access_expires_at = $4,
               refresh_token = COALESCE($5, refresh_token), updated_at = $6
             WHERE bank_id = $1 AND bank_consent_id = $2",
            )
            .bind(bank_id)
            .bind(bank_consent_id)
            .bind(&tokens.access_token)
            .bind(to_ms(tokens.access_expires_at))
            .bind(&tokens.refresh_token)
            .bind(to_ms(now))
            .execute(c)
            .await?;
        });
        Ok(())
    }

    /// The consent ended now — the bank refused its refresh token or revoked it
    /// (`BANK_REVOKED`), or the user unlinked it (`USER_UNLINKED`): the accounts linked to
    /// it are `EXPIRED`, and `v1.consent.revoked` is appended once (a consent already ended
    /// changes nothing), in one transaction. Returns whether it ended now.
    ///
    /// "Once" is the conditional `UPDATE … WHERE ended_at IS NULL RETURNING` (on PostgreSQL
    /// a concurrent second one waits for the row, then finds it ended). The transaction is
    /// still a serial one (`in_tx!`), so that it never meets [`Self::renewed`] moving the same
    /// accounts in the opposite lock order; consents end rarely.
    pub async fn ended(
        &self,
        bank_id: &str,
        bank_consent_id: &str,
        now: DateTime<Utc>,
        reason: &str,
    ) -> Result<bool, StoreError> {
        in_tx!(self, |tx| {
            let ended: Option<(String, Option<i64>)> = sqlx::query_as(
                "UPDATE bank_consents SET ended_at = $3, updated_at = $3
             WHERE bank_id = $1 AND bank_consent_id = $2 AND ended_at IS NULL
             RETURNING user_id, expires_at",
            )
            .bind(bank_id)
            .bind(bank_consent_id)
            .bind(to_ms(now))
            .fetch_optional(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE accounts SET consent_status = 'EXPIRED' WHERE bank_id = $1 AND bank_consent_id = $2",
            )
            .bind(bank_id)
            .bind(bank_consent_id)
            .execute(&mut *tx)
            .await?;
            let Some((user_id, expires_at)) = ended else {
                tx.commit().await?;
                return Ok(false);
            };
            let partner_id = partner_of(&mut *tx, &user_id).await?;
            let accounts = linked_accounts(&mut *tx, bank_id, bank_consent_id).await?;
            let mut payload = serde_json::json!({
                "userId": user_id,
                "bankId": bank_id,
                "accountIds": accounts,
                "reason": reason,
            });
            if let Some(ends) = expires_at {
                payload["consentExpiresAt"] =
                    serde_json::json!(freshet_rules::format_timestamp(from_ms(ends)));
            }
            super::events::insert(&mut tx, &partner_id, "v1.consent.revoked", &payload, now)
                .await?;
            tx.commit().await?;
        });
        self.events_committed();
        Ok(true)
    }

    /// Consent `old` was renewed by consent `new` at the same bank: the accounts of `old`
    /// that the bank lists under `new` (by the bank's account id, with their balances now)
    /// move to it — `ACTIVE`, ending at `expires_at` —, `old` ends without a revocation, and
    /// `v1.consent.renewed` is appended, in one transaction. Returns the bank account ids of
    /// the accounts that moved. A serial transaction on both backends (`in_tx!`): each move
    /// re-checks the account's consent, and nothing else moves them meanwhile.
    pub async fn renewed(
        &self,
        bank_id: &str,
        old: &str,
        new: &str,
        expires_at: Option<DateTime<Utc>>,
        at_bank: &[(String, String)],
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        let moved = in_tx!(self, |tx| {
            let mut moved = Vec::new();
            let mut moved_ids = Vec::new();
            for (bank_account_id, balance) in at_bank {
                let account: Option<(String,)> = sqlx::query_as(
                    "UPDATE accounts SET bank_consent_id = $3, consent_status = 'ACTIVE', consent_expires_at = $4, balance = $5
                 WHERE bank_id = $1 AND bank_consent_id = $2 AND bank_account_id = $6 RETURNING id",
                )
                .bind(bank_id)
                .bind(old)
                .bind(new)
                .bind(expires_at.map(to_ms))
                .bind(balance)
                .bind(bank_account_id)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some((id,)) = account {
                    moved.push(bank_account_id.clone());
                    moved_ids.push(id);
                }
            }
            let user: Option<(String,)> = sqlx::query_as(
                "UPDATE bank_consents SET ended_at = COALESCE(ended_at, $3), updated_at = $3
             WHERE bank_id = $1 AND bank_consent_id = $2 RETURNING user_id",
            )
            .bind(bank_id)
            .bind(old)
            .bind(to_ms(now))
            .fetch_optional(&mut *tx)
            .await?;
            if let Some((user_id,)) = user {
                let partner_id = partner_of(&mut *tx, &user_id).await?;
                let mut payload = serde_json::json!({
                    "userId": user_id,
                    "bankId": bank_id,
                    "accountIds": moved_ids,
                });
                if let Some(ends) = expires_at {
                    payload["consentExpiresAt"] =
                        serde_json::json!(freshet_rules::format_timestamp(ends));
                }
                super::events::insert(&mut tx, &partner_id, "v1.consent.renewed", &payload, now)
                    .await?;
            }
            tx.commit().await?;
            moved
        });
        self.events_committed();
        Ok(moved)
    }

    /// The user's consents, newest first, with the ids of the accounts linked to each.
    pub async fn of_user(
        &self,
        user_id: &str,
    ) -> Result<Vec<(BankConsent, Vec<String>)>, StoreError> {
        on_read!(self, |c| {
            let rows: Vec<Row> = sqlx::query_as(
                "SELECT bank_id, bank_consent_id, user_id, access_token, access_expires_at, refresh_token,
               expires_at, ended_at FROM bank_consents WHERE user_id = $1 ORDER BY created_at DESC",
            )
            .bind(user_id)
            .fetch_all(c)
            .await?;
            let mut conn = c.acquire().await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let accounts =
                    linked_accounts(&mut *conn, &row.bank_id, &row.bank_consent_id).await?;
                out.push((BankConsent::from(row), accounts));
            }
            Ok(out)
        })
    }

    /// Sends the consent notices that are due at `now`, each once: `v1.consent.expiring`
    /// 7 days and 1 day before a consent's end, `v1.consent.expired` at its end (its
    /// accounts turn `EXPIRED` in the same commit). A consent past two thresholds at once
    /// gets only the latest notice. Returns how many events were appended.
    ///
    /// A serial transaction on both backends (`in_tx!`): what it reads as not sent yet is
    /// still unsent when it marks it sent, whichever replica's scheduler runs it. The
    /// events are appended after the row writes (in the notices' order), so that
    /// PostgreSQL's event-log lock is held only for the inserts and the commit.
    pub async fn announce_due(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let appended = in_tx!(self, |tx| {
            let due: Vec<DueNotice> = sqlx::query_as(
                "SELECT c.bank_id, c.bank_consent_id, c.user_id, u.partner_id, c.expires_at,
               c.expiring_7d_sent_at IS NOT NULL AS sent_7d, c.expiring_1d_sent_at IS NOT NULL AS sent_1d
             FROM bank_consents c JOIN users u ON u.id = c.user_id
             WHERE c.expired_sent_at IS NULL AND c.ended_at IS NULL AND c.expires_at IS NOT NULL
               AND (c.expires_at <= $1
                 OR (c.expires_at <= $2 AND c.expiring_1d_sent_at IS NULL)
                 OR (c.expires_at <= $3 AND c.expiring_7d_sent_at IS NULL))
             LIMIT 500",
            )
            .bind(to_ms(now))
            .bind(to_ms(now + chrono::TimeDelta::days(1)))
            .bind(to_ms(now + chrono::TimeDelta::days(7)))
            .fetch_all(&mut *tx)
            .await?;
            let mut events: Vec<PendingEvent> = Vec::new();
            for notice in &due {
                let ends = from_ms(notice.expires_at);
                let (event_type, column) = if ends <= now {
                    ("v1.consent.expired", "expired_sent_at")
                } else if ends <= now + chrono::TimeDelta::days(1) {
                    ("v1.consent.expiring", "expiring_1d_sent_at")
                } else {
                    ("v1.consent.expiring", "expiring_7d_sent_at")
                };
                if event_type == "v1.consent.expiring"
                    && ((column == "expiring_1d_sent_at" && notice.sent_1d)
                        || (column == "expiring_7d_sent_at" && notice.sent_7d))
                {
                    continue;
                }
                // Earlier thresholds count as passed: never a 7-day notice after the 1-day one.
                // Each column is set once (PostgreSQL refuses a second assignment; SQLite
                // kept only the last, so the 7- and 1-day marks are these COALESCEs anyway;
                // not sent yet, they take `now`).
                let expired = if column == "expired_sent_at" {
                    "expired_sent_at = $3,"
                } else {
                    ""
                };
                sqlx::query(&format!(
                    "UPDATE bank_consents SET {expired}
                   expiring_7d_sent_at = COALESCE(expiring_7d_sent_at, $3),
                   expiring_1d_sent_at = CASE WHEN $4 THEN COALESCE(expiring_1d_sent_at, $3) ELSE expiring_1d_sent_at END
                 WHERE bank_id = $1 AND bank_consent_id = $2"
                ))
                .bind(&notice.bank_id)
                .bind(&notice.bank_consent_id)
                .bind(to_ms(now))
                .bind(column != "expiring_7d_sent_at")
                .execute(&mut *tx)
                .await?;
                let accounts =
                    linked_accounts(&mut *tx, &notice.bank_id, &notice.bank_consent_id).await?;
                if event_type == "v1.consent.expired" {
                    sqlx::query(
                        "UPDATE accounts SET consent_status = 'EXPIRED' WHERE bank_id = $1 AND bank_consent_id = $2",
                    )
                    .bind(&notice.bank_id)
                    .bind(&notice.bank_consent_id)
                    .execute(&mut *tx)
                    .await?;
                }
                let payload = serde_json::json!({
                    "userId": notice.user_id,
                    "bankId": notice.bank_id,
                    "accountIds": accounts,
                    "consentExpiresAt": freshet_rules::format_timestamp(ends),
                });
                events.push((notice.partner_id.clone(), event_type, payload));
            }
            for (partner_id, event_type, payload) in &events {
                super::events::insert(&mut tx, partner_id, event_type, payload, now).await?;
            }
            tx.commit().await?;
            events.len()
        });
        if appended > 0 {
            self.events_committed();
        }
        Ok(appended)
    }
}

#[derive(sqlx::FromRow)]
struct DueNotice {
    bank_id: String,
    bank_consent_id: String,
    user_id: String,
    partner_id: String,
    expires_at: i64,
    sent_7d: bool,
    sent_1d: bool,
}
